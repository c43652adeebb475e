"""What the figures are drawn from: the trained torch runs, the test images, the ImageNet VGG16."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import read_json
from cnnrepro.mappings import Params
from cnnrepro.run_outputs import run_dir
from cnnrepro.train.engine.images import IMAGE_EXTENSIONS, load_image
from cnnrepro.train.engine.run_config import RunConfig
from cnnrepro.train.inputs.pipeline import scale_input

if TYPE_CHECKING:
    from cnnrepro.visualize.settings import Settings

FRAMEWORK = "torch"  # the figures read PyTorch modules by name
MAX_OVERLAY_SIDE = 600


class Unavailable(Exception):
    """Something to draw is not there (the reason goes to index.json); not a failure of the stage."""


@dataclass
class LoadedRun:
    path: Path
    model: nn.Module
    config: RunConfig

    def input_for(self, array: np.ndarray) -> torch.Tensor:
        """uint8 (H, W, C) -> the model's input (1, C, H, W), scaled as the run trained."""
        x = torch.from_numpy(np.ascontiguousarray(array[None])).to(self.device).permute(0, 3, 1, 2).float()
        return self.scale(x)

    def scale(self, pixels: torch.Tensor) -> torch.Tensor:
        return scale_input(pixels, self.config.inputs.preprocessing, self.config.inputs.input_scale)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def load_image(self, path: Path) -> np.ndarray:
        channels, height, width = self.config.data.input_shape
        return load_image(path, (height, width), self.config.data.resize_filter or "bilinear", channels)


# --- inputs -----------------------------------------------------------------------------------------


def load_run(runs_root: Path, variant: str, settings: Settings) -> LoadedRun:
    """The trained model of `variant`, first seed; Unavailable with the reason when there is none."""
    from cnnrepro.inference.evaluate import load_run_config
    from cnnrepro.train.backends.torch.inference import load_model

    if FRAMEWORK not in settings.frameworks:
        raise Unavailable(f"train.frameworks has no {FRAMEWORK} (the figures read {FRAMEWORK} runs)")
    if variant not in settings.trained:
        raise Unavailable(f"{variant} is not in train.variants")
    path = run_dir(runs_root, FRAMEWORK, variant, settings.seed)
    if not (path / "metrics.json").is_file():
        raise Unavailable(f"{path}: no run output (train it first)")
    metrics = read_json(path / "metrics.json")
    status = metrics.get("status") if isinstance(metrics, dict) else None
    if status != "completed":
        reason = metrics.get("reason") if isinstance(metrics, dict) else None
        raise Unavailable(f"{path}: run {status or 'unreadable'}" + (f" ({reason})" if reason else ""))
    config = load_run_config(path)
    model = load_model(path, config, str(settings.device))
    model.requires_grad_(False)  # gradients are taken with respect to inputs only
    return LoadedRun(path, model, config)


def find_test_image(data_dir: Path, image_id: str) -> Path:
    """<data>/test/<class>/<stem>.<any image extension>; Unavailable when the split has no such image."""
    test = data_dir / "test"
    if not test.is_dir():
        raise CnnreproError(f"{test}: test folder missing (--data must be the book split, e.g. data/split/book)")
    cls, stem = image_id.split("/", 1)
    folder = test / cls
    matches = (
        sorted(p for p in folder.iterdir() if p.stem == stem and p.suffix.lower() in IMAGE_EXTENSIONS)
        if folder.is_dir()
        else []
    )
    if not matches:
        raise Unavailable(f"image {image_id} is not in {test} (ids are <class>/<file name without extension>)")
    return matches[0]


def load_original(path: Path) -> np.ndarray:
    """The image file as RGB uint8, shrunk (never enlarged) to at most MAX_OVERLAY_SIDE on its long side."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        img.thumbnail((MAX_OVERLAY_SIDE, MAX_OVERLAY_SIDE), Image.Resampling.LANCZOS)
        return np.asarray(img)


def load_imagenet_vgg16(vgg_params: Params) -> tuple[nn.Module, str]:
    """The ImageNet VGG16 conv base as train.vgg16 says, and a description of its weights; Unavailable if none."""
    from cnnrepro.train.backends.torch.models.vgg16 import VGG16Base, load_keras_vgg16_, load_torchvision_vgg16_
    from cnnrepro.train.engine.run_config import VGG16Settings
    from cnnrepro.train.vgg16_weights import WeightsUnavailable, resolve_keras_weights

    base = VGG16Base()
    try:
        if vgg_params["source"] == "torchvision":
            described = load_torchvision_vgg16_(base)
        else:
            path = resolve_keras_weights(VGG16Settings.from_params(vgg_params))
            load_keras_vgg16_(base, path)
            described = f"Keras weights {path.name}"
    except WeightsUnavailable as exc:
        raise Unavailable(str(exc)) from None
    base.eval().requires_grad_(False)
    return base, described
