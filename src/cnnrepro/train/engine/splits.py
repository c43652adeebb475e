"""The data of a run as its source fed it: a class-folder split decoded once (through the image cache
when asked), the prepared MNIST / Fashion-MNIST arrays, and the digest that identifies either.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from cnnrepro.data.pixels import PILLOW_MAX_PIXELS
from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import sha256_file
from cnnrepro.train.engine.cache import cached_image_split
from cnnrepro.train.engine.images import Split, list_image_folder, load_images


def load_image_split(
    root: str | Path,
    size: tuple[int, int],
    resample: str,
    expected_classes: tuple[str, ...] | None = None,
    *,
    cache_dir: str | Path | None = None,
    manifest_sha256: str | None = None,
    max_pixels: int = PILLOW_MAX_PIXELS,
) -> Split:
    """Every image of a class-folder split, decoded and resized; with cache_dir, decoded once across
    processes (cnnrepro.train.engine.cache, keyed by manifest_sha256 and the folder listing)."""
    if cache_dir is not None:
        return cached_image_split(
            root, size, resample, cache_dir, manifest_sha256=manifest_sha256, expected_classes=expected_classes
        )
    paths, labels, classes = list_image_folder(root)
    if expected_classes is not None and classes != tuple(expected_classes):
        raise CnnreproError(f"{root}: class folders {list(classes)}, expected {list(expected_classes)}")
    return Split(load_images(paths, size, resample, max_pixels=max_pixels), labels, classes, tuple(map(str, paths)))


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
