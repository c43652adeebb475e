"""`cnnrepro bench --pipeline` (`make bench-gpu`): every training of params.yaml run by Snakemake as the
pipeline runs them (`--cores N`, train.runs_per_gpu side by side per GPU), timed, in ONE table.

The trainings run in a scratch copy of the workflow (Snakefile, workflow/, profiles/, params.yaml),
with the project's prepared data and source linked in, so the project's runs/, checkpoints and MLflow
store are never touched; the data stages must have run (`make bench-gpu` runs them first). Without
the ImageNet VGG16 weights, the VGG16 variants train from a random-weight file of the same shapes,
for timing only (the table says so); their accuracies mean nothing and the scratch copy is removed.

Per variant: runs, mean wall and training seconds per run (run_info.json), images per second of
training (the training images its epochs stepped through over its training time, validation
included in the time), the TFLOP/s those steps' arithmetic is (from the layers, cnnrepro.bench.flops)
and its share of the device's peak; then the whole: Snakemake's wall time for all of them.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from cnnrepro.bench import flops
from cnnrepro.bench.peaks import device_peak
from cnnrepro.bench.table import render
from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import read_json
from cnnrepro.mappings import JsonObject, Params
from cnnrepro.orchestration.stages import training_rules
from cnnrepro.train import vgg16_weights
from cnnrepro.train.backends.torch.models import create_model, vgg16
from cnnrepro.train.engine.run_config import RunConfig, VGG16Settings

# dvc.yaml: the rules read their tracked params from it (workflow/rules/common.smk).
PROJECT_FILES = ("Snakefile", "workflow", "profiles", "dvc.yaml", "added_seeds.yaml")
LINKED = ("data", "src")
# The environment of a user's tracking setup must not send the bench's runs to their store.
TRACKING_ENV = ("CNNREPRO_TRACKING_URI", "MLFLOW_TRACKING_URI", "CNNREPRO_PARENT_RUN_ID", "CNNREPRO_PIPELINE_ID")


@dataclass
class VariantRow:
    variant: str
    runs: int
    completed: int
    wall_s: float | None = None  # mean per completed run
    train_s: float | None = None
    images_per_s: float | None = None
    tflops: float | None = None
    peak_fraction: float | None = None
    reasons: list[str] = field(default_factory=list)


@dataclass
class PipelineBench:
    cores: int
    runs_per_gpu: int
    wall_s: float
    returncode: int
    vgg16_weights: str  # "imagenet" | "random (timing only)" | "not needed"
    peak_tflops: float | None
    peak_source: str
    rows: list[VariantRow]
    log: str

    def as_dict(self) -> JsonObject:
        return asdict(self)


def training_targets(params: Params) -> list[str]:
    train = params["train"]
    names = [v for group in train["variants"].values() for v in group]
    return [f"runs/{f}/{v}/seed{s}/metrics.json" for f in train["frameworks"] for v in names for s in train["seeds"]]


def write_random_vgg16(path: Path, seed: int = 0) -> Path:
    """An h5 laid out as Keras' save_weights writes the notop VGG16, random weights: for timing only."""
    import h5py

    rng = np.random.default_rng(seed)
    base = vgg16.VGG16Base()
    with h5py.File(path, "w") as f:
        for name in vgg16_weights.CONV_NAMES:
            conv = getattr(base, name)
            out_c, in_c, kh, kw = conv.weight.shape
            group = f.create_group(name)
            group.attrs["weight_names"] = [b"kernel:0", b"bias:0"]
            group.create_dataset("kernel:0", data=(rng.standard_normal((kh, kw, in_c, out_c)) * 0.02).astype("f4"))
            group.create_dataset("bias:0", data=np.zeros(out_c, dtype="f4"))
    return path


def prepare_scratch(project: Path, params: Params, scratch: Path) -> tuple[Params, str]:
    """The workflow copy with data/ and src/ linked in; returns the params written there and the weights used."""
    for name in PROJECT_FILES:
        source = project / name
        if source.is_dir():
            shutil.copytree(source, scratch / name)
        else:
            shutil.copy(source, scratch / name)
    for name in LINKED:
        if not (project / name).exists():
            raise CnnreproError(
                f"{project / name}: missing (the bench links the project's {name}/; run the data stages)"
            )
        (scratch / name).symlink_to((project / name).resolve())
    local = copy.deepcopy(params)
    train = local["train"]
    train["image_cache_dir"] = str((project / train.get("image_cache_dir", "data/cache")).resolve())
    if local["data"].get("mirror"):
        local["data"]["mirror"] = str((project / local["data"]["mirror"]).resolve())
    weights = "not needed"
    if any(v in {"feature_extraction", "feature_extraction_augmented", "fine_tuning"} for v in _variants(local)):
        try:
            vgg16_weights.resolve_keras_weights(VGG16Settings.from_params(train["vgg16"]), timeout_s=10.0)
            weights = "imagenet"
        except vgg16_weights.WeightsUnavailable:
            train["vgg16"] = dict(train["vgg16"]) | {"path": str(write_random_vgg16(scratch / "vgg16_random.h5"))}
            train["vgg16"]["sha256"] = None
            weights = "random (timing only)"
    (scratch / "params.yaml").write_text(yaml.safe_dump(local, sort_keys=False))
    return local, weights


def pipeline_params(params: Params, variants: list[str], seeds: list[int] | None, epochs_scale: float) -> JsonObject:
    """params restricted to `variants` (and `seeds`), epochs scaled (at least one) as --reproduction does."""
    from cnnrepro.bench.reproduction import scaled_epochs
    from cnnrepro.variants.registry import get_variant

    local = copy.deepcopy(params)
    train = local["train"]
    train["variants"] = {group: [v for v in names if v in variants] for group, names in train["variants"].items()}
    if seeds is not None:
        train["seeds"] = seeds
    if epochs_scale != 1.0:
        overrides = train["overrides"] = dict(train.get("overrides") or {})
        for name in _variants(local):
            epochs = int((overrides.get(name) or {}).get("epochs", get_variant(name).epochs))
            overrides[name] = dict(overrides.get(name) or {}) | {"epochs": scaled_epochs(epochs, epochs_scale)}
    return local


def _variants(params: Params) -> list[str]:
    return [v for group in params["train"]["variants"].values() for v in group]


def run_pipeline_bench(project: Path, params: Params, *, cores: int, keep: Path | None = None) -> PipelineBench:
    scratch = Path(tempfile.mkdtemp(prefix="cnnrepro-bench-pipeline-")) if keep is None else keep
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        local, weights = prepare_scratch(project, params, scratch)
        env = {k: v for k, v in os.environ.items() if k not in TRACKING_ENV}
        # Only the training rules: the linked-in data is taken as it is (the data stages are not timed, and
        # on an offline machine they could not rerun). Options taking several values go after the targets.
        command = [
            "snakemake",
            "--cores",
            str(cores),
            *training_targets(local),
            "--allowed-rules",
            *training_rules(),
        ]
        if importlib.util.find_spec("pulp") is None:
            command += ["--scheduler", "greedy"]  # the default ILP scheduler needs pulp (17 MB; not on a bare GPU box)
        started = time.perf_counter()
        with open(scratch / "snakemake.log", "w") as log:
            done = subprocess.run(command, cwd=scratch, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
        wall = time.perf_counter() - started
        log_text = (scratch / "snakemake.log").read_text()
        device = _device(local)
        peak = device_peak(device, local["train"].get("precision") == "bf16" and device.type == "cuda")
        rows = [_variant_row(scratch, local, name, peak.tflops) for name in _variants(local)]
        return PipelineBench(
            cores,
            int(local["train"].get("runs_per_gpu", 1)),
            wall,
            done.returncode,
            weights,
            peak.tflops,
            peak.source,
            rows,
            log_text[-4000:],
        )
    finally:
        if keep is None:
            shutil.rmtree(scratch, ignore_errors=True)


def _device(params: Params) -> torch.device:
    name = params["train"]["device"]
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _variant_row(scratch: Path, params: Params, variant: str, peak: float | None) -> VariantRow:
    train = params["train"]
    runs = [scratch / "runs" / f / variant / f"seed{s}" for f in train["frameworks"] for s in train["seeds"]]
    row = VariantRow(variant, len(runs), 0)
    walls, trains, rates, tflops = [], [], [], []
    for run in runs:
        try:
            info, metrics = read_json(run / "run_info.json"), read_json(run / "metrics.json")
        except CnnreproError as exc:
            row.reasons.append(f"{run.name}: no outputs ({exc}; see the log)")
            continue
        if metrics.get("status") != "completed":
            row.reasons.append(f"{run.name}: {metrics.get('status')}: {metrics.get('reason')}")
            continue
        config = RunConfig.from_record(info.get("config"), f"{run / 'run_info.json'}: config")
        images = config.training.epochs * images_per_epoch(config, scratch)
        row.completed += 1
        walls.append(float(info["duration_s"]))
        trains.append(float(info["train_duration_s"]))
        rates.append(images / trains[-1])
        tflops.append(2 * train_macs_per_image(config) * rates[-1] / 1e12)
    if row.completed:
        row.wall_s, row.train_s = float(np.mean(walls)), float(np.mean(trains))
        row.images_per_s, row.tflops = float(np.mean(rates)), float(np.mean(tflops))
        row.peak_fraction = row.tflops / peak if peak else None
    return row


def images_per_epoch(config: RunConfig, root: Path) -> int:
    """Training images one epoch steps through: steps x batch, or the (possibly capped) training split
    (a relative data_dir is relative to `root`, where the run was started)."""
    if config.training.steps_per_epoch:
        return int(config.training.steps_per_epoch) * int(config.training.batch_size)
    data = root / config.data.data_dir
    if config.data.dataset in ("mnist", "fashion_mnist"):
        with np.load(data / f"{config.data.dataset}.npz") as npz:
            n = int(npz["y_train"].shape[0])
    else:
        n = sum(1 for p in (data / "train").glob("*/*") if p.is_file())
    limit = config.data.max_train_images
    return min(n, limit) if limit else n


def train_macs_per_image(config: RunConfig) -> int:
    """MACs of one training example's forward + backward through what trains (VGG16 features: the head)."""
    with torch.device("meta"):
        model = create_model(config.variant)
        example = torch.zeros(1, *config.data.input_shape)
        vgg16.set_trainable(model, config.training.trainable)
        if config.training.training_data == "vgg16_features":
            example = model.conv_base(example)
            model = model.head
        return flops.train_macs(flops.layer_costs(model, example))


def pipeline_table(bench: PipelineBench) -> str:
    def num(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    headers = ["variant", "runs", "wall s/run", "train s/run", "img/s", "TFLOP/s", "% peak"]
    rows = [
        [
            r.variant,
            f"{r.completed}/{r.runs}",
            num(r.wall_s, ".1f"),
            num(r.train_s, ".1f"),
            num(r.images_per_s, ".0f"),
            num(r.tflops, ".3g"),
            "-" if r.peak_fraction is None else f"{100 * r.peak_fraction:.1f}%",
        ]
        for r in bench.rows
    ]
    text = render(headers, rows)
    done = sum(r.completed for r in bench.rows)
    total = sum(r.runs for r in bench.rows)
    text += (
        f"\ntotal: {done} of {total} trainings in {bench.wall_s:.1f} s wall (snakemake --cores {bench.cores}, "
        f"runs_per_gpu {bench.runs_per_gpu}, exit {bench.returncode}); target for every default training: <= 300 s"
    )
    text += f"\nVGG16 weights: {bench.vgg16_weights}; peak: {bench.peak_source}"
    for r in bench.rows:
        for reason in r.reasons:
            text += f"\n{r.variant} {reason}"
    if bench.returncode != 0:
        text += "\nsnakemake failed; the end of its log:\n" + "\n".join(bench.log.splitlines()[-15:])
    return text
