"""The parent run of one pipeline invocation: opened by `cnnrepro tracking start` (or the orchestrator's
start hook), every training run hangs under it, and it is closed FINISHED or FAILED at the end.

Under `dvc exp run` the parent is named after the DVC experiment and tagged with it (see
cnnrepro.tracking.dvc_experiment): here when DVC already set it, else by the first job that sees it.
"""

from __future__ import annotations

import socket
import time

from cnnrepro.errors import CnnreproError
from cnnrepro.tracking.dvc_experiment import DVC_EXP_TAG, dvc_experiment_from_env
from cnnrepro.tracking.liveness import TAG_HOST
from cnnrepro.tracking.retries import retry
from cnnrepro.tracking.store import absolute_sqlite_uri, client, ensure_experiment

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
