"""The `dvc exp run` experiment a process runs in, as MLflow shows it: DVC sets DVC_EXP_NAME in every
stage's environment (dvc.env.DVC_EXP_NAME); every run is tagged `dvc.exp_name` with it, and the pipeline's
parent run takes its name (cnnrepro.tracking.pipeline at start, `tracked_run` for a parent opened earlier).
"""

from __future__ import annotations

import os

from cnnrepro.tracking.retries import retry
from cnnrepro.tracking.store import absolute_sqlite_uri, client

DVC_EXP_ENV = "DVC_EXP_NAME"
DVC_EXP_TAG = "dvc.exp_name"


def dvc_experiment_from_env() -> str | None:
    """The `dvc exp run` experiment this process runs in (DVC_EXP_NAME), None outside one."""
    value = os.environ.get(DVC_EXP_ENV, "").strip()
    return value or None


def name_after_experiment(uri: str, run_id: str, dvc_experiment: str) -> None:
    """Name a parent run after the DVC experiment its jobs run in, once: a parent already tagged with an
    experiment keeps its name (DVC names an experiment only when it runs, after a wrapper such as
    `make dvc-repro` opened the parent; every job of the experiment then writes the same)."""
    from mlflow.entities import RunTag
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

    store = client(absolute_sqlite_uri(uri))
    if retry(store.get_run, run_id).data.tags.get(DVC_EXP_TAG):
        return
    entries = [RunTag(DVC_EXP_TAG, dvc_experiment), RunTag(MLFLOW_RUN_NAME, dvc_experiment)]
    retry(store.log_batch, run_id, tags=entries)
