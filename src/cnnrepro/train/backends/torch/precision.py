"""train.precision applied to PyTorch's global float settings (meaning: cnnrepro.train.engine.run_config)."""

from __future__ import annotations

import torch

from cnnrepro.train.engine.run_config import PRECISIONS, uses_tf32

__all__ = ["PRECISIONS", "set_torch_precision"]


def set_torch_precision(precision: str) -> None:
    tf32 = uses_tf32(precision)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
