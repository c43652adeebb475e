"""Filter patterns: the input that maximizes one filter's mean response, by gradient ascent in input space.

The book's generate_pattern: start from gray plus noise (128 + 20 * U[0, 1) per pixel), take the
gradient of the filter's mean activation with respect to the input, divide it by its RMS
(sqrt(mean(g^2)) + epsilon: the book calls it an L2 normalization), step 1, 40 times; then
deprocess_image (standardize, * 0.1 + 0.5, clip) for display. Here every filter of a grid is one
image of a batch: the images are independent, so each gets exactly the book's update.

One departure, made by the caller (stage.py): the response maximized is the conv output before its
ReLU. A filter that is silent on the gray start has a zero post-ReLU gradient and would never move;
once a filter fires everywhere, the two objectives have the same gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnrepro.visualize.render import save_image_with_title, tile

# The book adds 1e-5 to the RMS only to avoid dividing by zero: negligible against VGG16's gradients on
# raw pixels, but a /255 network's mean response moves by ~1e-7 per grey level, where 1e-5 would cut each
# step to 1% of its size. A tiny epsilon keeps the book's intent: every step moves the image by RMS `step`.
GRADIENT_EPS = 1e-12
BATCH = 32
MIN_CELL_PX = 96


@dataclass(frozen=True)
class Patterns:
    filters: list[int]
    images: np.ndarray  # float32 (n, 3, size, size), in the pixel space the ascent ran in
    start: np.ndarray  # each filter's mean activation on its starting image
    end: np.ndarray  # ... and on its final image


def filter_means(layer_output: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """Mean activation of filter filters[i] in image i of the batch."""
    return layer_output[torch.arange(len(filters), device=layer_output.device), filters].mean(dim=(1, 2))


def gradient_ascent(
    layer: Callable[[torch.Tensor], torch.Tensor],
    filters: Sequence[int],
    *,
    size: int,
    iterations: int,
    step: float,
    to_input: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Patterns:
    """Maximize each filter's mean activation at `layer` (x -> that layer's output).

    The ascent runs on 0-255-like pixels; `to_input` turns them into what the network takes (e.g. /255),
    so a step of 1 means one grey level, as in the book, whatever the network's input scale.
    """
    images, starts, ends = [], [], []
    for first in range(0, len(filters), BATCH):
        chunk = torch.tensor(list(filters[first : first + BATCH]), device=device)
        noise = torch.rand((len(chunk), 3, size, size), generator=generator)
        x = (noise * 20 + 128).to(device)
        for i in range(iterations):
            x.requires_grad_(True)
            means = filter_means(layer(to_input(x)), chunk)
            (grads,) = torch.autograd.grad(means.sum(), x)
            if i == 0:
                starts.append(means.detach())
            rms = grads.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
            x = (x + step * grads / (rms + GRADIENT_EPS)).detach()
        with torch.no_grad():
            ends.append(filter_means(layer(to_input(x)), chunk))
        images.append(x.cpu())
    return Patterns(
        filters=list(filters),
        images=torch.cat(images).float().numpy(),
        start=torch.cat(starts).float().cpu().numpy(),
        end=torch.cat(ends).float().cpu().numpy(),
    )


def deprocess(image: np.ndarray) -> np.ndarray:
    """The book's deprocess_image: (3, H, W) float -> (H, W, 3) uint8, standardized to mean 0.5, std 0.1."""
    x = image.astype(np.float64).transpose(1, 2, 0)
    x = (x - x.mean()) / (x.std() + 1e-5) * 0.1 + 0.5
    return (np.clip(x, 0, 1) * 255).astype(np.uint8)


def pattern_grid(patterns: Patterns, columns: int) -> np.ndarray:
    size = patterns.images.shape[-1]
    cell_px = size * max(1, -(-MIN_CELL_PX // size))  # an integer enlargement: pixels stay square
    return tile([deprocess(image) for image in patterns.images], columns, cell_px)


def save_pattern_figure(patterns: Patterns, columns: int, title: str, path: Path, detail: str) -> str:
    """Write the grid of patterns; returns its caption."""
    shown = f"filters {patterns.filters[0]}-{patterns.filters[-1]}" if len(patterns.filters) > 1 else "filter 0"
    subtitle = f"{shown}, row by row; {detail}; mean response {patterns.start.mean():.3g} -> {patterns.end.mean():.3g}"
    save_image_with_title(pattern_grid(patterns, columns), title, path, subtitle)
    return subtitle
