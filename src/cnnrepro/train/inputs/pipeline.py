"""What feeds a model in either framework: raw batch -> model input (augmentation, scaling), the Keras
iterators' batch indices from the seed streams, and the per-epoch line.

Both backends draw the same batches in the same order from the same seed: the Keras run converts the
PyTorch-built inputs to channels-last arrays, so the augmentation and its draws are written once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cnnrepro.train.engine.splits import KerasIterator, scale_input, to_float_nchw


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


def sequential_batches(n: int, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, n, batch_size):
        yield np.arange(start, min(start + batch_size, n))


def make_iterators(
    seed: int, batch_size: int, validation_steps: int | None, n_train: int, n_val: int
) -> dict[str, KerasIterator]:
    """The training iterator and, where the source drew validation batches, the validation one.

    Streams derived from the seed, distinct per purpose, so the data order is a function of the seed only.
    """
    iterators = {"train": KerasIterator(n_train, batch_size, shuffle=True, seed=[seed, 1])}
    if validation_steps is not None:
        # The book's validation generator: flow_from_directory's default shuffle=True, one object for all epochs.
        iterators["validation"] = KerasIterator(n_val, batch_size, shuffle=True, seed=[seed, 2])
    return iterators


def augmentation(config: dict[str, Any], device: torch.device) -> tuple[Any, torch.Generator | None]:
    """The run's augmentation spec and its generator, seeded from the run's seed (None, None without)."""
    if not config["augmentation"]:
        return None, None
    from cnnrepro.train.inputs.augment import AugmentationSpec

    spec = AugmentationSpec(**config["augmentation"])
    generator = torch.Generator(device=device)
    generator.manual_seed(int(np.random.default_rng([config["seed"], 3]).integers(2**62)))
    return spec, generator


def epoch_line(row: dict[str, float], epochs: int, seconds: float) -> str:
    """The line both frameworks print after each epoch."""
    return (
        f"epoch {int(row['epoch'])}/{epochs}: loss {row['loss']:.4f} acc {row['accuracy']:.4f} "
        f"val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.4f} ({seconds:.1f} s)"
    )
