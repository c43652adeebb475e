"""Each figure copied into its MLflow run's artifacts (figures/<kind>/), or the reason it could not be."""

from __future__ import annotations

from pathlib import Path

from cnnrepro.errors import CnnreproError
from cnnrepro.run_outputs import RunInfo
from cnnrepro.visualize.index import FigureRecord


def mlflow_target(record: FigureRecord, default_uri: str) -> tuple[str, str] | None:
    """(tracking uri, run id) a figure belongs to: its source run's, or the pipeline's parent run for VGG16."""
    from cnnrepro.tracking.tracked_run import parent_run_id_from_env

    if record.source_run is None:
        parent = parent_run_id_from_env()
        return (default_uri, parent) if parent else None
    try:
        ids = RunInfo.read(record.source_run).mlflow
    except CnnreproError:
        return None  # an unreadable run_info.json: the figure stands alone, and its record says why
    if not isinstance(ids, dict) or not ids.get("run_id"):
        return None
    return str(ids.get("tracking_uri") or default_uri), str(ids["run_id"])


def log_to_mlflow(records: list[FigureRecord], figures_dir: Path, default_uri: str) -> None:
    """Add each figure to its run's artifacts under figures/<kind>/; the runs' status is left as it was.

    A run that cannot be reached is noted in the record (and printed), not fatal: the figures stand alone.
    """
    # tracking's store opening (lock, busy timeout) and retry are reused; the run is reopened by id only.
    from cnnrepro.tracking.retries import first_line, retry
    from cnnrepro.tracking.store import client

    targets = {id(r): mlflow_target(r, default_uri) for r in records}
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
