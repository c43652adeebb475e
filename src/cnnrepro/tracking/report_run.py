"""The report's headline on the pipeline's parent run: what the comparison found, where MLflow users look.

`cnnrepro report` calls `log_report_headline` when it runs inside a pipeline (CNNREPRO_PARENT_RUN_ID set):
per compared (framework, variant) row of comparison.json, metrics `<framework>.<variant>.mean_accuracy`,
`.sd`, `.n` (over the seeds, on the split the documented figure is for), `.documented` and
`.difference_pp` where there is a documented figure, the verdict as the tag `verdict.<framework>.<variant>`;
the report's settings as `report.*` params; and the report's files as artifacts under `report/`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cnnrepro.errors import CnnreproError
from cnnrepro.tracking.retries import first_line, retry
from cnnrepro.tracking.store import absolute_sqlite_uri, client
from cnnrepro.tracking.tracked_run import param_values

REPORT_ARTIFACT_DIR = "report"
# MLflow's log_batch takes at most 1000 metrics per call.
METRICS_PER_BATCH = 1000


def headline_metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """comparison.json rows -> `<framework>.<variant>.<figure>` metrics; figures not measured are left out."""
    metrics: dict[str, float] = {}
    for row in rows:
        prefix = f"{row['framework']}.{row['variant']}"
        split = "val" if row.get("metric") == "val_accuracy" else "test"
        figures = {
            "mean_accuracy": row.get(f"{split}_mean"),
            "sd": row.get(f"{split}_std"),
            "n": row.get(f"{split}_n"),
            "documented": row.get("documented"),
            "difference_pp": row.get("difference_pp"),
        }
        metrics.update({f"{prefix}.{name}": float(v) for name, v in figures.items() if isinstance(v, int | float)})
    return metrics


def headline_tags(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The verdict per (framework, variant), and the split each headline figure is on."""
    tags: dict[str, str] = {}
    for row in rows:
        prefix = f"{row['framework']}.{row['variant']}"
        tags[f"verdict.{prefix}"] = str(row.get("verdict"))
        tags[f"metric.{prefix}"] = str(row.get("metric"))
    return tags


def new_params(settings: Mapping[str, Any], logged: Mapping[str, str]) -> dict[str, str]:
    """The report's settings as `report.*` params, those the run does not hold yet: MLflow params never
    change, so a parent reused by a later report keeps the first values (its metrics show the latest)."""
    values = param_values({"report": settings})
    return {key: value for key, value in values.items() if key not in logged}


def log_report_headline(
    uri: str,
    run_id: str,
    rows: Sequence[Mapping[str, Any]],
    files: Sequence[Path],
    settings: Mapping[str, Any] | None = None,
) -> None:
    """Write the headline of comparison.json's `rows`, its `settings` (seeds, frameworks, variants, rule) as
    params and the report `files` (files or folders) to run `run_id` (the pipeline's parent); raises
    CnnreproError in one line when the run or store is unusable."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException

    store = client(absolute_sqlite_uri(uri))
    try:
        run = retry(store.get_run, run_id)
    except MlflowException:
        raise CnnreproError(f"parent run {run_id} not found in {uri}") from None
    now = int(time.time() * 1000)
    metrics = [Metric(key, value, now, 0) for key, value in headline_metrics(rows).items()]
    tags = [RunTag(key, value) for key, value in headline_tags(rows).items()]
    params = [Param(key, value) for key, value in new_params(settings or {}, run.data.params).items()]
    try:
        for start in range(0, max(len(metrics), 1), METRICS_PER_BATCH):
            batch = metrics[start : start + METRICS_PER_BATCH]
            retry(store.log_batch, run_id, metrics=batch, tags=tags, params=params[:100])
            tags = []
        for start in range(100, len(params), 100):  # MLflow takes at most 100 params per batch
            retry(store.log_batch, run_id, params=params[start : start + 100])
        for path in files:
            if path.is_dir():
                store.log_artifacts(run_id, str(path), f"{REPORT_ARTIFACT_DIR}/{path.name}")
            elif path.is_file():
                store.log_artifact(run_id, str(path), REPORT_ARTIFACT_DIR)
    except MlflowException as exc:
        raise CnnreproError(f"parent run {run_id} in {uri}: {first_line(exc)}") from exc
