"""One run from its resolved config: check it can run, load data, build, train, score, write outputs.

`prepare` decides up front whether the run can happen here (VGG16 weights found, the run it
continues from completed); when not, the run is written as not_run with the reason and the
pipeline goes on. It never trains a randomly initialized VGG16 in place of the ImageNet one.
"""

from __future__ import annotations

import platform
import random
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnrepro import fidelity
from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import atomic_dir, read_json, sha256_file, write_json_atomic
from cnnrepro.models import vgg16
from cnnrepro.models.layers import torch_default_init_
from cnnrepro.models.registry import create_model, get_variant
from cnnrepro.runs import RunMetrics, summarize_final, write_run
from cnnrepro.training import checkpoint as ckpt
from cnnrepro.training.data import Split, load_image_split, load_npz, manifest_sha256
from cnnrepro.training.loop import DeviceSplit, EpochHook, FitSettings, InputPipeline, evaluate, fit, sequential_batches
from cnnrepro.training.optim import make_optimizer
from cnnrepro.training.precision import set_torch_precision

MODEL_FILE = "model.safetensors"
PACKAGES = ("torch", "numpy", "pillow", "h5py", "safetensors", "mlflow", "cnnrepro")


class NotRunnable(Exception):
    """This run cannot happen here; the message is the reason written to its outputs."""


@dataclass
class RunResult:
    history: list[dict[str, float]]
    metrics: dict[str, Any]
    confusion: dict[str, Any]
    model: nn.Module
    train_duration_s: float


# --- can it run? -------------------------------------------------------------------------------------


def prepare(config: dict[str, Any], *, download_timeout_s: float = 20.0) -> None:
    """Find what the run needs beyond data; record it in config; raise NotRunnable when it is not here."""
    vgg = config.get("vgg16")
    if config["init_from"] is not None:
        config["init_model_sha256"] = _check_init_run(Path(config["init_from"]), config)
    elif vgg is not None:
        if vgg["source"] == "keras":
            try:
                path = vgg16.resolve_keras_weights(vgg, timeout_s=download_timeout_s)
            except vgg16.WeightsUnavailable as exc:
                raise NotRunnable(str(exc)) from None
            vgg["weights_file"] = str(path)
            vgg["weights_sha256"] = sha256_file(path)
        else:
            try:
                import torchvision  # noqa: F401
            except ImportError as exc:
                raise NotRunnable(
                    f"train.vgg16.source is torchvision, but torchvision is not importable ({exc})"
                ) from None


def _check_init_run(run: Path, config: dict[str, Any]) -> str:
    """The run fine_tuning continues from must be a completed run of the right variant; returns its model's sha256."""
    metrics = read_json(run / "metrics.json")
    status = metrics.get("status") if isinstance(metrics, dict) else None
    if status != "completed":
        reason = metrics.get("reason") if isinstance(metrics, dict) else None
        raise NotRunnable(f"continues from {run}, which is {status or 'not a run'}: {reason or 'no reason given'}")
    info = read_json(run / "run_info.json")
    previous = (info.get("config") or {}) if isinstance(info, dict) else {}
    expected = get_variant(config["variant"]).continues_from
    if previous.get("variant") != expected:
        raise CnnreproError(
            f"{run}: --init-from is a {previous.get('variant')} run; {config['variant']} continues from {expected}"
        )
    if previous.get("preprocessing") != config["preprocessing"]:
        raise CnnreproError(
            f"{run}: trained on {previous.get('preprocessing')!r} inputs, this run would feed "
            f"{config['preprocessing']!r} (train.vgg16.preprocessing changed in between)"
        )
    model = run / "artifacts" / MODEL_FILE
    if not model.is_file():
        raise CnnreproError(f"{model}: missing (the run it continues from has no model)")
    return sha256_file(model)


# --- data and model ------------------------------------------------------------------------------------


def load_splits(config: dict[str, Any]) -> dict[str, Split | None]:
    """train / validation / test as the variant uses them (test None where the source has none)."""
    data = Path(config["data_dir"])
    classes = tuple(config["classes"])
    size = tuple(config["input_shape"][1:])
    if config["dataset"] in ("mnist", "fashion_mnist"):
        arrays = load_npz(data / f"{config['dataset']}.npz", classes)
        if arrays["train"].images.shape[1:3] != size:
            raise CnnreproError(
                f"{data / (config['dataset'] + '.npz')}: images {arrays['train'].images.shape[1:3]}, expected {size}"
            )
        splits: dict[str, Split | None] = {
            "train": arrays["train"],
            "validation": arrays["test"],
            "test": arrays["test"],
        }
    else:
        names = ("train", "validation", "test") if config["dataset"] == "dogs_vs_cats" else ("train", "validation")
        splits = {"test": None}
        cache_dir = config.get("image_cache")
        manifest = manifest_sha256(data, config["dataset"]) if cache_dir else None
        for name in names:
            splits[name] = load_image_split(
                data / name, size, config["resize_filter"], classes, cache_dir=cache_dir, manifest_sha256=manifest
            )
    limit = config.get("max_train_images")
    train = splits["train"]
    if limit and train is not None and limit < len(train):
        # The same subset for every seed: seeds then differ only in initialization and order.
        keep = np.sort(np.random.default_rng(0).permutation(len(train))[:limit])
        splits["train"] = train.subset(keep)
    return splits


def build_model(config: dict[str, Any]) -> nn.Module:
    """The variant's network with its starting weights, frozen where the source froze it."""
    model = create_model(config["variant"])
    if config.get("weight_init") == "torch_default":
        torch_default_init_(model)
    vgg = config.get("vgg16")
    if config["init_from"] is not None:
        from safetensors.torch import load_file

        path = Path(config["init_from"]) / "artifacts" / MODEL_FILE
        try:
            model.load_state_dict(load_file(path))
        except Exception as exc:  # wrong keys/shapes or a corrupt file: name the file
            raise CnnreproError(f"{path}: cannot load into {config['variant']} ({str(exc).splitlines()[0]})") from None
    elif vgg is not None:
        if vgg["source"] == "keras":
            vgg16.load_keras_vgg16_(model.conv_base, vgg["weights_file"])
        else:
            try:
                vgg["weights_file"] = vgg16.load_torchvision_vgg16_(model.conv_base)
            except vgg16.WeightsUnavailable as exc:
                raise NotRunnable(str(exc)) from None
    if config["trainable"] == "head":
        vgg16.freeze_conv_base(model)
    elif config["trainable"] == "head+block5":
        vgg16.freeze_conv_base(model, vgg16.FINE_TUNED_LAYERS)
    return model


def _to_device(split: Split | None, device: torch.device) -> DeviceSplit | None:
    if split is None:
        return None
    return DeviceSplit(torch.from_numpy(split.images).to(device), torch.from_numpy(split.labels).to(device))


@torch.no_grad()
def extract_features(
    conv_base: nn.Module, split: DeviceSplit, inputs: InputPipeline, batch_size: int, mixed_precision: bool
) -> DeviceSplit:
    """conv_base once over every image (no augmentation): the book's extract_features."""
    from cnnrepro.training.loop import autocast

    conv_base.eval()
    chunks = []
    for index in sequential_batches(len(split), batch_size):
        x, _ = split.batch(index)
        with autocast(x.device, mixed_precision):
            chunks.append(conv_base(inputs(x, train=False)).float())
    return DeviceSplit(torch.cat(chunks), split.y)


def _augmentation(config: dict[str, Any], device: torch.device) -> tuple[Any, torch.Generator | None]:
    if not config["augmentation"]:
        return None, None
    from cnnrepro.training.augment import AugmentationSpec

    spec = AugmentationSpec(**config["augmentation"])
    generator = torch.Generator(device=device)
    generator.manual_seed(int(np.random.default_rng([config["seed"], 3]).integers(2**62)))
    return spec, generator


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --- the run -----------------------------------------------------------------------------------------


def configure_process(config: dict[str, Any]) -> None:
    """Seeds, thread count and cuDNN autotuning, as every run sets them before building anything."""
    seed_everything(config["seed"])
    if config["num_threads"] > 0:
        torch.set_num_threads(config["num_threads"])
    set_torch_precision(config.get("precision", "fp32"))
    if torch.device(config["device"]).type == "cuda":
        # Fixed input sizes: let cuDNN pick its fastest kernels (already nondeterministic, see the ledger).
        torch.backends.cudnn.benchmark = True


@dataclass
class TrainingSetup:
    """What fit() needs, built as a run builds it (`cnnrepro bench` times the same objects)."""

    model: nn.Module  # the whole network, as saved
    trained: nn.Module  # what the optimizer moves: the head when training on VGG16 features
    optimizer: torch.optim.Optimizer
    inputs: InputPipeline  # raw batch -> model input for `trained`
    train: DeviceSplit
    validation: DeviceSplit
    test: DeviceSplit | None


def setup_training(config: dict[str, Any], splits: dict[str, Split | None]) -> TrainingSetup:
    """Model on the device (channels_last / compiled if asked), data on the device, VGG16 features
    computed once where the variant trains on them, and the optimizer over what trains."""
    device = torch.device(config["device"])
    model = build_model(config).to(device)
    channels_last = bool(config.get("channels_last"))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    augmentation, generator = _augmentation(config, device)
    image_inputs = InputPipeline(
        "images", config["preprocessing"], config["input_scale"], augmentation, generator, channels_last
    )
    train, validation, test = (_to_device(splits[k], device) for k in ("train", "validation", "test"))
    if validation is None or train is None:
        raise CnnreproError(f"{config['data_dir']}: no training or validation split")

    trained: nn.Module = model
    inputs = image_inputs
    if config["training_data"] == "vgg16_features":
        print("extracting VGG16 features once per image ...", flush=True)
        amp = config["mixed_precision"]
        bs = config["batch_size"]
        train, validation = (extract_features(model.conv_base, s, image_inputs, bs, amp) for s in (train, validation))
        test = extract_features(model.conv_base, test, image_inputs, bs, amp) if test is not None else None
        trained, inputs = model.head, InputPipeline("features")

    if config.get("compile"):
        # In place (nn.Module.compile): state_dict keys stay as they are for checkpoints and safetensors.
        trained.compile()
    params = [p for p in trained.parameters() if p.requires_grad]
    optimizer = make_optimizer(config["optimizer"], params, config["learning_rate"])
    return TrainingSetup(model, trained, optimizer, inputs, train, validation, test)


def train_variant(
    config: dict[str, Any],
    *,
    checkpoint_root: str | Path = "checkpoints",
    hooks: tuple[EpochHook, ...] = (),
    owner: dict[str, Any] | None = None,
    on_resume: Callable[[dict[str, Any], int], None] | None = None,
) -> RunResult:
    """Train one (variant, seed) to the end and score it. prepare(config) must have run.

    `owner` is saved with each checkpoint; a run resuming from one calls `on_resume(its owner, epoch)`.
    """
    configure_process(config)
    splits = load_splits(config)
    print("data: " + ", ".join(f"{name} {len(s)}" for name, s in splits.items() if s is not None), flush=True)
    started = time.perf_counter()
    setup = setup_training(config, splits)
    trained, optimizer, inputs = setup.trained, setup.optimizer, setup.inputs
    train, validation, test = setup.train, setup.validation, setup.test
    checkpoint = ckpt.checkpoint_path(checkpoint_root, config["framework"], config["variant"], config["seed"])
    settings = FitSettings(
        loss=config["loss"],
        epochs=config["epochs"],
        batch_size=config["batch_size"],
        steps_per_epoch=config["steps_per_epoch"],
        validation_steps=config["validation_steps"],
        seed=config["seed"],
        mixed_precision=config["mixed_precision"],
        checkpoint=checkpoint,
        config_hash=ckpt.config_hash(config),
        owner=dict(owner or {}),
        on_resume=on_resume,
    )
    history = fit(trained, optimizer, train, validation, inputs, settings, hooks)
    train_duration = time.perf_counter() - started

    metrics, confusion = score_final(trained, test, validation, inputs, config, history)
    return RunResult(history, metrics, confusion, setup.model, train_duration)


def score_final(
    model: nn.Module,
    test: DeviceSplit | None,
    validation: DeviceSplit,
    inputs: InputPipeline,
    config: dict[str, Any],
    history: list[dict[str, float]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """metrics.json figures and the confusion matrix of the final model.

    The final model sees every test image once (the validation split where the source has no
    test split); val_* are the last epoch's, as the source reports them.
    """
    scored, split_name = (test, "test") if test is not None else (validation, "validation")
    final = evaluate(
        model,
        scored,
        sequential_batches(len(scored), config["batch_size"]),
        inputs,
        config["loss"],
        mixed_precision=config["mixed_precision"],
        keep_predictions=True,
    )
    return summarize_final(history, final, list(config["classes"]), split_name, has_test=test is not None)


# --- outputs -----------------------------------------------------------------------------------------


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    """HEAD, with "-dirty" when tracked code under src/ differs from it: the hash alone would misstate what ran."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False)
        if out.returncode != 0 or not out.stdout.strip():
            return None
        diff = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "src"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() + ("-dirty" if diff.returncode == 1 else "")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunInfo:
    """run_info.json; mlflow ids filled in by the caller that opened the MLflow run."""

    framework: str
    variant: str
    seed: int
    status: str
    device: str
    started_at: str
    finished_at: str | None = None
    duration_s: float | None = None
    train_duration_s: float | None = None
    packages: dict[str, str | None] = field(default_factory=package_versions)
    git_commit: str | None = None
    data_manifest_sha256: str | None = None
    mlflow: dict[str, str | None] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    fidelity: list[dict[str, str]] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None


def save_model(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(path))


def write_outputs(
    out: str | Path,
    config: dict[str, Any],
    info: RunInfo,
    result: RunResult | None,
    *,
    entries: list[dict[str, str]] | None = None,
    save: Callable[[Any, Path], None] = save_model,
    model_file: str = MODEL_FILE,
) -> RunMetrics:
    """artifacts/ (whole or not at all), then history.csv, run_info.json and, last, metrics.json.

    Every framework writes through here; it supplies its own ledger entries and model format.
    """
    out = Path(out)
    entries = fidelity.entries_for(config) if entries is None else entries
    info.fidelity = entries
    with atomic_dir(out / "artifacts") as artifacts:
        write_json_atomic(artifacts / "fidelity.json", entries)
        if result is not None:
            save(result.model, artifacts / model_file)
            write_json_atomic(artifacts / "confusion.json", result.confusion)
    if result is None:
        metrics = RunMetrics(config["framework"], config["variant"], config["seed"], "not_run", reason=info.reason)
        history: list[dict[str, float]] = []
    else:
        metrics = RunMetrics(config["framework"], config["variant"], config["seed"], "completed", **result.metrics)
        history = result.history
    write_run(out, metrics, history, asdict(info))
    return metrics


def clear_done_marker(out: str | Path) -> None:
    """A rerun first removes metrics.json, so a rerun killed halfway never looks finished."""
    (Path(out) / "metrics.json").unlink(missing_ok=True)
