"""train.precision applied to TensorFlow's TF32 switch (meaning: cnnrepro.train.engine.run_config). The Keras
trainer runs float32 otherwise; bf16 autocast is not implemented there."""

from __future__ import annotations

from cnnrepro.train.engine.run_config import uses_tf32


def set_tensorflow_precision(precision: str) -> None:
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(uses_tf32(precision))
