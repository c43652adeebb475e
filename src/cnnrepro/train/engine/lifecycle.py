"""One run's lifecycle, the same in every framework: can it run here, its data, its provenance, its outputs.

A backend (cnnrepro.train.engine.backend.Backend) trains; everything before and after is here: the check
of the run fine_tuning continues from, the splits as the variant uses them, run_info.json's RunInfo
(git commit, package versions), and the outputs, written so that a killed run never looks finished.
"""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import atomic_named, read_json, sha256_file, write_json_atomic
from cnnrepro.run_outputs import RunInfo, RunMetrics, write_run
from cnnrepro.train.engine.backend import Backend, RunResult
from cnnrepro.train.engine.images import Split
from cnnrepro.train.engine.preflight import IMAGE_SPLITS
from cnnrepro.train.engine.run_config import Prepared, RunConfig
from cnnrepro.train.engine.run_dir import remove_stale_artifacts
from cnnrepro.train.engine.splits import load_image_split, load_npz, manifest_sha256
from cnnrepro.variants.registry import get_variant

__all__ = ["RunInfo"]  # run_info.json's contract lives with the other run files, in cnnrepro.run_outputs

FRAMEWORK_NAMES = {"torch": "PyTorch", "keras": "Keras"}
BASE_PACKAGES = ("torch", "numpy", "pillow", "h5py", "safetensors", "mlflow", "cnnrepro")


class NotRunnable(Exception):
    """This run cannot happen here; the message is the reason written to its outputs."""


# --- can it run? -------------------------------------------------------------------------------------


def check_init_run(run: Path, config: RunConfig, model_file: str) -> str:
    """The run fine_tuning continues from must be a completed run of the same framework, of the variant
    it continues, on the same inputs, with its model saved; returns the model's sha256."""
    metrics = read_json(run / "metrics.json")
    status = metrics.get("status") if isinstance(metrics, dict) else None
    if status != "completed":
        reason = metrics.get("reason") if isinstance(metrics, dict) else None
        raise NotRunnable(f"continues from {run}, which is {status or 'not a run'}: {reason or 'no reason given'}")
    if metrics.get("framework") != config.framework:
        name = FRAMEWORK_NAMES.get(config.framework, config.framework)
        raise CnnreproError(
            f"{run}: --init-from is a {metrics.get('framework')} run; a {name} run continues a {name} one"
        )
    previous = RunConfig.from_record(RunInfo.read(run).config, f"{run / 'run_info.json'}: config")
    expected = get_variant(config.variant).continues_from
    if previous.variant != expected:
        raise CnnreproError(
            f"{run}: --init-from is a {previous.variant} run; {config.variant} continues from {expected}"
        )
    if previous.inputs.preprocessing != config.inputs.preprocessing:
        raise CnnreproError(
            f"{run}: trained on {previous.inputs.preprocessing!r} inputs, this run would feed "
            f"{config.inputs.preprocessing!r} (train.vgg16.preprocessing changed in between)"
        )
    model = run / "artifacts" / model_file
    if not model.is_file():
        raise CnnreproError(f"{model}: missing (the run it continues from has no model)")
    return sha256_file(model)


# --- data ----------------------------------------------------------------------------------------------


def load_splits(config: RunConfig) -> dict[str, Split | None]:
    """train / validation / test as the variant uses them (test None where the source has none)."""
    settings = config.data
    data = Path(settings.data_dir)
    classes = settings.classes
    size = tuple(settings.input_shape[1:])
    if settings.is_idx:
        arrays = load_npz(data / f"{config.data.dataset}.npz", classes)
        if arrays["train"].images.shape[1:3] != size:
            raise CnnreproError(
                f"{data / (config.data.dataset + '.npz')}: images {arrays['train'].images.shape[1:3]}, expected {size}"
            )
        splits: dict[str, Split | None] = {
            "train": arrays["train"],
            "validation": arrays["test"],
            "test": arrays["test"],
        }
    else:
        names = IMAGE_SPLITS[config.data.dataset]
        splits = {"test": None}
        cache_dir = config.data.image_cache
        manifest = manifest_sha256(data, config.data.dataset) if cache_dir else None
        for name in names:
            splits[name] = load_image_split(
                data / name, size, config.data.resize_filter, classes, cache_dir=cache_dir, manifest_sha256=manifest
            )
    limit = config.data.max_train_images
    train = splits["train"]
    if limit and train is not None and limit < len(train):
        # The same subset for every seed: seeds then differ only in initialization and order.
        keep = np.sort(np.random.default_rng(0).permutation(len(train))[:limit])
        splits["train"] = train.subset(keep)
    return splits


def data_line(splits: dict[str, Split | None]) -> str:
    return "data: " + ", ".join(f"{name} {len(s)}" for name, s in splits.items() if s is not None)


# --- provenance ------------------------------------------------------------------------------------------


def package_versions(packages: Sequence[str] = BASE_PACKAGES) -> dict[str, str | None]:
    """Python and each package's installed version (None where it is not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
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


# --- outputs -----------------------------------------------------------------------------------------


def write_outputs(
    out: str | Path,
    config: RunConfig,
    prepared: Prepared,
    info: RunInfo,
    result: RunResult | None,
    backend: Backend,
    stopped_history: Sequence[dict[str, float]] = (),
) -> RunMetrics:
    """run_info.json, the run's files in artifacts/ (nothing else there touched), history.csv and, last, metrics.json.

    Every framework writes through here; the backend gives its ledger entries, package versions and model
    format; run_info.json records the config and, apart, what the backend prepared. Without a result the
    run is info.status (not_run, or diverged with the epochs it trained, `stopped_history`), without a model.
    """
    out = Path(out)
    entries = backend.ledger_entries(config, prepared)
    info.fidelity = entries
    info.packages = backend.package_versions()
    info.device = config.runtime.device
    info.config = config.as_record()
    info.prepared = asdict(prepared)
    if result is not None:
        info.decisions = dict(result.decisions)
    # run_info.json first: a folder with it is recognised as this run's (run_dir.check_out_dir), however
    # early a kill stops the writing. Each artifact is its own atomic file: artifacts/ may hold the user's.
    write_json_atomic(out / "run_info.json", asdict(info))
    artifacts = out / "artifacts"
    write_json_atomic(artifacts / "fidelity.json", entries)
    written = {"fidelity.json"}
    if result is not None:
        with atomic_named(artifacts / backend.model_file) as model_path:
            backend.save_model(result.model, model_path)
        write_json_atomic(artifacts / "confusion.json", result.confusion)
        written |= {backend.model_file, "confusion.json"}
    remove_stale_artifacts(artifacts, written, backend.model_file)
    if result is None:
        status = "diverged" if info.status == "diverged" else "not_run"
        history: list[dict[str, float]] = list(stopped_history)
        metrics = RunMetrics(
            config.framework, config.variant, config.seed, status, reason=info.reason, epochs_run=len(history)
        )
    else:
        metrics = RunMetrics(config.framework, config.variant, config.seed, "completed", **result.metrics)
        history = result.history
    write_run(out, metrics, history, info)
    return metrics


def clear_done_marker(out: str | Path) -> None:
    """A rerun first removes metrics.json, so a rerun killed halfway never looks finished."""
    (Path(out) / "metrics.json").unlink(missing_ok=True)
