"""A completed run's model as an MLflow 3 logged model: pyfunc "models from code", linked to its run.

Why not `mlflow.pytorch` / `mlflow.keras`: `mlflow.pytorch.log_model` pickles the whole module and its
loader unpickles it (the project unpickles nothing); `mlflow.keras` saves .keras without pickle, but its
pyfunc feeds the raw input to the network, while our networks take the pixels through the run's own input
pipeline (scaling, the VGG16 preprocessing), so it would not score like `cnnrepro evaluate`. One pyfunc
(cnnrepro.tracking.pyfunc_code) serves both frameworks through the run's own backend, from the run's
weights file (safetensors / .keras weights), rebuilding the network from the variant registry.

The model is written through an explicit client and run id, never MLflow's global active run or tracking
URI (jobs in threads or processes would cross): create the logged model, link it to the run as an output,
save the pyfunc locally, upload it, mark it READY (FAILED if anything on the way fails).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnrepro.tracking.retries import retry
from cnnrepro.tracking.tracked_run import RunLogger

# The run files the pyfunc's loader reads (cnnrepro.inference.evaluate.load_trained).
RUN_FILES = ("metrics.json", "run_info.json")
MODEL_TYPE = "cnnrepro-image-classifier"


def signature(example: np.ndarray, classes: Sequence[str]) -> Any:
    """Input: uint8 images of the example's shape, any count; output: `label` and one probability per class."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema, TensorSpec

    # One unnamed tensor: pyfunc hands predict the array itself (a named one arrives as a dict).
    inputs = Schema([TensorSpec(np.dtype(np.uint8), (-1, *example.shape[1:]))])
    outputs = Schema([ColSpec(DataType.string, "label"), *(ColSpec(DataType.double, str(c)) for c in classes)])
    return ModelSignature(inputs=inputs, outputs=outputs)


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)  # no second copy of a large weights file on the same disk
    except OSError:
        shutil.copy2(source, target)


def _stage_run(run_dir: Path, model_file: str, into: Path) -> Path:
    """The part of the run directory the loader needs: metrics.json, run_info.json, artifacts/<model file>."""
    staged = into / "run"
    for name in RUN_FILES:
        _link_or_copy(run_dir / name, staged / name)
    _link_or_copy(run_dir / "artifacts" / model_file, staged / "artifacts" / model_file)
    return staged


def log_run_model(
    logger: RunLogger,
    run_dir: str | Path,
    *,
    name: str,
    model_file: str,
    example: np.ndarray,
    classes: Sequence[str],
    requirements: Sequence[str],
    params: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
    step: int = 0,
) -> str:
    """Log the completed run in `run_dir` as a logged model named `name`, output of `logger`'s run at
    `step`; returns its model id. `example`: a few input images (uint8, N x H x W x C)."""
    import mlflow.pyfunc
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    # Imported (not only named by path) so the DAG counts it as code of the training stage.
    from cnnrepro.tracking import pyfunc_code

    client = logger.client
    model = retry(
        client.create_logged_model,
        logger.experiment_id,
        name=name,
        source_run_id=logger.run_id,
        params=dict(params or {}),
        tags=dict(tags or {}),
        model_type=MODEL_TYPE,
    )
    try:
        retry(client.log_outputs, logger.run_id, [LoggedModelOutput(model.model_id, step)])
        with tempfile.TemporaryDirectory(prefix="cnnrepro-model-") as tmp:
            staged = _stage_run(Path(run_dir), model_file, Path(tmp))
            local = Path(tmp) / "model"
            mlflow_model = Model(
                artifact_path=model.artifact_location,
                model_uuid=model.model_id,
                run_id=logger.run_id,
                model_id=model.model_id,
            )
            mlflow.pyfunc.save_model(
                str(local),
                python_model=str(Path(pyfunc_code.__file__)),
                artifacts={"run": str(staged)},
                signature=signature(example, classes),
                input_example=example,
                pip_requirements=list(requirements),
                mlflow_model=mlflow_model,
            )
            client.log_model_artifacts(model.model_id, str(local))
    except BaseException:
        retry(client.finalize_logged_model, model.model_id, LoggedModelStatus.FAILED)
        raise
    retry(client.finalize_logged_model, model.model_id, LoggedModelStatus.READY)
    return str(model.model_id)
