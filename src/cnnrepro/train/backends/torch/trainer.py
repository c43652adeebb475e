"""One PyTorch run from its resolved config: check it can run, build, train, score; the splits come from,
and the outputs are written by, the engine's lifecycle (cnnrepro.train.engine.lifecycle).

`prepare` decides up front whether the run can happen here (VGG16 weights found, the run it
continues from completed); when not, the run is written as not_run with the reason and the
pipeline goes on. It never trains a randomly initialized VGG16 in place of the ImageNet one.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import sha256_file, write_file
from cnnrepro.mappings import JsonObject
from cnnrepro.run_outputs import summarize_final
from cnnrepro.train import vgg16_weights
from cnnrepro.train.backends.torch import ledger
from cnnrepro.train.backends.torch.devices import resolve_device
from cnnrepro.train.backends.torch.fast_step_guard import FAULT_ENV as FAST_STEP_FAULT_ENV
from cnnrepro.train.backends.torch.inference import MODEL_FILE
from cnnrepro.train.backends.torch.loop import FitSettings, fit
from cnnrepro.train.backends.torch.models import create_model, vgg16
from cnnrepro.train.backends.torch.models.layers import torch_default_init_
from cnnrepro.train.backends.torch.optimizers import make_optimizer
from cnnrepro.train.backends.torch.precision import set_torch_precision
from cnnrepro.train.backends.torch.steps import DeviceSplit, evaluate
from cnnrepro.train.engine import checkpoint as ckpt
from cnnrepro.train.engine.backend import EpochHook, ResumeHook, RunResult
from cnnrepro.train.engine.epochs import sequential_batches
from cnnrepro.train.engine.images import Split
from cnnrepro.train.engine.lifecycle import NotRunnable, check_init_run, data_line, load_splits, package_versions
from cnnrepro.train.engine.run_config import Prepared, RunConfig, legacy_record
from cnnrepro.train.inputs.pipeline import InputPipeline, augmentation

# --- can it run? -------------------------------------------------------------------------------------


def prepare(config: RunConfig, *, download_timeout_s: float = 20.0) -> Prepared:
    """What the run needs beyond data (the model it continues from, the VGG16 weights); NotRunnable when
    it is not here."""
    vgg = config.vgg16
    if config.init_from is not None:
        return Prepared(init_model_sha256=check_init_run(Path(config.init_from), config, MODEL_FILE))
    if vgg is None:
        return Prepared()
    if vgg.source == "keras":
        try:
            path = vgg16_weights.resolve_keras_weights(vgg, timeout_s=download_timeout_s)
        except vgg16_weights.WeightsUnavailable as exc:
            raise NotRunnable(str(exc)) from None
        return Prepared(vgg16_weights_file=str(path), vgg16_weights_sha256=sha256_file(path))
    try:
        import torchvision
    except ImportError as exc:
        raise NotRunnable(f"train.vgg16.source is torchvision, but torchvision is not importable ({exc})") from None
    return Prepared(vgg16_weights_file=vgg16.torchvision_weights_name(torchvision.__version__))


# --- model ------------------------------------------------------------------------------------------


def build_model(config: RunConfig, prepared: Prepared) -> nn.Module:
    """The variant's network with its starting weights, frozen where the source froze it."""
    model = create_model(config.variant)
    if config.training.weight_init == "torch_default":
        torch_default_init_(model)
    vgg = config.vgg16
    if config.init_from is not None:
        from safetensors.torch import load_file

        path = Path(config.init_from) / "artifacts" / MODEL_FILE
        try:
            model.load_state_dict(load_file(path))
        except Exception as exc:  # wrong keys/shapes or a corrupt file: name the file
            raise CnnreproError(f"{path}: cannot load into {config.variant} ({str(exc).splitlines()[0]})") from None
    elif vgg is not None:
        if vgg.source == "keras":
            vgg16.load_keras_vgg16_(model.conv_base, prepared.vgg16_weights_file)
        else:
            try:
                vgg16.load_torchvision_vgg16_(model.conv_base)
            except vgg16_weights.WeightsUnavailable as exc:
                raise NotRunnable(str(exc)) from None
    vgg16.set_trainable(model, config.training.trainable)
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
    from cnnrepro.train.backends.torch.steps import autocast

    conv_base.eval()
    chunks = []
    for index in sequential_batches(len(split), batch_size):
        x, _ = split.batch(index)
        with autocast(x.device, mixed_precision):
            chunks.append(conv_base(inputs(x, train=False)).float())
    return DeviceSplit(torch.cat(chunks), split.y)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --- the run -----------------------------------------------------------------------------------------


def configure_process(config: RunConfig) -> None:
    """Seeds, thread count and cuDNN autotuning, as every run sets them before building anything."""
    seed_everything(config.seed)
    if config.runtime.num_threads > 0:
        torch.set_num_threads(config.runtime.num_threads)
    set_torch_precision(config.runtime.precision)
    if config.runtime.on_cuda:
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


def setup_training(config: RunConfig, prepared: Prepared, splits: dict[str, Split | None]) -> TrainingSetup:
    """Model on the device (channels_last / compiled if asked), data on the device, VGG16 features
    computed once where the variant trains on them, and the optimizer over what trains."""
    device = torch.device(config.runtime.device)
    model = build_model(config, prepared).to(device)
    channels_last = config.runtime.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    spec, generator = augmentation(config, device)
    image_inputs = InputPipeline(
        "images", config.inputs.preprocessing, config.inputs.input_scale, spec, generator, channels_last
    )
    train, validation, test = (_to_device(splits[k], device) for k in ("train", "validation", "test"))
    if validation is None or train is None:
        raise CnnreproError(f"{config.data.data_dir}: no training or validation split")

    trained: nn.Module = model
    inputs = image_inputs
    if config.training.training_data == "vgg16_features":
        print("extracting VGG16 features once per image ...", flush=True)
        amp = config.mixed_precision
        bs = config.training.batch_size
        train, validation = (extract_features(model.conv_base, s, image_inputs, bs, amp) for s in (train, validation))
        test = extract_features(model.conv_base, test, image_inputs, bs, amp) if test is not None else None
        trained, inputs = model.head, InputPipeline("features")

    if config.runtime.compile:
        # In place (nn.Module.compile): state_dict keys stay as they are for checkpoints and safetensors.
        trained.compile()
    params = [p for p in trained.parameters() if p.requires_grad]
    optimizer = make_optimizer(config.training.optimizer, params, config.training.learning_rate)
    return TrainingSetup(model, trained, optimizer, inputs, train, validation, test)


def train_variant(
    config: RunConfig,
    prepared: Prepared,
    *,
    checkpoint_root: str | Path = "checkpoints",
    hooks: Sequence[EpochHook] = (),
    owner: JsonObject | None = None,
    on_resume: ResumeHook | None = None,
) -> RunResult:
    """Train one (variant, seed) to the end and score it; `prepared` is what prepare(config) found.

    `owner` is saved with each checkpoint; a run resuming from one calls `on_resume(its owner, epoch)`.
    """
    configure_process(config)
    splits = load_splits(config)
    print(data_line(splits), flush=True)
    started = time.perf_counter()
    setup = setup_training(config, prepared, splits)
    trained, optimizer, inputs = setup.trained, setup.optimizer, setup.inputs
    train, validation, test = setup.train, setup.validation, setup.test
    checkpoint = ckpt.checkpoint_path(checkpoint_root, config.framework, config.variant, config.seed)
    decisions: dict[str, dict[str, str]] = {}
    settings = FitSettings(
        loss=config.training.loss,
        epochs=config.training.epochs,
        batch_size=config.training.batch_size,
        steps_per_epoch=config.training.steps_per_epoch,
        validation_steps=config.training.validation_steps,
        seed=config.seed,
        mixed_precision=config.mixed_precision,
        checkpoint=checkpoint,
        config_hash=ckpt.config_hash(legacy_record(config, prepared)),
        owner=dict(owner or {}),
        on_resume=on_resume,
        fast_step=config.runtime.fast_step,
        checkpoint_every=config.runtime.checkpoint_every,
        checkpoint_in_background=config.checkpoint_in_background,
        fast_step_fault=os.environ.get(FAST_STEP_FAULT_ENV) or None,
        on_decision=lambda name, record: decisions.__setitem__(name, record),
    )
    history = fit(trained, optimizer, train, validation, inputs, settings, hooks)
    train_duration = time.perf_counter() - started

    metrics, confusion = score_final(trained, test, validation, inputs, config, history)
    return RunResult(history, metrics, confusion, setup.model, train_duration, decisions)


def score_final(
    model: nn.Module,
    test: DeviceSplit | None,
    validation: DeviceSplit,
    inputs: InputPipeline,
    config: RunConfig,
    history: list[dict[str, float]],
) -> tuple[JsonObject, JsonObject]:
    """metrics.json figures and the confusion matrix of the final model.

    The final model sees every test image once (the validation split where the source has no
    test split); val_* are the last epoch's, as the source reports them.
    """
    scored, split_name = (test, "test") if test is not None else (validation, "validation")
    final = evaluate(
        model,
        scored,
        sequential_batches(len(scored), config.training.batch_size),
        inputs,
        config.training.loss,
        mixed_precision=config.mixed_precision,
        keep_predictions=True,
    )
    return summarize_final(history, final, list(config.data.classes), split_name, has_test=test is not None)


# --- the backend --------------------------------------------------------------------------------------


def save_model(model: nn.Module, path: Path) -> None:
    # Serialized in memory, written by Python: a full disk is then an OSError naming the file and errno.
    from safetensors.torch import save

    write_file(path, save({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}))


class TorchBackend:
    """The PyTorch backend (cnnrepro.train.engine.backend.Backend)."""

    framework = "torch"
    model_file = MODEL_FILE

    def resolve_device(self, requested: str, *, runs_per_gpu: int = 1, num_threads: int = 0) -> str:
        return str(resolve_device(requested, runs_per_gpu))

    def prepare(self, config: RunConfig, *, download_timeout_s: float = 20.0) -> Prepared:
        return prepare(config, download_timeout_s=download_timeout_s)

    def train_variant(
        self,
        config: RunConfig,
        prepared: Prepared,
        *,
        checkpoint_root: str | Path = "checkpoints",
        hooks: Sequence[EpochHook] = (),
        owner: JsonObject | None = None,
        on_resume: ResumeHook | None = None,
    ) -> RunResult:
        return train_variant(
            config, prepared, checkpoint_root=checkpoint_root, hooks=hooks, owner=owner, on_resume=on_resume
        )

    def save_model(self, model: nn.Module, path: Path) -> None:
        save_model(model, path)

    def ledger_entries(self, config: RunConfig, prepared: Prepared) -> list[dict[str, str]]:
        return ledger.entries_for(config, prepared)

    def package_versions(self) -> dict[str, str | None]:
        return package_versions()

    def load_trained(self, run: Path, config: RunConfig, device: str = "auto") -> Any:
        from cnnrepro.train.backends.torch.inference import load_trained

        return load_trained(run, config, device)


BACKEND = TorchBackend()
