"""The parent run of one pipeline invocation: opened by `cnnrepro tracking start` (or the orchestrator's
start hook), every training run hangs under it, and it is closed FINISHED or FAILED at the end.

Under `dvc exp run` the parent is named after the DVC experiment (DVC_EXP_NAME) and tagged with it: at
start when DVC already set it, else by the first job that sees it (DVC names an experiment only once
it runs, after a wrapper such as `make dvc-repro` opened the parent run).
"""

from __future__ import annotations

import socket
import time

from cnnrepro.errors import CnnreproError
from cnnrepro.tracking.liveness import TAG_HOST
from cnnrepro.tracking.retries import retry
from cnnrepro.tracking.store import absolute_sqlite_uri, client, ensure_experiment
from cnnrepro.tracking.tracked_run import DVC_EXP_TAG, dvc_experiment_from_env

TAG_KIND = "cnnrepro.kind"
END_STATUSES = ("FINISHED", "FAILED", "KILLED")


def start_pipeline_run(uri: str, experiment: str, name: str | None = None) -> str:
    """Open the parent run of one pipeline invocation; return its id.

    It records no pid (the `cnnrepro tracking start` process exits at once), so only
    `mark_stale_runs_failed(..., older_than_s=...)` or `end_pipeline_run` closes it.
    """
    uri = absolute_sqlite_uri(uri)
    experiment_id = ensure_experiment(uri, experiment)
    store = client(uri)
    dvc_experiment = dvc_experiment_from_env()
    run_name = name or dvc_experiment or time.strftime("pipeline %Y-%m-%d %H:%M:%S")
    tags = {TAG_KIND: "pipeline", TAG_HOST: socket.gethostname()}
    if dvc_experiment:
        tags[DVC_EXP_TAG] = dvc_experiment
    run = retry(store.create_run, experiment_id, run_name=run_name, tags=tags)
    return run.info.run_id


def end_pipeline_run(uri: str, run_id: str, status: str = "FINISHED") -> None:
    """Close a run (normally the pipeline's parent) with FINISHED, FAILED or KILLED."""
    from mlflow.exceptions import MlflowException

    if status not in END_STATUSES:
        raise CnnreproError(f"run status {status!r} is not one of {', '.join(END_STATUSES)}")
    uri = absolute_sqlite_uri(uri)
    store = client(uri)
    try:
        retry(store.get_run, run_id)
    except MlflowException:
        raise CnnreproError(f"run {run_id} not found in {uri}") from None
    retry(store.set_terminated, run_id, status)


def name_after_experiment(uri: str, run_id: str, dvc_experiment: str) -> None:
    """Name a pipeline's parent run after the DVC experiment its jobs run in, once: a parent already
    tagged with an experiment keeps its name (every job of the experiment would write the same)."""
    from mlflow.entities import RunTag
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

    store = client(absolute_sqlite_uri(uri))
    tags = retry(store.get_run, run_id).data.tags
    if tags.get(TAG_KIND) != "pipeline" or tags.get(DVC_EXP_TAG):
        return
    entries = [RunTag(DVC_EXP_TAG, dvc_experiment), RunTag(MLFLOW_RUN_NAME, dvc_experiment)]
    retry(store.log_batch, run_id, tags=entries)
