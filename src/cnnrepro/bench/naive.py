"""The NAIVE input path the fast one is compared with: what a plain port of the book's generator does.

A torch DataLoader over the image folder that opens, decodes and resizes every JPEG each time it is
drawn, and augments one image at a time on the CPU the way Keras 2.0.8 did (scipy.ndimage per
channel, from the same random draws and matrices as cnnrepro.train.inputs.augment); MNIST-style arrays go
through PIL one sample at a time, as torchvision's MNIST + ToTensor does. The model then runs in
plain float32 NCHW with no autocast, no channels_last and no compile, and VGG16 features are NOT
cached (the conv base runs on every batch).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, get_worker_info

from cnnrepro.train.engine.augmentation_spec import AugmentationSpec
from cnnrepro.train.engine.images import list_image_folder, load_image
from cnnrepro.train.engine.run_config import RunConfig
from cnnrepro.train.engine.splits import load_npz
from cnnrepro.train.inputs.augment import sample_transforms, transform_matrices
from cnnrepro.train.inputs.pipeline import CAFFE_MEAN_BGR

# Keras fill_mode -> scipy.ndimage mode (the mapping cnnrepro.train.inputs.augment documents).
SCIPY_MODES = {"nearest": "nearest", "reflect": "reflect", "constant": "grid-constant", "wrap": "grid-wrap"}


def scale_numpy(x: np.ndarray, preprocessing: str, input_scale: float) -> np.ndarray:
    """float32 HWC 0-255 -> the model's input, as data.scale_input does on tensors."""
    if preprocessing == "caffe":
        return x[:, :, ::-1] - np.asarray(CAFFE_MEAN_BGR, dtype=np.float32)
    return x * np.float32(input_scale) if input_scale != 1 else x


class _PerSample(Dataset):
    """Shared per-sample logic: augmentation with a generator seeded per DataLoader worker."""

    def __init__(self, config: RunConfig, seed: int) -> None:
        self.preprocessing = config.inputs.preprocessing
        self.input_scale = float(config.inputs.input_scale)
        self.augmentation = AugmentationSpec(**config.inputs.augmentation) if config.inputs.augmentation else None
        self.seed = seed
        self._generator: torch.Generator | None = None

    def _random_transform(self, x: np.ndarray) -> np.ndarray:
        """Keras 2.0.8's random_transform on one float32 HWC image: scipy affine per channel, then flip."""
        from scipy import ndimage

        spec = self.augmentation
        if spec is None or spec.is_identity:
            return x
        if self._generator is None:
            info = get_worker_info()  # forked workers must not share one random stream
            self._generator = torch.Generator().manual_seed(info.seed if info is not None else self.seed)
        height, width = x.shape[:2]
        params = sample_transforms(1, spec, height, width, self._generator)
        if spec.has_affine:
            matrix = transform_matrices(params, height, width)[0].numpy()
            order = 0 if spec.interpolation == "nearest" else 1
            x = np.stack(
                [
                    ndimage.affine_transform(
                        x[:, :, c], matrix[:2, :2], matrix[:2, 2], order=order, mode=SCIPY_MODES[spec.fill_mode]
                    )
                    for c in range(x.shape[2])
                ],
                axis=2,
            )
        if bool(params["flip"][0]):
            x = x[:, ::-1]
        return x

    def _to_tensor(self, image: np.ndarray) -> torch.Tensor:
        x = self._random_transform(image.astype(np.float32))
        x = scale_numpy(x, self.preprocessing, self.input_scale)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


class JpegFolderDataset(_PerSample):
    """Decode + resize the file on every access."""

    def __init__(self, root: str | Path, config: RunConfig, seed: int) -> None:
        super().__init__(config, seed)
        self.paths, self.labels, _ = list_image_folder(root)
        self.size = tuple(config.data.input_shape[1:])
        self.resample = config.data.resize_filter

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self._to_tensor(load_image(self.paths[i], self.size, self.resample)), int(self.labels[i])


class ArraySamplesDataset(_PerSample):
    """uint8 (N, H, W, 1) arrays handed out one PIL image at a time (torchvision MNIST + ToTensor)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, config: RunConfig, seed: int) -> None:
        super().__init__(config, seed)
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = np.asarray(Image.fromarray(self.images[i, :, :, 0], mode="L"))[:, :, None]
        return self._to_tensor(image), int(self.labels[i])


def naive_dataset(config: RunConfig) -> Dataset:
    """The training split of a resolved run config, read the naive way."""
    data = Path(config.data.data_dir)
    seed = int(config.seed)
    if config.data.dataset in ("mnist", "fashion_mnist"):
        train = load_npz(data / f"{config.data.dataset}.npz", tuple(config.data.classes))["train"]
        return ArraySamplesDataset(train.images, train.labels, config, seed)
    return JpegFolderDataset(data / "train", config, seed)


def endless_batches(dataset: Dataset, batch_size: int, workers: int, seed: int) -> Iterator[Any]:
    """Shuffled passes, one after the other, as a training loop over epochs draws them."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
    return itertools.chain.from_iterable(loader for _ in itertools.count())
