"""The run-output contract shared by training (writer) and the report (reader).

One run = one (framework, variant, seed), in runs/<framework>/<variant>/seed<seed>/:

- metrics.json   final figures and status (DVC metrics)
- history.csv    one row per epoch: epoch,loss,accuracy,val_loss,val_accuracy (DVC plots)
- run_info.json  device, durations, package versions, git commit, data hash, MLflow ids,
                 resolved config and the fidelity-ledger entries that apply
- artifacts/     model weights (model.safetensors), confusion.json, anything else

A variant that cannot run (e.g. VGG16 weights unavailable) still writes all four, with
status "not_run" and the reason, so the pipeline goes on and the report can say why. A run whose loss
turned non-finite writes them with status "diverged", the epochs it trained (the last one non-finite),
no model, and run_info.json's diverged_epoch.

Reading a run back checks every field (cnnrepro.checks.run_fields: the check of each field is named in its
metadata below) and what the files must agree on; a run that breaks the contract is one CnnreproError
naming the file and the key.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from cnnrepro.checks.run_fields import (
    COUNT,
    FRACTION,
    LOSS,
    SECONDS,
    STRINGS,
    TEXT,
    check_confusion,
    check_keys,
    check_record,
    check_with,
    list_of,
    number,
    obj,
    one_of,
    read_bounded,
    read_run_json,
    text,
)
from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import write_json_atomic, write_text_atomic
from cnnrepro.mappings import JsonObject, Params

Status = Literal["completed", "not_run", "failed", "diverged"]
STATUSES = ("completed", "not_run", "failed", "diverged")
# Runs that trained and did not finish: the report counts them as failed, with their reason.
FAILED_STATUSES = ("failed", "diverged")
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")


def run_dir(root: str | Path, framework: str, variant: str, seed: int) -> Path:
    return Path(root) / framework / variant / f"seed{seed}"


NAME = text(nullable=False)


@dataclass
class RunMetrics:
    framework: str = field(metadata=check_with(NAME))
    variant: str = field(metadata=check_with(NAME))
    seed: int = field(metadata=check_with(COUNT))
    status: Status = field(metadata=check_with(one_of(STATUSES)))
    reason: str | None = field(default=None, metadata=check_with(TEXT))
    val_accuracy: float | None = field(default=None, metadata=check_with(FRACTION))
    val_loss: float | None = field(default=None, metadata=check_with(LOSS))
    test_accuracy: float | None = field(default=None, metadata=check_with(FRACTION))
    test_loss: float | None = field(default=None, metadata=check_with(LOSS))
    best_epoch: int | None = field(default=None, metadata=check_with(number(1, integer=True)))
    epochs_run: int = field(default=0, metadata=check_with(COUNT))

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise CnnreproError(f"run status {self.status!r} is not one of {', '.join(STATUSES)}")
        if self.status != "completed" and not self.reason:
            raise CnnreproError(f"a {self.status} run must say why (reason)")


@dataclass
class RunInfo:
    """run_info.json: written by the training command (cnnrepro.train.engine.lifecycle), read by RunInfo.read."""

    framework: str = field(metadata=check_with(NAME))
    variant: str = field(metadata=check_with(NAME))
    seed: int = field(metadata=check_with(COUNT))
    status: str = field(metadata=check_with(NAME))
    device: str = field(metadata=check_with(NAME))
    started_at: str = field(metadata=check_with(NAME))
    finished_at: str | None = field(default=None, metadata=check_with(TEXT))
    duration_s: float | None = field(default=None, metadata=check_with(SECONDS))
    train_duration_s: float | None = field(default=None, metadata=check_with(SECONDS))
    # the backend's, set when outputs are written
    packages: dict[str, str | None] = field(default_factory=dict, metadata=check_with(STRINGS))
    git_commit: str | None = field(default=None, metadata=check_with(TEXT))
    data_manifest_sha256: str | None = field(default=None, metadata=check_with(TEXT))
    mlflow: dict[str, str | None] = field(default_factory=dict, metadata=check_with(STRINGS))
    # the resolved run config (the keys the report reads are checked by CONFIG_CHECKS)
    config: Params = field(default_factory=dict, metadata=check_with(obj()))
    # what the backend prepared (RunConfig's Prepared); runs before it was typed have none
    prepared: JsonObject = field(default_factory=dict, metadata=check_with(obj()))
    fidelity: list[dict[str, str]] = field(default_factory=list, metadata=check_with(list_of(obj(TEXT))))
    overrides: Params = field(default_factory=dict, metadata=check_with(obj()))
    # What the backend decided at run time, each {"state": ..., "reason": ...} (the fast step: on, fell back
    # to the eager loop when its capture failed or disagreed, or off); runs before it have none
    decisions: dict[str, dict[str, str]] = field(default_factory=dict, metadata=check_with(obj(obj(TEXT))))
    reason: str | None = field(default=None, metadata=check_with(TEXT))
    # the epoch whose loss was not finite, for a diverged run
    diverged_epoch: int | None = field(default=None, metadata=check_with(number(1, integer=True)))

    @classmethod
    def read(cls, run: str | Path) -> RunInfo:
        """The run_info.json of a run directory; a missing or malformed file fails naming it and the key."""
        path = Path(run) / "run_info.json"
        return cls(**check_run_info(read_run_json(path), path))


# The keys of the resolved run config that readers of finished runs use (the report's evaluation size,
# data notes and ablation effects), checked where present.
POSITIVE_OR_NULL = number(1, integer=True)
CONFIG_CHECKS = {
    "dataset": TEXT,
    "data_dir": TEXT,
    "classes": list_of(NAME),
    "epochs": POSITIVE_OR_NULL,
    "batch_size": POSITIVE_OR_NULL,
    "validation_steps": POSITIVE_OR_NULL,
    "validation_split": TEXT,
    "ablation": obj(nullable=True),
}


def check_run_info(raw: Any, path: Path) -> JsonObject:
    """run_info.json parsed: RunInfo's fields and checks, and the config keys in CONFIG_CHECKS."""
    info = check_record(RunInfo, raw, path)
    config = info.get("config") or {}
    check_keys(config, CONFIG_CHECKS, path, "config.")
    if isinstance(config.get("ablation"), dict):
        check_keys(config["ablation"], {"name": NAME}, path, "config.ablation.")
    return info


@dataclass
class RunRecord:
    """Everything the report reads about one run."""

    path: Path
    metrics: RunMetrics
    history: list[dict[str, float]] = field(default_factory=list)
    info: JsonObject = field(default_factory=dict)

    @property
    def confusion(self) -> JsonObject | None:
        """artifacts/confusion.json, checked (labels, a square matrix of counts, its split); None if absent."""
        path = self.path / "artifacts" / "confusion.json"
        return check_confusion(read_run_json(path), path) if path.exists() else None


def write_history(path: str | Path, history: list[dict[str, float]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row[k] for k in HISTORY_COLUMNS})
    write_text_atomic(path, buf.getvalue())


def write_run(out: str | Path, metrics: RunMetrics, history: list[dict[str, float]], info: RunInfo) -> None:
    """Write the three small files; artifacts/ is the trainer's. metrics.json goes last: it marks the run done."""
    out = Path(out)
    (out / "artifacts").mkdir(parents=True, exist_ok=True)
    write_history(out / "history.csv", history)
    write_json_atomic(out / "run_info.json", asdict(info))
    write_json_atomic(out / "metrics.json", asdict(metrics))


HISTORY_CHECKS = {"loss": LOSS, "accuracy": FRACTION, "val_loss": LOSS, "val_accuracy": FRACTION}


def _history_value(column: str, value: str | None, where: str) -> float:
    if value is None:
        raise CnnreproError(f"{where}: {column}: missing value")
    try:
        return int(value) if column == "epoch" else float(value)
    except ValueError:
        raise CnnreproError(f"{where}: {column}: {value[:40]!r} is not a number") from None


def _read_history(path: Path, completed: bool) -> list[dict[str, float]]:
    """history.csv, one row per epoch in order. A completed run's figures are checked: training loss and
    accuracy finite and in range, val_* in range or NaN (the split was not evaluated that epoch)."""
    try:
        reader = csv.DictReader(io.StringIO(read_bounded(path), newline=""))
        if reader.fieldnames is None or tuple(reader.fieldnames) != HISTORY_COLUMNS:
            raise CnnreproError(f"{path}: expected columns {','.join(HISTORY_COLUMNS)}, got {reader.fieldnames}")
        rows = []
        for n, raw in enumerate(reader, start=1):
            where = f"{path}: row {n}"
            if None in raw:
                raise CnnreproError(f"{where}: more values than the {len(HISTORY_COLUMNS)} columns")
            row = {column: _history_value(column, raw[column], where) for column in HISTORY_COLUMNS}
            if row["epoch"] < 1 or (rows and row["epoch"] <= rows[-1]["epoch"]):
                raise CnnreproError(f"{where}: epoch: {row['epoch']} does not follow the epochs before it")
            for column, check in HISTORY_CHECKS.items() if completed else ():
                value = row[column]
                nan_allowed = column.startswith("val_")
                if not (nan_allowed and math.isnan(value)) and (problem := check(value)):
                    raise CnnreproError(f"{where}: {column}: {problem}")
            rows.append(row)
        return rows
    except csv.Error as exc:
        raise CnnreproError(f"{path}: corrupt CSV ({exc})") from None


def check_completed(metrics: RunMetrics, history: list[dict[str, float]], path: Path) -> None:
    """What a completed run's figures must agree on, as summarize_final writes them: one history row per
    epoch run, the best epoch one of them, and a figure on some split."""
    where = path / "metrics.json"
    if metrics.epochs_run < 1 or metrics.epochs_run != len(history):
        raise CnnreproError(f"{where}: epochs_run: {metrics.epochs_run}, but history.csv has {len(history)} epochs")
    if metrics.best_epoch is not None and metrics.best_epoch not in {row["epoch"] for row in history}:
        raise CnnreproError(f"{where}: best_epoch: {metrics.best_epoch} is not an epoch of history.csv")
    if metrics.val_accuracy is None and metrics.test_accuracy is None:
        raise CnnreproError(f"{where}: val_accuracy: null, and test_accuracy too: a completed run reports one")


def load_run(path: str | Path) -> RunRecord:
    """Read one run directory, every file checked (cnnrepro.checks.run_fields) and the files against each other.
    A missing, corrupt or contract-breaking file raises CnnreproError naming it and the key."""
    path = Path(path)
    where = path / "metrics.json"
    try:
        metrics = RunMetrics(**check_record(RunMetrics, read_run_json(where), where))
    except CnnreproError as exc:
        message = str(exc)
        raise CnnreproError(message if message.startswith(str(where)) else f"{where}: {message}") from None
    completed = metrics.status == "completed"
    history = _read_history(path / "history.csv", completed)
    if completed:
        check_completed(metrics, history, path)
    info = check_run_info(read_run_json(path / "run_info.json"), path / "run_info.json")
    for key in ("framework", "variant", "seed"):
        if info[key] != getattr(metrics, key):
            raise CnnreproError(f"{where}: {key}: {getattr(metrics, key)!r}, but run_info.json says {info[key]!r}")
    return RunRecord(path=path, metrics=metrics, history=history, info=info)


def summarize_final(
    history: list[dict[str, float]],
    final: JsonObject,
    classes: list[str],
    split: str,
    has_test: bool,
) -> tuple[JsonObject, JsonObject]:
    """metrics.json figures and confusion.json of a finished run, the same for every framework.

    `final` is the last model scored once on `split`: accuracy, loss, and per-image targets/predictions.
    The validation figures are the last epoch's, as the sources read their curves.
    """
    import numpy as np

    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(matrix, (np.asarray(final["targets"]), np.asarray(final["predictions"])), 1)
    best = max(history, key=lambda row: row["val_accuracy"]) if history else None
    metrics = {
        "val_accuracy": history[-1]["val_accuracy"] if history else None,
        "val_loss": history[-1]["val_loss"] if history else None,
        "test_accuracy": final["accuracy"] if has_test else None,
        "test_loss": final["loss"] if has_test else None,
        "best_epoch": int(best["epoch"]) if best else None,
        "epochs_run": len(history),
    }
    return metrics, {"labels": list(classes), "matrix": matrix.tolist(), "split": split}
