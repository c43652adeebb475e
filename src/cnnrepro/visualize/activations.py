"""Intermediate activations: every channel of a layer's output for one image, as the book draws them.

Each channel is standardized on its own (x - mean) / std * 64 + 128, clipped to 0-255, and drawn with
viridis, 16 per row. A channel that is zero everywhere (the ReLU never fired) is drawn blank: the book
points out that these grow more common with depth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnrepro.visualize.layers import capture
from cnnrepro.visualize.render import colorize, save_image_with_title, tile

CELL_PX = 96


@dataclass(frozen=True)
class LayerActivation:
    name: str
    maps: np.ndarray  # float32 (channels, height, width)

    @property
    def blank(self) -> int:
        """Channels with no variation at all (for a ReLU layer: never active on this image)."""
        flat = self.maps.reshape(len(self.maps), -1)
        return int(np.sum(flat.max(axis=1) - flat.min(axis=1) == 0))


def layer_activations(
    model: nn.Module, x: torch.Tensor, layers: Sequence[str], where: str = "layers"
) -> list[LayerActivation]:
    """The outputs of the named layers for one model-ready input x (1, C, H, W), in the order asked."""
    with torch.no_grad():
        _, found = capture(model, x, layers, where=where)
    return [LayerActivation(name, found[name][0].float().cpu().numpy()) for name in layers]


def standardize_channel(channel: np.ndarray) -> np.ndarray:
    """The book's display scaling of one channel to 0-255; a constant channel becomes 0 (blank)."""
    channel = channel.astype(np.float64)
    std = channel.std()
    if std == 0:
        return np.zeros(channel.shape)
    return np.clip((channel - channel.mean()) / std * 64 + 128, 0, 255)


def activation_grid(maps: np.ndarray, images_per_row: int, cell_px: int = CELL_PX) -> np.ndarray:
    """uint8 RGB grid of every channel of maps (channels, height, width), viridis, images_per_row per row."""
    cells = [colorize(standardize_channel(channel), "viridis", 0, 255) for channel in maps]
    return tile(cells, images_per_row, cell_px)


def save_activation_figure(activation: LayerActivation, images_per_row: int, path: Path) -> str:
    """Write one layer's grid; returns its caption."""
    channels, height, width = activation.maps.shape
    grid = activation_grid(activation.maps, images_per_row)
    blank = activation.blank
    subtitle = f"{channels} channels of {height}x{width}" + (f"; {blank} blank (never active)" if blank else "")
    save_image_with_title(grid, activation.name, path, subtitle, palette=True)
    return subtitle
