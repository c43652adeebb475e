"""The visualize stage: every figure of params' `visualize` section, index.json, and the MLflow copies.

Figures come from the torch runs of the first seed in train.seeds. Anything that cannot be drawn
(a variant not trained, a run not completed, VGG16 weights unavailable, an image id not in the
test split) is listed in index.json with the reason instead, and the report says so.

The whole output directory is written beside its target and renamed into place at the end, so an
interrupted stage never leaves a partial reports/figures.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import atomic_dir
from cnnrepro.mappings import Params
from cnnrepro.visualize import activations, filters, heatmaps
from cnnrepro.visualize.index import KINDS, FigureIndex, FigureRecord, Skipped
from cnnrepro.visualize.inputs import (
    LoadedRun,
    Unavailable,
    find_test_image,
    load_imagenet_vgg16,
    load_original,
    load_run,
)
from cnnrepro.visualize.layers import find_layer, truncated
from cnnrepro.visualize.mlflow_copy import log_to_mlflow
from cnnrepro.visualize.render import resize_rgb, save_image_with_title
from cnnrepro.visualize.settings import Settings

METHOD_LABEL = {"gradcam": "Grad-CAM", "cam": "CAM"}


# --- the stage --------------------------------------------------------------------------------------


class Stage:
    def __init__(self, runs_root: Path, data_dir: Path, out_dir: Path, settings: Settings) -> None:
        self.runs_root = runs_root
        self.data_dir = data_dir
        self.out_dir = out_dir  # the temporary directory being filled
        self.settings = settings
        self.figures: list[FigureRecord] = []
        self.skipped: list[Skipped] = []
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.timings: dict[str, float] = {}  # seconds per part, for index.json

    @contextlib.contextmanager
    def timed(self, part: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.timings[part] = round(self.timings.get(part, 0.0) + time.monotonic() - started, 2)

    def add(self, kind: str, name: str, title: str, caption: str, run: LoadedRun | None) -> Path:
        """Record a figure (written by the caller to the returned path)."""
        self.figures.append(FigureRecord(f"{kind}/{name}", kind, title, caption, str(run.path) if run else None))
        return self.out_dir / kind / name

    def skip(self, kind: str, item: str, reason: str) -> None:
        self.skipped.append(Skipped(kind, item, reason))
        print(f"visualize: skipped {kind} {item}: {reason}")

    def run(self) -> None:
        section = self.settings.section
        convnet = section["convnet"]
        try:
            run = load_run(self.runs_root, convnet, self.settings)
        except Unavailable as exc:
            self.skip("activations", convnet, str(exc))
            self.skip("filters", convnet, str(exc))
        else:
            with self.timed("activations"):
                self.activations(run)
            with self.timed("convnet_filters"):
                self.convnet_filters(run)
        with self.timed("vgg16_filters"):
            self.vgg16_filters()
        with self.timed("heatmaps"):
            for variant, spec in section["heatmaps"]["variants"].items():
                self.heatmaps(variant, spec["method"], spec["layer"])

    # activations ------------------------------------------------------------------------------------

    def activations(self, run: LoadedRun) -> None:
        spec = self.settings.section["activations"]
        image_id = spec["image"]
        try:
            path = find_test_image(self.data_dir, image_id)
        except Unavailable as exc:
            self.skip("activations", image_id, str(exc))
            return
        array = run.load_image(path)
        x = run.input_for(array)
        layers = activations.layer_activations(
            run.model, x, spec["layers"], where=f"{self.settings.key}.activations.layers"
        )
        with torch.no_grad():
            probabilities = heatmaps.probabilities_of(run.model(x))
        label = run.config.data.classes[int(np.argmax(probabilities))]
        height, width = array.shape[:2]
        caption = (
            f"{image_id} as {run.config.variant} sees it ({height}x{width}); "
            f"predicted {label} (p={max(probabilities):.2f})"
        )
        shown = resize_rgb(array if array.shape[2] == 3 else np.repeat(array, 3, 2), 2 * height, 2 * width)
        subtitle = f"predicted {label} (p={max(probabilities):.2f})"
        target = self.add("activations", "input.png", "input", caption, run)
        save_image_with_title(shown, f"input: {image_id}", target, subtitle)
        for layer in layers:
            target = self.add("activations", f"{layer.name}.png", layer.name, "", run)
            caption = activations.save_activation_figure(layer, spec["images_per_row"], target)
            self.figures[-1].caption = f"{run.config.variant}, {image_id}: {caption}"

    # filter patterns --------------------------------------------------------------------------------

    def _patterns(
        self,
        model: nn.Module,
        layers: list[str],
        where: str,
        to_input: Callable[[torch.Tensor], torch.Tensor],
        device: torch.device,
    ) -> Iterator[tuple[str, filters.Patterns]]:
        spec = self.settings.section["filters"]
        for name in layers:
            module = find_layer(model, name, where)
            if not isinstance(module, nn.Conv2d):
                raise CnnreproError(f"{where}: {name!r} is a {type(module).__name__}, not a conv layer")
            count = min(self.settings.grid**2, module.out_channels)
            layer = truncated(model, name, where, pre_activation=True)
            try:
                patterns = filters.gradient_ascent(
                    layer,
                    range(count),
                    size=spec["size"],
                    iterations=self.settings.iterations,
                    step=self.settings.step,
                    to_input=to_input,
                    generator=self.generator,
                    device=device,
                )
            except RuntimeError as exc:  # valid convs and pools shrink the input below a kernel
                if "size" not in str(exc):
                    raise
                raise CnnreproError(
                    f"{self.settings.key}.filters.size: {spec['size']}x{spec['size']} inputs are too small to reach "
                    f"{name} ({str(exc).splitlines()[0][:120]})"
                ) from None
            yield name, patterns

    def _detail(self) -> str:
        size, settings = self.settings.section["filters"]["size"], self.settings
        return f"{size}x{size} input, {settings.iterations} steps of {settings.step:g} on the pre-ReLU response"

    def convnet_filters(self, run: LoadedRun) -> None:
        variant = run.config.variant
        where = f"{self.settings.key}.filters.convnet_layers"
        layers = self.settings.section["filters"]["convnet_layers"]
        for name, patterns in self._patterns(run.model, layers, where, run.scale, run.device):
            target = self.add("filters", f"{variant}_{name}.png", f"{variant} {name}", "", run)
            title = f"{variant} {name}: filter patterns"
            caption = filters.save_pattern_figure(patterns, self.settings.grid, title, target, self._detail())
            self.figures[-1].caption = f"{variant} (trained run), {caption}"

    def vgg16_filters(self) -> None:
        layers = self.settings.section["filters"]["vgg16_layers"]
        if not layers:
            return
        try:
            base, weights = load_imagenet_vgg16(self.settings.vgg16)
        except Unavailable as exc:
            self.skip("filters", "VGG16 " + ", ".join(layers), str(exc))
            return
        base = base.to(self.settings.device)
        where = f"{self.settings.key}.filters.vgg16_layers"
        # The book fed VGG16 the raw 128 +- 10 gray image, with no preprocessing: so do we.
        for name, patterns in self._patterns(base, layers, where, lambda x: x, self.settings.device):
            target = self.add("filters", f"vgg16_{name}.png", f"VGG16 {name}", "", None)
            caption = filters.save_pattern_figure(
                patterns, self.settings.grid, f"VGG16 {name}: filter patterns", target, self._detail()
            )
            self.figures[-1].caption = f"ImageNet VGG16 ({weights}), {caption}"

    # heatmaps ---------------------------------------------------------------------------------------

    def heatmaps(self, variant: str, method: str, layer: str) -> None:
        label = METHOD_LABEL[method]
        try:
            run = load_run(self.runs_root, variant, self.settings)
        except Unavailable as exc:
            self.skip("heatmaps", f"{variant} ({label})", str(exc))
            return
        where = f"{self.settings.key}.heatmaps.variants.{variant}.layer"
        if method == "cam":
            if not (hasattr(run.model, "features") and hasattr(run.model, "dense")):
                raise CnnreproError(
                    f"{self.settings.key}.heatmaps.variants.{variant}: CAM needs a GAP model (cam_convnet)"
                )
            last = list(run.model.features.named_children())[-1][0]
            if layer != last:
                raise CnnreproError(f"{where}: CAM weighs the last conv map, {last!r}, not {layer!r}")
        else:
            find_layer(run.model, layer, where)
        classes = run.config.data.classes
        for image_id in self.settings.section["heatmaps"]["images"]:
            try:
                path = find_test_image(self.data_dir, image_id)
            except Unavailable as exc:
                self.skip("heatmaps", f"{variant} {image_id}", str(exc))
                continue
            x = run.input_for(run.load_image(path))
            if method == "cam":
                heat = heatmaps.class_activation_map(run.model, x)
            else:
                heat = heatmaps.grad_cam(run.model, x, layer, where=where)
            predicted = classes[heat.target]
            truth = image_id.split("/", 1)[0]
            title = (
                f"{variant}: {label} at {layer} for '{predicted}' (p={heat.probabilities[heat.target]:.2f})"
                f" on {image_id} (true: {truth})"
            )
            name = f"{variant}_{image_id.replace('/', '_')}.png"
            target = self.add("heatmaps", name, f"{variant} {image_id}", title, run)
            heatmaps.save_heatmap_figure(
                load_original(path), heat, self.settings.section["heatmaps"]["alpha"], title, target
            )
            if heat.peak == 0:
                self.figures[-1].caption += "; no positive evidence anywhere (blank map)"


def run_stage(
    params: Params,
    runs_root: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    source: str = "params.yaml",
) -> FigureIndex:
    """Draw everything into out_dir (replaced whole, when it holds only what this stage wrote there before),
    log it to MLflow; returns index.json's content."""
    started = time.monotonic()
    settings = Settings.from_params(params, source)
    if params["train"]["num_threads"] > 0:
        torch.set_num_threads(params["train"]["num_threads"])
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, own_list="--out") as tmp:  # a user's file there is never replaced
        for kind in KINDS:
            (tmp / kind).mkdir()
        stage = Stage(Path(runs_root), Path(data_dir), tmp, settings)
        stage.run()
        with stage.timed("mlflow"):
            log_to_mlflow(stage.figures, tmp, settings.tracking_uri)
        spec = settings.section["filters"]
        index = FigureIndex(
            device=str(settings.device),
            seed=settings.seed,
            filters={
                "grid": settings.grid,
                "iterations": settings.iterations,
                "size": spec["size"],
                "step": settings.step,
                "budget": "visualize.filters.cpu" if settings.device.type == "cpu" else "visualize.filters",
            },
            figures=stage.figures,
            skipped=stage.skipped,
            duration_s=round(time.monotonic() - started, 2),
            timings_s=stage.timings,
        )
        index.write(tmp / "index.json")
    return index
