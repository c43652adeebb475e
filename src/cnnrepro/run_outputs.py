"""The run-output contract shared by training (writer) and the report (reader).

One run = one (framework, variant, seed), in runs/<framework>/<variant>/seed<seed>/:

- metrics.json   final figures and status (DVC metrics)
- history.csv    one row per epoch: epoch,loss,accuracy,val_loss,val_accuracy (DVC plots)
- run_info.json  device, durations, package versions, git commit, data hash, MLflow ids,
                 resolved config and the fidelity-ledger entries that apply
- artifacts/     model weights (model.safetensors), confusion.json, anything else

A variant that cannot run (e.g. VGG16 weights unavailable) still writes all four, with
status "not_run" and the reason, so the pipeline goes on and the report can say why.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import read_json, write_json_atomic, write_text_atomic

Status = Literal["completed", "not_run", "failed"]
STATUSES = ("completed", "not_run", "failed")
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")


def run_dir(root: str | Path, framework: str, variant: str, seed: int) -> Path:
    return Path(root) / framework / variant / f"seed{seed}"


@dataclass
class RunMetrics:
    framework: str
    variant: str
    seed: int
    status: Status
    reason: str | None = None
    val_accuracy: float | None = None
    val_loss: float | None = None
    test_accuracy: float | None = None
    test_loss: float | None = None
    best_epoch: int | None = None
    epochs_run: int = 0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise CnnreproError(f"run status {self.status!r} is not one of {', '.join(STATUSES)}")
        if self.status != "completed" and not self.reason:
            raise CnnreproError(f"a {self.status} run must say why (reason)")


@dataclass
class RunInfo:
    """run_info.json: written by the training command (cnnrepro.train.engine.lifecycle), read by RunInfo.read."""

    framework: str
    variant: str
    seed: int
    status: str
    device: str
    started_at: str
    finished_at: str | None = None
    duration_s: float | None = None
    train_duration_s: float | None = None
    packages: dict[str, str | None] = field(default_factory=dict)  # the backend's, set when outputs are written
    git_commit: str | None = None
    data_manifest_sha256: str | None = None
    mlflow: dict[str, str | None] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # the resolved run config (RunConfig.as_record)
    prepared: dict[str, Any] = field(default_factory=dict)  # what the backend prepared (Prepared); older runs: none
    fidelity: list[dict[str, str]] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None

    @classmethod
    def read(cls, run: str | Path) -> RunInfo:
        """The run_info.json of a run directory; a missing or malformed file fails naming it."""
        path = Path(run) / "run_info.json"
        raw = read_json(path)
        if not isinstance(raw, dict):
            raise CnnreproError(f"{path}: expected a JSON object")
        try:
            return cls(**raw)
        except TypeError as exc:
            raise CnnreproError(f"{path}: unexpected fields ({exc})") from None


@dataclass
class RunRecord:
    """Everything the report reads about one run."""

    path: Path
    metrics: RunMetrics
    history: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def confusion(self) -> dict[str, Any] | None:
        path = self.path / "artifacts" / "confusion.json"
        return read_json(path) if path.exists() else None


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


def _read_history(path: Path) -> list[dict[str, float]]:
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or tuple(reader.fieldnames) != HISTORY_COLUMNS:
                raise CnnreproError(f"{path}: expected columns {','.join(HISTORY_COLUMNS)}, got {reader.fieldnames}")
            return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in reader]
    except FileNotFoundError:
        raise CnnreproError(f"{path}: missing") from None
    except (ValueError, TypeError) as exc:
        raise CnnreproError(f"{path}: corrupt history ({exc})") from None


def load_run(path: str | Path) -> RunRecord:
    """Read one run directory. A missing or corrupt file raises CnnreproError naming it."""
    path = Path(path)
    raw = read_json(path / "metrics.json")
    if not isinstance(raw, dict):
        raise CnnreproError(f"{path / 'metrics.json'}: expected a JSON object")
    try:
        metrics = RunMetrics(**raw)
    except TypeError as exc:
        raise CnnreproError(f"{path / 'metrics.json'}: unexpected fields ({exc})") from None
    except CnnreproError as exc:
        raise CnnreproError(f"{path / 'metrics.json'}: {exc}") from None
    history = _read_history(path / "history.csv")
    info = read_json(path / "run_info.json")
    return RunRecord(path=path, metrics=metrics, history=history, info=info)


def summarize_final(
    history: list[dict[str, float]],
    final: dict[str, Any],
    classes: list[str],
    split: str,
    has_test: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
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
