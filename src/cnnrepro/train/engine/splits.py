"""Data as the sources fed it: image folders decoded once, idx arrays, and Keras' batch index logic.

Images are decoded and resized once per process into one uint8 array (N, H, W, 3); per batch they
are turned into float NCHW 0-255, augmented, then scaled (ImageDataGenerator's order: random
transform, then standardize/rescale).
"""

from __future__ import annotations

import functools
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import sha256_file

# Keras 2.0.8 flow_from_directory's white list plus Keras 3's .gif (matched on the lower-cased name).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".gif")
RESAMPLE = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR}
# load_img of Keras 2.0.8 called img.resize() with Pillow's default filter of the day (NEAREST).
SEMANTICS_RESIZE = {"2.0.8": "nearest", "2.1.3": "bilinear"}
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@dataclass
class Split:
    """One split in memory. images: uint8 (N, H, W, C) (or float features); labels: int64 (N,)."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    paths: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> Split:
        paths = tuple(self.paths[i] for i in index) if self.paths else ()
        return Split(self.images[index], self.labels[index], self.classes, paths)


def list_image_folder(root: str | Path) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
    """Files and labels as flow_from_directory finds them: classes = sorted subfolders, files sorted within."""
    root = Path(root)
    if not root.is_dir():
        raise CnnreproError(f"{root}: image folder missing")
    classes = tuple(sorted(d.name for d in root.iterdir() if d.is_dir()))
    if not classes:
        raise CnnreproError(f"{root}: no class subfolders")
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        for dirpath, dirnames, filenames in os.walk(root / name):
            dirnames.sort()
            for fname in sorted(filenames):
                if fname.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(Path(dirpath) / fname)
                    labels.append(label)
    if not paths:
        raise CnnreproError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) under {', '.join(classes)}")
    return paths, np.asarray(labels, dtype=np.int64), classes


def load_image(path: str | Path, size: tuple[int, int], resample: str, channels: int = 3) -> np.ndarray:
    """One image as uint8 (H, W, C): converted to RGB (or L), plainly resized to size=(H, W), no aspect keeping."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB" if channels == 3 else "L")
            if img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), RESAMPLE[resample])
            array = np.array(img, dtype=np.uint8)
    except FileNotFoundError:
        raise CnnreproError(f"{path}: image missing") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise CnnreproError(f"{path}: cannot decode image ({exc})") from None
    return array if channels == 3 else array[:, :, None]


def load_images(paths: list[Path], size: tuple[int, int], resample: str, channels: int = 3) -> np.ndarray:
    """Decode every file once into one uint8 array; Pillow releases the GIL while decoding, so threads help."""
    out = np.empty((len(paths), size[0], size[1], channels), dtype=np.uint8)
    workers = min(8, os.cpu_count() or 1)

    def one(i: int) -> None:
        out[i] = load_image(paths[i], size, resample, channels)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(len(paths))))
    return out


def load_image_split(
    root: str | Path,
    size: tuple[int, int],
    resample: str,
    expected_classes: tuple[str, ...] | None = None,
    *,
    cache_dir: str | Path | None = None,
    manifest_sha256: str | None = None,
) -> Split:
    """Every image of a class-folder split, decoded and resized; with cache_dir, decoded once across
    processes (cnnrepro.train.engine.cache, keyed by manifest_sha256 and the folder listing)."""
    if cache_dir is not None:
        from cnnrepro.train.engine.cache import cached_image_split

        return cached_image_split(
            root, size, resample, cache_dir, manifest_sha256=manifest_sha256, expected_classes=expected_classes
        )
    paths, labels, classes = list_image_folder(root)
    if expected_classes is not None and classes != tuple(expected_classes):
        raise CnnreproError(f"{root}: class folders {list(classes)}, expected {list(expected_classes)}")
    return Split(load_images(paths, size, resample), labels, classes, tuple(str(p) for p in paths))


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: str | Path, classes: tuple[str, ...]) -> dict[str, Split]:
    """{'train', 'test'} from a prepared mnist.npz / fashion_mnist.npz (uint8 arrays, 28x28 images)."""
    path = Path(path)
    try:
        with np.load(path) as npz:
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            if missing:
                raise CnnreproError(f"{path}: missing arrays {', '.join(missing)}")
            arrays = {k: npz[k] for k in NPZ_KEYS}
    except FileNotFoundError:
        raise CnnreproError(f"{path}: missing (run the prepare_mnist stage)") from None
    except (OSError, ValueError) as exc:
        raise CnnreproError(f"{path}: not a readable npz ({exc})") from None
    splits = {}
    for name in ("train", "test"):
        x, y = arrays[f"x_{name}"], arrays[f"y_{name}"]
        if x.ndim != 3 or x.shape[0] != y.shape[0] or x.dtype != np.uint8:
            raise CnnreproError(f"{path}: x_{name} {x.dtype}{x.shape} / y_{name} {y.shape}: expected uint8 (N, H, W)")
        if y.min() < 0 or y.max() >= len(classes):
            raise CnnreproError(f"{path}: y_{name} has labels outside 0..{len(classes) - 1}")
        splits[name] = Split(x[:, :, :, None], y.astype(np.int64), classes)
    return splits


def manifest_sha256(data_dir: str | Path, dataset: str) -> str | None:
    """sha256 of what identifies the data: the split's manifest.csv, or the npz file itself.

    A folder without a manifest gets the sha256 of its sorted (path, size) listing instead.
    """
    data_dir = Path(data_dir)
    if dataset in ("mnist", "fashion_mnist"):
        npz = data_dir / f"{dataset}.npz"
        return sha256_file(npz) if npz.is_file() else None
    manifest = data_dir / "manifest.csv"
    if manifest.is_file():
        return sha256_file(manifest)
    digest = hashlib.sha256()
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(data_dir).as_posix()}\t{path.stat().st_size}\n".encode())
    return digest.hexdigest()


class KerasIterator:
    """keras.preprocessing.image.Iterator's index logic (Keras 2.0.8 `_flow_index`), endless.

    Each pass draws a fresh permutation (when shuffling); batches walk it in order; the last batch
    of a pass is short (n % batch_size images) and the next call starts a new pass. steps_per_epoch
    batches therefore cross pass boundaries freely, as fit_generator's did. The permutation comes
    from a numpy Generator seeded by the run (Keras used the global numpy RNG).
    """

    def __init__(self, n: int, batch_size: int, *, shuffle: bool, seed: Any = None) -> None:
        if n <= 0:
            raise ValueError("empty split")
        self.n = n
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.rng = np.random.default_rng(seed)
        self.batch_index = 0
        self.total_batches_seen = 0
        self.index_array = np.arange(n)

    def __iter__(self) -> KerasIterator:
        return self

    def __next__(self) -> np.ndarray:
        if self.batch_index == 0:
            self.index_array = self.rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        current_index = (self.batch_index * self.batch_size) % self.n
        if self.n > current_index + self.batch_size:
            current_batch_size = self.batch_size
            self.batch_index += 1
        else:
            current_batch_size = self.n - current_index
            self.batch_index = 0
        self.total_batches_seen += 1
        return self.index_array[current_index : current_index + current_batch_size]

    def batches_per_pass(self) -> int:
        return -(-self.n // self.batch_size)

    def state_dict(self) -> dict[str, Any]:
        return {
            "batch_index": self.batch_index,
            "total_batches_seen": self.total_batches_seen,
            "index_array": self.index_array.copy(),
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batch_index = int(state["batch_index"])
        self.total_batches_seen = int(state["total_batches_seen"])
        self.index_array = np.asarray(state["index_array"])
        self.rng.bit_generator.state = state["rng"]


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
