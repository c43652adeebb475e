"""`cnnrepro prepare-mnist`: the four idx `.gz` files of MNIST / Fashion-MNIST to one checked `.npz`.

The `.npz` holds `x_train (N,28,28) uint8, y_train (N,) uint8, x_test (M,28,28) uint8,
y_test (M,) uint8` with N, M the pinned counts (60,000 / 10,000 for the real sets). Before
writing, every file is checked again against the pins in `cnnrepro.data.idx` (magic, dimensions,
count, uncompressed sha256), labels must lie in 0-9, and every class must hold a plausible share
of its split: between half and one and a half times an even share (real MNIST's rarest training
class has 0.90x, Fashion-MNIST is exactly even). Training calls `load_idx_arrays`.
"""

from __future__ import annotations

import argparse
import gzip
import zlib
from pathlib import Path

import numpy as np

from cnnrepro.data import idx
from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import atomic_path
from cnnrepro.params import load_params

NUM_CLASSES = 10
CLASS_SHARE_RANGE = (0.5, 1.5)
ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")
# npz key -> idx file it comes from
SOURCES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def read_idx_gz(path: Path, name: str, spec: idx.IdxSpec | None) -> np.ndarray:
    """Decompress and check one idx file; return it as a uint8 array of its own dimensions."""
    try:
        data = gzip.decompress(path.read_bytes())
    except FileNotFoundError:
        raise CnnreproError(f"{path}: missing") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise CnnreproError(f"{path}: not a valid gzip file ({exc})") from None
    idx.check_idx(data, name, spec, where=str(path))
    _, dims = idx.parse_header(data, str(path))
    return np.frombuffer(data, dtype=np.uint8, offset=idx.header_size(dims)).reshape(dims).copy()


def check_labels(labels: np.ndarray, where: str) -> None:
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise CnnreproError(f"{where}: label {int(labels.max())} out of range 0-{NUM_CLASSES - 1}")
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    even = labels.size / NUM_CLASSES
    low, high = (even * factor for factor in CLASS_SHARE_RANGE)
    for cls, count in enumerate(counts):
        if not low <= count <= high:
            raise CnnreproError(
                f"{where}: class {cls} has {count} of {labels.size} labels, expected {low:g} to {high:g}"
            )


def load_raw(raw: Path, dataset: str, pins: dict[str, idx.IdxSpec] | None = None) -> dict[str, np.ndarray]:
    """The four arrays from `<raw>/*.gz`, checked; `pins` replaces the pinned table (tests)."""
    specs = pins if pins is not None else idx.pinned_specs(dataset)
    arrays = {key: read_idx_gz(raw / idx.gz_name(name), name, specs[name]) for key, name in SOURCES.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.shape[0] != y.shape[0]:
            raise CnnreproError(f"{raw}: {split} has {x.shape[0]} images but {y.shape[0]} labels")
        check_labels(y, str(raw / idx.gz_name(SOURCES[f"y_{split}"])))
    return arrays


def write_npz(arrays: dict[str, np.ndarray], out: Path, *, compress: bool) -> None:
    save = np.savez_compressed if compress else np.savez
    # A file object, not a name: np.savez appends ".npz" to names that lack it.
    with atomic_path(out) as tmp, tmp.open("wb") as f:
        save(f, **{key: arrays[key] for key in ARRAY_KEYS})


def load_idx_arrays(npz_path: str | Path) -> dict[str, np.ndarray]:
    """The arrays written by `prepare-mnist`, checked for keys, dtypes and shapes."""
    path = Path(npz_path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in ARRAY_KEYS if key in npz.files}
    except FileNotFoundError:
        raise CnnreproError(f"{path}: missing (run `cnnrepro prepare-mnist`)") from None
    except (OSError, ValueError) as exc:
        raise CnnreproError(f"{path}: not a readable .npz ({exc})") from None
    missing = [key for key in ARRAY_KEYS if key not in arrays]
    if missing:
        raise CnnreproError(f"{path}: missing arrays {', '.join(missing)}")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or y.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != idx.IMAGE_SHAPE:
            raise CnnreproError(f"{path}: x_{split} {x.dtype}{x.shape} / y_{split} {y.dtype}{y.shape}: not idx arrays")
        if y.shape != (x.shape[0],):
            raise CnnreproError(f"{path}: x_{split} has {x.shape[0]} images but y_{split} has {y.shape} labels")
    return arrays


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=idx.DATASETS)
    parser.add_argument("--raw", required=True, type=Path, help="directory with the four idx .gz files")
    parser.add_argument("--out", required=True, type=Path, help="the .npz to write")


def main(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    arrays = load_raw(args.raw, args.dataset)
    write_npz(arrays, args.out, compress=params["prepare_mnist"]["compress"])
    shapes = ", ".join(f"{key} {arrays[key].shape}" for key in ARRAY_KEYS)
    print(f"{args.out}: {shapes}")
    return 0
