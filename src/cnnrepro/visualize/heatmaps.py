"""Class activation heatmaps: which parts of an image drove the predicted class.

- Grad-CAM, as the book computes it: the gradient of the class score with respect to a conv layer's
  output, averaged over space per channel, weighs that layer's channels; the weighted mean over
  channels, ReLU'd and divided by its maximum, is the heatmap.
- CAM, as the Keras example computes it for its GlobalAveragePooling model: the Dense kernel weighs
  the last conv map's channels directly (no gradients); ReLU'd and divided by its maximum here too.

A binary model has one logit (dogs); the score of "dogs" is the logit and the score of "cats" its
negation, so the heat always shows evidence for the class named.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image
from torch import nn

from cnnrepro.errors import CnnreproError
from cnnrepro.visualize.layers import capture
from cnnrepro.visualize.render import DPI, colorize, save_figure


@dataclass(frozen=True)
class Heatmap:
    heat: np.ndarray  # float (h, w) in [0, 1], at the layer's resolution; all zero = no positive evidence
    peak: float  # the map's maximum before normalization
    target: int  # the class index the heat is for
    probabilities: list[float]


def probabilities_of(logits: torch.Tensor) -> list[float]:
    logits = logits.detach().float()[0]
    if logits.numel() == 1:
        p = float(torch.sigmoid(logits[0]))
        return [1 - p, p]
    return torch.softmax(logits, 0).tolist()


def class_score(logits: torch.Tensor, target: int) -> torch.Tensor:
    """The scalar score of class `target` for the first image (a single logit: +logit for 1, -logit for 0)."""
    if logits.shape[1] == 1:
        return logits[0, 0] if target == 1 else -logits[0, 0]
    return logits[0, target]


def _normalized(cam: torch.Tensor, probabilities: list[float], target: int) -> Heatmap:
    cam = torch.relu(cam.detach().float())
    peak = float(cam.max())
    heat = (cam / peak if peak > 0 else torch.zeros_like(cam)).cpu().numpy()
    return Heatmap(heat, peak, target, probabilities)


def grad_cam(model: nn.Module, x: torch.Tensor, layer: str, target: int | None = None, where: str = "layer") -> Heatmap:
    """Grad-CAM at `layer` for one model-ready input x (1, C, H, W); target None = the predicted class."""
    x = x.detach().clone().requires_grad_(True)  # so the layer's output is on the graph even if weights are frozen
    with torch.enable_grad():
        logits, found = capture(model, x, [layer], stop=False, where=where)
        assert logits is not None
        probabilities = probabilities_of(logits)
        target = int(np.argmax(probabilities)) if target is None else target
        activation = found[layer]
        if activation.dim() != 4:
            raise CnnreproError(f"{where}: layer {layer!r} outputs shape {tuple(activation.shape)}, not a conv map")
        (grads,) = torch.autograd.grad(class_score(logits, target), activation)
    weights = grads[0].mean(dim=(1, 2))
    return _normalized((weights[:, None, None] * activation[0]).mean(dim=0), probabilities, target)


def class_activation_map(model: nn.Module, x: torch.Tensor, target: int | None = None) -> Heatmap:
    """CAM of a model with `.features` (the last conv map) and `.dense` on its global average (CamConvnet)."""
    if not (hasattr(model, "features") and hasattr(model, "dense")):
        raise CnnreproError(f"{type(model).__name__}: CAM needs a model with .features and .dense (GAP head)")
    with torch.no_grad():
        features = model.features(x)
        logits = model.dense(features.mean(dim=(2, 3)))
        probabilities = probabilities_of(logits)
        target = int(np.argmax(probabilities)) if target is None else target
        weights = model.dense.weight
        kernel = weights[0] if weights.shape[0] == 1 else weights[target]
        sign = -1.0 if weights.shape[0] == 1 and target == 0 else 1.0
        cam = sign * torch.einsum("c,chw->hw", kernel, features[0])
    return _normalized(cam, probabilities, target)


def upsample(heat: np.ndarray, height: int, width: int) -> np.ndarray:
    """The coarse heatmap stretched bilinearly over an image of height x width."""
    image = Image.fromarray(heat.astype(np.float32))
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float64)


def superimpose(image: np.ndarray, heat: np.ndarray, alpha: float) -> np.ndarray:
    """uint8 RGB image blended with the jet-coloured heat: (1 - alpha) * image + alpha * jet(heat)."""
    colored = colorize(upsample(heat, *image.shape[:2]), "jet").astype(np.float64)
    return np.clip((1 - alpha) * image.astype(np.float64) + alpha * colored, 0, 255).astype(np.uint8)


def save_heatmap_figure(image: np.ndarray, heatmap: Heatmap, alpha: float, title: str, path: Path) -> None:
    """The image with the heat over it, beside the heatmap at the layer's own resolution."""
    height, width = image.shape[:2]
    panel_h = 3.6
    fig = Figure(figsize=(panel_h * width / height + panel_h + 1.0, panel_h + 0.7), dpi=DPI, layout="constrained")
    overlay_ax, heat_ax = fig.subplots(1, 2, width_ratios=[width / height, 1.0])
    overlay_ax.imshow(superimpose(image, heatmap.heat, alpha))
    overlay_ax.set_axis_off()
    shown = heat_ax.imshow(heatmap.heat, cmap="jet", vmin=0, vmax=1, interpolation="nearest")
    h, w = heatmap.heat.shape
    heat_ax.set_title(f"heatmap ({h}x{w})", fontsize=10)
    heat_ax.set_xticks([])
    heat_ax.set_yticks([])
    fig.colorbar(shown, ax=heat_ax, fraction=0.046, pad=0.02)
    fig.suptitle(title, fontsize=11)
    save_figure(fig, path)
