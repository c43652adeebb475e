"""Pixel-exact PNGs: grids of small images assembled as arrays, then saved with a title strip.

The grids are built at their final pixel size (each cell resized once with Pillow) and shown by
matplotlib without resampling, so thin gaps stay one colour and small maps stay crisp.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from cnnrepro.fsutil import atomic_path

DPI = 100
GAP = 2  # pixels between cells
GAP_VALUE = 255  # white
TITLE_PX = 34
LINE_PX = 18


def colorize(values: np.ndarray, cmap: str, vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """A 2-D array as uint8 RGB through a matplotlib colormap."""
    scaled = np.clip((np.asarray(values, dtype=np.float64) - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    rgba = matplotlib.colormaps[cmap](scaled)
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def resize_rgb(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 RGB resized: nearest when enlarging (a map's cells stay visible), box filter when shrinking."""
    if image.shape[:2] == (height, width):
        return image
    enlarge = height >= image.shape[0] and width >= image.shape[1]
    resample = Image.Resampling.NEAREST if enlarge else Image.Resampling.BOX
    return np.asarray(Image.fromarray(image).resize((width, height), resample))


def tile(cells: list[np.ndarray], columns: int, cell_px: int) -> np.ndarray:
    """uint8 RGB cells (any sizes) on a grid of square cell_px cells with GAP-pixel white gaps."""
    rows = max(1, math.ceil(len(cells) / columns))
    columns = min(columns, max(1, len(cells)))
    step = cell_px + GAP
    grid = np.full((rows * step - GAP, columns * step - GAP, 3), GAP_VALUE, dtype=np.uint8)
    for i, cell in enumerate(cells):
        r, c = divmod(i, columns)
        grid[r * step : r * step + cell_px, c * step : c * step + cell_px] = resize_rgb(cell, cell_px, cell_px)
    return grid


def save_image_with_title(
    image: np.ndarray, title: str, path: Path, subtitle: str = "", *, palette: bool = False
) -> None:
    """Save an RGB array at 1:1 pixels under a title (and an optional second line), atomically."""
    height, width = image.shape[:2]
    header = TITLE_PX + (LINE_PX if subtitle else 0)
    # Wide enough for the title even when the image is small (e.g. a 2x2 grid of 64-pixel patterns).
    canvas_w = max(width, 8 * max(len(title), len(subtitle)) + 16)
    fig = Figure(figsize=(canvas_w / DPI, (height + header) / DPI), dpi=DPI)
    left = (canvas_w - width) / 2 / canvas_w
    ax = fig.add_axes((left, 0, width / canvas_w, height / (height + header)))
    ax.imshow(image, interpolation="none", aspect="auto")
    ax.set_axis_off()
    top = 1 - 6 / (height + header)
    fig.text(0.5, top, title, ha="center", va="top", fontsize=13, fontweight="bold")
    if subtitle:
        fig.text(0.5, top - (TITLE_PX - 6) / (height + header), subtitle, ha="center", va="top", fontsize=10)
    save_figure(fig, path, palette=palette)


def save_figure(fig: Figure, path: Path, *, palette: bool = False) -> None:
    """The figure as an RGB PNG, atomically. palette=True stores 256 colours: visually lossless for a
    colormapped grid (viridis levels plus the title's greys), and 2-3x smaller in the report's embedded copy."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig.set_facecolor("white")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    image = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3])
    if palette:
        image = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
