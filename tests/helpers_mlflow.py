"""What an MLflow user reads of a pipeline, for tests of any orchestrator (in-process, `dvc exp run`): a run's
logged model scored through `mlflow.pyfunc.load_model`, and the headline on the parent run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from cnnrepro.tracking.store import client, engine_uri
from cnnrepro.train.engine.images import Split


def logged_model_of(uri: str, run_id: str) -> Any:
    """The one logged model the run `run_id` produced (search_logged_models, as a user would find it)."""
    store = client(uri)
    experiment_id = store.get_run(run_id).info.experiment_id
    (model,) = [m for m in store.search_logged_models(experiment_ids=[experiment_id]) if m.source_run_id == run_id]
    return model


def pyfunc_scores(uri: str, model_id: str, split: Split) -> tuple[float, Any]:
    """(accuracy, the predicted frame) of `models:/<model_id>` loaded with mlflow.pyfunc on `split`."""
    import mlflow.pyfunc

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = engine_uri(uri)  # how models:/ finds the store
    try:
        loaded = mlflow.pyfunc.load_model(f"models:/{model_id}")
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
    scored = loaded.predict(split.images)
    truth = np.asarray(split.classes)[split.labels]
    return float(np.mean(scored["label"].to_numpy() == truth)), scored


def model_files(model: Any) -> list[str]:
    """The file names of a logged model's artifacts (a local store's)."""
    return [p.name for p in Path(model.artifact_location.removeprefix("file://")).rglob("*")]


def parent_headline(uri: str, parent_run_id: str) -> dict[str, float]:
    """The headline metrics `cnnrepro report` logged on the pipeline's parent run."""
    return dict(client(uri).get_run(parent_run_id).data.metrics)
