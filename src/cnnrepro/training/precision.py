"""The run-config key `precision`, applied to each framework's global float settings.

fp32 is the faithful default and means strict float32: the book trained on a K80 (and the CPU runs of
the other sources), which has no TF32. PyTorch leaves TF32 on for cuDNN convolutions by default and
TensorFlow turns it on for everything on Ampere and later GPUs, so fp32 switches it OFF explicitly.
tf32 turns it on; bf16 also autocasts the forward pass (config["mixed_precision"], CUDA only).
"""

from __future__ import annotations

PRECISIONS = ("fp32", "tf32", "bf16")


def set_torch_precision(precision: str) -> None:
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    tf32 = precision == "tf32"  # bf16: the ops autocast leaves in float32 stay strict, one change at a time
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def set_tensorflow_precision(precision: str) -> None:
    """TensorFlow's TF32 switch (the Keras trainer runs float32 otherwise; bf16 is not implemented there)."""
    import tensorflow as tf

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    tf.config.experimental.enable_tensor_float_32_execution(precision == "tf32")
