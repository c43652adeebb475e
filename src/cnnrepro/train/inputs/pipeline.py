"""Raw batch -> model input, in either framework: uint8 NHWC to float NCHW 0-255, the augmentation (with
its generator seeded from the run), then the scaling the model was trained on.

Written once, in PyTorch: the Keras backend feeds these tensors' channels-last arrays to its model, so both
frameworks see the same batches with the same augmentation draws from the same seed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cnnrepro.train.engine.run_config import RunConfig


@dataclass
class InputPipeline:
    """Raw batch -> model input: to float NCHW 0-255, augment (training only), then scale."""

    kind: str  # "images" | "features"
    preprocessing: str = "scale"  # "scale" | "caffe"
    input_scale: float = 1 / 255
    augmentation: Any = None  # cnnrepro.train.inputs.augment.AugmentationSpec, or None
    generator: torch.Generator | None = None
    channels_last: bool = False  # NHWC memory for a model converted to channels_last (train.channels_last)

    def __call__(self, x: torch.Tensor, *, train: bool) -> torch.Tensor:
        if self.kind == "features":
            return x
        x = to_float_nchw(x)
        if train and self.augmentation is not None:
            from cnnrepro.train.inputs.augment import augment_batch

            x = augment_batch(x, self.augmentation, self.generator)
        x = scale_input(x, self.preprocessing, self.input_scale)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def augmentation(config: RunConfig, device: torch.device) -> tuple[Any, torch.Generator | None]:
    """The run's augmentation spec and its generator, seeded from the run's seed (None, None without)."""
    spec = config.inputs.augmentation_spec
    if spec is None:
        return None, None
    generator = torch.Generator(device=device)
    generator.manual_seed(int(np.random.default_rng([config.seed, 3]).integers(2**62)))
    return spec, generator


CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def to_float_nchw(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W), values still 0-255."""
    return images.permute(0, 3, 1, 2).float()


def scale_input(x: torch.Tensor, preprocessing: str, input_scale: float) -> torch.Tensor:
    """0-255 float NCHW -> what the model was trained on.

    "scale": multiply by input_scale (1/255 for the book and MNIST, 1 for the CAM example);
    "caffe": VGG16's ImageNet convention: RGB -> BGR, 0-255, per-channel mean subtracted.
    """
    if preprocessing == "caffe":
        return x.flip(1) - _caffe_mean(x.device, x.dtype)
    return x * input_scale if input_scale != 1 else x


@functools.lru_cache(maxsize=8)
def _caffe_mean(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Made once per device: per batch it would be a host-to-GPU copy waiting for the GPU each time."""
    return torch.tensor(CAFFE_MEAN_BGR, device=device, dtype=dtype).view(1, 3, 1, 1)
