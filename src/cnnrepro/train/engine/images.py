"""Images as the sources loaded them: a class-folder listing in flow_from_directory's order, each file
decoded and plainly resized with Pillow into uint8 (H, W, C), and one split held in memory (`Split`).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cnnrepro.data.pixels import PILLOW_MAX_PIXELS, model_image
from cnnrepro.errors import CnnreproError

# Keras 2.0.8 flow_from_directory's white list plus Keras 3's .gif (matched on the lower-cased name).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".gif")


RESAMPLE = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR}


# load_img of Keras 2.0.8 called img.resize() with Pillow's default filter of the day (NEAREST).
SEMANTICS_RESIZE = {"2.0.8": "nearest", "2.1.3": "bilinear"}


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


def load_image(
    path: str | Path, size: tuple[int, int], resample: str, channels: int = 3, *, max_pixels: int = PILLOW_MAX_PIXELS
) -> np.ndarray:
    """One image as uint8 (H, W, C): decoded within `max_pixels` and converted to RGB (or L) as the clean stage
    converts (cnnrepro.data.pixels.model_image), plainly resized to size=(H, W), no aspect keeping."""
    img = model_image(path, max_pixels, channels)
    with img:
        if img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), RESAMPLE[resample])
        array = np.array(img, dtype=np.uint8)
    return array if channels == 3 else array[:, :, None]


def load_images(
    paths: list[Path], size: tuple[int, int], resample: str, channels: int = 3, *, max_pixels: int = PILLOW_MAX_PIXELS
) -> np.ndarray:
    """Decode every file once into one uint8 array; Pillow releases the GIL while decoding, so threads help."""
    out = np.empty((len(paths), size[0], size[1], channels), dtype=np.uint8)
    workers = min(8, os.cpu_count() or 1)

    def one(i: int) -> None:
        out[i] = load_image(paths[i], size, resample, channels, max_pixels=max_pixels)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(len(paths))))
    return out
