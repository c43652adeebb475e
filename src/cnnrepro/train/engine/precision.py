"""The run-config key `precision`, one meaning for both backends.

fp32 is the faithful default and means strict float32: the book trained on a K80 (and the CPU runs of
the other sources), which has no TF32. PyTorch leaves TF32 on for cuDNN convolutions by default and
TensorFlow turns it on for everything on Ampere and later GPUs, so fp32 switches it OFF explicitly.
tf32 turns it on; bf16 also autocasts the forward pass (config["mixed_precision"], CUDA only) and keeps
the ops autocast leaves in float32 strict: one change at a time. Each backend applies it
(cnnrepro.train.backends.torch.precision, cnnrepro.train.backends.keras.precision).
"""

from __future__ import annotations

PRECISIONS = ("fp32", "tf32", "bf16")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")


def uses_tf32(precision: str) -> bool:
    """Whether float32 matmuls and convolutions may run in TF32 under this precision."""
    check_precision(precision)
    return precision == "tf32"
