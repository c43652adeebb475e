"""train.precision applied to the TF32 switch of Keras' backend (meaning: cnnrepro.train.engine.run_config):
TensorFlow's, or on the torch backend torch's two (as the PyTorch runs set them). The Keras trainer runs
float32 otherwise; bf16 autocast is not implemented there."""

from __future__ import annotations

from cnnrepro.train.engine.run_config import uses_tf32


def set_tensorflow_precision(precision: str) -> None:
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(uses_tf32(precision))


def set_backend_precision(backend: str, precision: str) -> None:
    """TF32 on or off for the backend Keras runs on (no other backend is used here)."""
    if backend == "tensorflow":
        set_tensorflow_precision(precision)
    elif backend == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = uses_tf32(precision)
        torch.backends.cudnn.allow_tf32 = uses_tf32(precision)
