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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnrepro.engine.data import IMAGE_EXTENSIONS, load_image, scale_input
from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import atomic_dir, read_json, write_json_atomic
from cnnrepro.runs import run_dir
from cnnrepro.visualize import activations, filters, heatmaps
from cnnrepro.visualize.layers import find_layer, truncated
from cnnrepro.visualize.render import resize_rgb, save_image_with_title

FRAMEWORK = "torch"  # the figures read PyTorch modules by name
KINDS = ("activations", "filters", "heatmaps")
METHOD_LABEL = {"gradcam": "Grad-CAM", "cam": "CAM"}
MAX_OVERLAY_SIDE = 600


@dataclass
class FigureRecord:
    path: str  # relative to the figures directory, forward slashes
    kind: str  # activations | filters | heatmaps
    title: str
    caption: str
    source_run: str | None  # the run directory the figure shows; None for the ImageNet VGG16
    mlflow: dict[str, Any] = field(default_factory=dict)


@dataclass
class Skipped:
    kind: str
    item: str
    reason: str


class Unavailable(Exception):
    """Something to draw is not there (the reason goes to index.json); not a failure of the stage."""


@dataclass
class Settings:
    """params' visualize section resolved for this machine."""

    seed: int
    trained: frozenset[str]  # every variant in train.variants
    frameworks: tuple[str, ...]
    device: torch.device
    section: dict[str, Any]
    grid: int
    iterations: int
    step: float
    vgg16: dict[str, Any]
    tracking_uri: str
    key: str  # how errors name the section: '<params file>: visualize'

    @classmethod
    def from_params(cls, params: dict[str, Any], source: str = "params.yaml") -> Settings:
        from cnnrepro.engine.run_config import resolve_device
        from cnnrepro.tracking import tracking_settings

        train = params["train"]
        section = params["visualize"]
        device = resolve_device(train["device"])
        # The book's budget on a GPU; the cpu block keeps a CPU-only stage to seconds (recorded in index.json).
        budget = section["filters"]["cpu"] if device.type == "cpu" else section["filters"]
        return cls(
            seed=int(train["seeds"][0]),
            trained=frozenset(v for group in train["variants"].values() for v in group),
            frameworks=tuple(train["frameworks"]),
            device=device,
            section=section,
            grid=int(budget["grid"]),
            iterations=int(budget["iterations"]),
            step=float(budget["step"]),
            vgg16=dict(train["vgg16"]),
            tracking_uri=tracking_settings(params)[0],
            key=f"{source}: visualize",
        )


@dataclass
class LoadedRun:
    path: Path
    model: nn.Module
    config: dict[str, Any]

    def input_for(self, array: np.ndarray) -> torch.Tensor:
        """uint8 (H, W, C) -> the model's input (1, C, H, W), scaled as the run trained."""
        x = torch.from_numpy(np.ascontiguousarray(array[None])).to(self.device).permute(0, 3, 1, 2).float()
        return self.scale(x)

    def scale(self, pixels: torch.Tensor) -> torch.Tensor:
        return scale_input(pixels, self.config["preprocessing"], self.config["input_scale"])

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def load_image(self, path: Path) -> np.ndarray:
        channels, height, width = self.config["input_shape"]
        return load_image(path, (height, width), self.config["resize_filter"] or "bilinear", channels)


# --- inputs -----------------------------------------------------------------------------------------


def load_run(runs_root: Path, variant: str, settings: Settings) -> LoadedRun:
    """The trained model of `variant`, first seed; Unavailable with the reason when there is none."""
    from cnnrepro.evaluate import load_trained

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
    model, config = load_trained(path, str(settings.device))
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
        label = run.config["classes"][int(np.argmax(probabilities))]
        height, width = array.shape[:2]
        caption = (
            f"{image_id} as {run.config['variant']} sees it ({height}x{width}); "
            f"predicted {label} (p={max(probabilities):.2f})"
        )
        shown = resize_rgb(array if array.shape[2] == 3 else np.repeat(array, 3, 2), 2 * height, 2 * width)
        subtitle = f"predicted {label} (p={max(probabilities):.2f})"
        target = self.add("activations", "input.png", "input", caption, run)
        save_image_with_title(shown, f"input: {image_id}", target, subtitle)
        for layer in layers:
            target = self.add("activations", f"{layer.name}.png", layer.name, "", run)
            caption = activations.save_activation_figure(layer, spec["images_per_row"], target)
            self.figures[-1].caption = f"{run.config['variant']}, {image_id}: {caption}"

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
        variant = run.config["variant"]
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
        classes = run.config["classes"]
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


def load_imagenet_vgg16(vgg_params: dict[str, Any]) -> tuple[nn.Module, str]:
    """The ImageNet VGG16 conv base as train.vgg16 says, and a description of its weights; Unavailable if none."""
    from cnnrepro.models.vgg16 import (
        VGG16Base,
        WeightsUnavailable,
        load_keras_vgg16_,
        load_torchvision_vgg16_,
        resolve_keras_weights,
    )

    base = VGG16Base()
    try:
        if vgg_params["source"] == "torchvision":
            described = load_torchvision_vgg16_(base)
        else:
            path = resolve_keras_weights(vgg_params)
            load_keras_vgg16_(base, path)
            described = f"Keras weights {path.name}"
    except WeightsUnavailable as exc:
        raise Unavailable(str(exc)) from None
    base.eval().requires_grad_(False)
    return base, described


# --- MLflow -----------------------------------------------------------------------------------------


def _mlflow_target(record: FigureRecord, default_uri: str) -> tuple[str, str] | None:
    """(tracking uri, run id) a figure belongs to: its source run's, or the pipeline's parent run for VGG16."""
    from cnnrepro.tracking import parent_run_id_from_env

    if record.source_run is None:
        parent = parent_run_id_from_env()
        return (default_uri, parent) if parent else None
    info = read_json(Path(record.source_run) / "run_info.json")
    ids = info.get("mlflow") if isinstance(info, dict) else None
    if not isinstance(ids, dict) or not ids.get("run_id"):
        return None
    return str(ids.get("tracking_uri") or default_uri), str(ids["run_id"])


def log_to_mlflow(records: list[FigureRecord], figures_dir: Path, default_uri: str) -> None:
    """Add each figure to its run's artifacts under figures/<kind>/; the runs' status is left as it was.

    A run that cannot be reached is noted in the record (and printed), not fatal: the figures stand alone.
    """
    # tracking's store opening (lock, busy timeout) and retry are reused; the run is reopened by id only.
    from cnnrepro.tracking import client, first_line, retry

    targets = {id(r): _mlflow_target(r, default_uri) for r in records}
    for record in records:
        if targets[id(record)] is None:
            why = (
                "no training run behind the ImageNet weights, and no pipeline parent run (CNNREPRO_PARENT_RUN_ID)"
                if record.source_run is None
                else "its run_info.json has no MLflow run id"
            )
            record.mlflow = {"logged": False, "reason": why}
    errors: dict[tuple[str, str], str] = {}
    for record in records:
        target = targets[id(record)]
        if target is None:
            continue
        uri, run_id = target
        artifact_path = f"figures/{record.kind}"
        if target not in errors:
            try:
                retry(client(uri).log_artifact, run_id, str(figures_dir / record.path), artifact_path)
            except Exception as exc:  # an unreachable store or a deleted run must not lose the figures
                errors[target] = f"{type(exc).__name__}: {first_line(exc)[:200]}"
                print(f"visualize: warning: MLflow run {run_id} in {uri}: {errors[target]}")
        if target in errors:
            record.mlflow = {"logged": False, "run_id": run_id, "reason": errors[target]}
        else:
            record.mlflow = {
                "logged": True,
                "run_id": run_id,
                "artifact_path": f"{artifact_path}/{Path(record.path).name}",
            }


def run_stage(
    params: dict[str, Any],
    runs_root: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    source: str = "params.yaml",
) -> dict[str, Any]:
    """Draw everything into out_dir (replaced whole), log it to MLflow; returns index.json's content."""
    started = time.monotonic()
    settings = Settings.from_params(params, source)
    if params["train"]["num_threads"] > 0:
        torch.set_num_threads(params["train"]["num_threads"])
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        for kind in KINDS:
            (tmp / kind).mkdir()
        stage = Stage(Path(runs_root), Path(data_dir), tmp, settings)
        stage.run()
        with stage.timed("mlflow"):
            log_to_mlflow(stage.figures, tmp, settings.tracking_uri)
        spec = settings.section["filters"]
        index = {
            "device": str(settings.device),
            "seed": settings.seed,
            "filters": {
                "grid": settings.grid,
                "iterations": settings.iterations,
                "size": spec["size"],
                "step": settings.step,
                "budget": "visualize.filters.cpu" if settings.device.type == "cpu" else "visualize.filters",
            },
            "figures": [asdict(f) for f in stage.figures],
            "skipped": [asdict(s) for s in stage.skipped],
            "duration_s": round(time.monotonic() - started, 2),
            "timings_s": stage.timings,
        }
        write_json_atomic(tmp / "index.json", index)
    return index
