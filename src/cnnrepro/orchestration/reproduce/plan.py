"""The plan `cnnrepro reproduce` prints before any work: the jobs, the device, and an estimate of the time.

The jobs are Snakemake's own dry run (`snakemake -n`), counted per rule. The time is an estimate from a
quick measurement here: for each variant still to train, a few training steps on random inputs of the
variant's shape (the run's batch, or part of it, scaled per image to the run's batch size), times the steps of a
run, summed over the runs and divided by the trainings that run side by side. Data stages and model setup
are not counted.
"""

from __future__ import annotations

import re
import subprocess
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnrepro.mappings import Params
from cnnrepro.train.engine.run_config import RunConfig

# Training images per split when the data is not there yet: MNIST and Fashion-MNIST train on 60,000
# and validate on their 10,000 test images; the book's split is params' split.book per class.
IDX_SPLITS = {"mnist": (60_000, 10_000), "fashion_mnist": (60_000, 10_000)}
THREADS_PER_TRAINING = 4  # workflow/rules/train.smk asks `threads: 4` for every training job
# A probe step: the run's own batch, capped at about 1.5 M input values (a few 300x300 images): a small
# batch would overstate the time per image (fixed costs per step), a large one makes the plan slow.
# Repeated for about a second after one warm-up step, or that step alone when it took longer.
PROBE_MAX_VALUES = 1_500_000
PROBE_SECONDS = 1.0
# An evaluation pass (forward only) costs about a third of a training step, per image.
FORWARD_SHARE = 1 / 3

_STATS_ROW = re.compile(r"^(\S+)\s+(\d+)$")
_WILDCARDS = re.compile(r"wildcards: (.*)$")


@dataclass(frozen=True)
class TrainingJob:
    framework: str
    variant: str
    seed: int
    ablation: str | None = None  # an ablate_* job (workflow/rules/ablations.smk): same variant, other settings


@dataclass
class DryRun:
    """What `snakemake -n` says is still to do."""

    jobs_per_rule: dict[str, int] = field(default_factory=dict)
    trainings: list[TrainingJob] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.jobs_per_rule.values())


@dataclass(frozen=True)
class Device:
    kind: str  # "cuda" | "cpu"
    name: str
    count: int  # GPUs, or CPU cores


@dataclass(frozen=True)
class RunEstimate:
    variant: str
    seconds_per_run: float
    how: str  # what was timed, in words
    needs_vgg16: bool = False  # starts from the ImageNet VGG16 weights


def vgg16_weights_here(params: Params) -> bool:
    """Whether the ImageNet VGG16 file is already where training looks first (no download tried)."""
    from cnnrepro.train.vgg16_weights import KERAS_WEIGHTS_NAME, PROJECT_CACHE, keras_cache_path

    path = params["train"]["vgg16"].get("path")
    places = [Path(path)] if path else []
    return any(p.is_file() for p in [*places, keras_cache_path(), PROJECT_CACHE / KERAS_WEIGHTS_NAME])


def parse_dry_run(output: str) -> DryRun:
    """Job counts from the 'Job stats:' table and the (framework, variant, seed) of each training job."""
    plan = DryRun()
    in_stats = False
    for raw in output.splitlines():
        line = raw.strip()
        if line.startswith("Job stats:"):
            in_stats, plan.jobs_per_rule = True, {}
            continue
        if in_stats:
            match = _STATS_ROW.match(line)
            if match and match.group(1) not in ("total", "job", "count"):
                plan.jobs_per_rule[match.group(1)] = int(match.group(2))
            elif not line:
                in_stats = False
        found = _WILDCARDS.search(line)
        if found:
            values = dict(part.split("=", 1) for part in found.group(1).split(", ") if "=" in part)
            if {"framework", "variant", "seed"} <= values.keys():
                job = TrainingJob(values["framework"], values["variant"], int(values["seed"]), values.get("ablation"))
                if job not in plan.trainings:
                    plan.trainings.append(job)
    return plan


def dry_run(snakemake: list[str], cores: int) -> DryRun:
    """Snakemake's dry run of the whole pipeline; its own one-line error when the params are bad."""
    from cnnrepro.errors import CnnreproError

    result = subprocess.run([*snakemake, "-n", "--cores", str(cores)], capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        raise CnnreproError(lines[-1] if lines else f"snakemake -n failed ({result.returncode})")
    return parse_dry_run(result.stdout + result.stderr)


def detect_device(params: Params, cores: int) -> Device:
    import torch

    wanted = params["train"]["device"]
    if wanted in ("auto", "cuda") and torch.cuda.is_available():
        return Device("cuda", torch.cuda.get_device_name(0), torch.cuda.device_count())
    return Device("cpu", "CPU", cores)


def parallel_trainings(device: Device, cores: int) -> int:
    """Trainings Snakemake runs side by side: one per GPU, else cores / the threads each job asks."""
    if device.kind == "cuda":
        return device.count
    return max(1, cores // min(THREADS_PER_TRAINING, cores))


def _train_images(params: Params, config: RunConfig, project: Path) -> tuple[int, int]:
    """(train, validation) images of a variant's data, from the data when it is there."""
    from cnnrepro.variants.registry import get_variant

    dataset = get_variant(config.variant).dataset
    if dataset in IDX_SPLITS:
        return IDX_SPLITS[dataset]
    if dataset == "dogs_vs_cats":
        book = params["split"]["book"]
        return 2 * book["train"], 2 * book["validation"]
    split = project / "data" / "split" / "keras_example"
    if split.is_dir():
        count = [sum(1 for p in (split / s).rglob("*") if p.is_file()) for s in ("train", "validation")]
        return count[0], count[1]
    archive = project / str(params["data"]["mirror"] or "-") / "petimages" / params["download"]["petimages"]["archive"]
    images = 25_000
    if archive.is_file():
        with zipfile.ZipFile(archive) as zf:
            images = sum(1 for name in zf.namelist() if name.lower().endswith(".jpg"))
    return round(images * 0.8), images - round(images * 0.8)


def _timed(step: Any, device: Any) -> float:
    """Seconds per call of `step`, after one warm-up call, repeated for about PROBE_SECONDS."""
    import torch

    started = time.perf_counter()
    step()
    warm_up = time.perf_counter() - started
    if warm_up > PROBE_SECONDS:
        return warm_up
    calls, started = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - started < PROBE_SECONDS:
        step()
        calls += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
    return (time.perf_counter() - started) / calls


def _seconds_per_image(variant: str, config: RunConfig, device: Any) -> tuple[float, float]:
    """(seconds per training image, seconds per forward-only image), timed on random inputs."""
    import torch

    from cnnrepro.train.backends.torch.models import create_model, vgg16
    from cnnrepro.train.backends.torch.optimizers import make_optimizer
    from cnnrepro.train.backends.torch.steps import train_step
    from cnnrepro.variants.registry import get_variant

    spec = get_variant(variant)
    model = create_model(variant).to(device)
    vgg16.set_trainable(model, config.training.trainable)
    values_per_image = spec.input_shape[0] * spec.input_shape[1] * spec.input_shape[2]
    n = max(1, min(config.training.batch_size, PROBE_MAX_VALUES // values_per_image))
    x = torch.rand(n, *spec.input_shape, device=device)
    y = torch.randint(0, 2 if spec.loss == "binary_crossentropy" else 10, (n,), device=device)
    if config.training.training_data != "images":  # features computed once: the conv base's forward pass
        with torch.no_grad():
            return 0.0, _timed(lambda: model.conv_base(x), device) / n
    optimizer = make_optimizer(spec.optimizer, [p for p in model.parameters() if p.requires_grad], spec.learning_rate)
    per_image = _timed(lambda: train_step(model, optimizer, x, y, spec.loss), device) / n
    return per_image, per_image * FORWARD_SHARE


def estimate_run(params: Params, variant: str, device: Device, cores: int, project: Path) -> RunEstimate:
    """Seconds one run of `variant` should take here (one seed, all epochs, validation and test)."""
    import torch

    from cnnrepro.train.engine.run_config import resolve_run_config
    from cnnrepro.variants.registry import get_variant

    init_from = Path("-") if get_variant(variant).continues_from else None
    config = resolve_run_config(
        params,
        framework="torch",
        variant=variant,
        seed=0,
        data_dir=Path("-"),
        out_dir="-",
        device=device.kind,
        init_from=init_from,
    )
    torch.set_num_threads(min(THREADS_PER_TRAINING, cores))
    train_s, forward_s = _seconds_per_image(variant, config, torch.device(device.kind))
    n_train, n_val = _train_images(params, config, project)
    vgg = config.vgg16 is not None
    if config.training.training_data != "images":
        total = forward_s * (n_train + 2 * n_val)  # train, validation and test images through VGG16 once
        return RunEstimate(variant, total, f"VGG16 features of {n_train + 2 * n_val} images", vgg)
    per_epoch = (
        config.training.steps_per_epoch * config.training.batch_size if config.training.steps_per_epoch else n_train
    )
    val = config.training.validation_steps * config.training.batch_size if config.training.validation_steps else n_val
    total = config.training.epochs * (per_epoch * train_s + val * forward_s) + n_val * forward_s
    step_ms = 1000 * train_s * config.training.batch_size
    how = f"{config.training.epochs} epochs x {per_epoch} images, {step_ms:.0f} ms/step"
    return RunEstimate(variant, total, how, vgg)
