"""Decode once across processes: an image folder decoded and resized once into a uint8 .npy on disk.

Every epoch, variant and seed of a split then loads one array (a few hundred MB read, no JPEG
decoding). The file is named by a key over everything that decides its bytes: the split's manifest
sha256, the folder's listing (relative path, size, mtime and label of every image), the target size,
the resize filter, the channel count and this module's format version. Any change to these gives a
new key, so a stale array is never read; old files are simply left behind (delete the folder to
reclaim the space).

Writes go through a temporary name and a rename, so a killed job leaves no half array under a key
name. Parallel jobs that miss together take a per-key file lock: one decodes, the others wait and
load its result.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import atomic_path, write_json_atomic
from cnnrepro.mappings import JsonObject
from cnnrepro.train.engine.images import Split, list_image_folder, load_images

# Bump when what a cached array holds changes for the same inputs (e.g. a new decode rule).
CACHE_FORMAT = 1
CACHE_SUBDIR = "images"
# A job waits this long for another one decoding the same split before decoding it itself.
LOCK_TIMEOUT_S = 1800.0


def listing_digest(root: Path, paths: list[Path], labels: np.ndarray) -> str:
    """sha256 over (relative path, size, mtime_ns, label) of every image, in load order."""
    digest = hashlib.sha256()
    for path, label in zip(paths, labels, strict=True):
        stat = path.stat()
        digest.update(f"{path.relative_to(root).as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}\t{label}\n".encode())
    return digest.hexdigest()


def cache_key(*, manifest_sha256: str | None, listing: str, size: tuple[int, int], resample: str, channels: int) -> str:
    fields = {
        "format": CACHE_FORMAT,
        "manifest_sha256": manifest_sha256,
        "listing": listing,
        "size": list(size),
        "resample": resample,
        "channels": channels,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def cache_file(cache_dir: str | Path, key: str) -> Path:
    return Path(cache_dir) / CACHE_SUBDIR / f"{key}.npy"


def _read_cached(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached array, or None when missing or not the expected uint8 shape (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if array.dtype != np.uint8 or array.shape != shape:
        return None
    return array


def _write_cached(path: Path, array: np.ndarray, meta: JsonObject) -> None:
    # A file object, so numpy does not append ".npy" to the temporary name; closed before the rename.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
    # For people looking into the cache; the array alone is what loading trusts.
    write_json_atomic(path.with_suffix(".json"), meta)


def cached_image_split(
    root: str | Path,
    size: tuple[int, int],
    resample: str,
    cache_dir: str | Path,
    *,
    manifest_sha256: str | None = None,
    expected_classes: tuple[str, ...] | None = None,
    channels: int = 3,
) -> Split:
    """`data.load_image_split`, with the decoded array read from / written to the cache.

    Returns exactly what direct decoding returns (same images, labels, classes and paths).
    """
    from filelock import FileLock, Timeout

    root = Path(root)
    paths, labels, classes = list_image_folder(root)
    if expected_classes is not None and classes != tuple(expected_classes):
        raise CnnreproError(f"{root}: class folders {list(classes)}, expected {list(expected_classes)}")
    key = cache_key(
        manifest_sha256=manifest_sha256,
        listing=listing_digest(root, paths, labels),
        size=tuple(size),
        resample=resample,
        channels=channels,
    )
    target = cache_file(cache_dir, key)
    shape = (len(paths), size[0], size[1], channels)
    split_paths = tuple(str(p) for p in paths)
    images = _read_cached(target, shape)
    if images is not None:
        return Split(images, labels, classes, split_paths)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CnnreproError(f"{target.parent}: cannot create the image cache ({exc.strerror})") from None
    try:
        with FileLock(str(target.with_suffix(".lock")), timeout=LOCK_TIMEOUT_S):
            images = _read_cached(target, shape)  # another job may have written it while we waited
            if images is None:
                images = load_images(paths, tuple(size), resample, channels)
                meta = {
                    "root": str(root),
                    "images": len(paths),
                    "classes": list(classes),
                    "size": list(size),
                    "resample": resample,
                    "channels": channels,
                    "manifest_sha256": manifest_sha256,
                    "format": CACHE_FORMAT,
                    "pid": os.getpid(),
                }
                _write_cached(target, images, meta)
    except Timeout:
        # The other job is stuck; decoding here is slower but correct.
        images = load_images(paths, tuple(size), resample, channels)
    return Split(images, labels, classes, split_paths)
