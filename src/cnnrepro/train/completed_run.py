"""What a completed training run logs to MLflow beyond its params, metrics and files (called by
`cnnrepro train`, inside its MLflow run): its data as dataset inputs, its learning curves and confusion
matrix as images, and, unless params tracking.log_models is off, its model as an MLflow logged model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cnnrepro.mappings import Params

if TYPE_CHECKING:
    from cnnrepro.run_outputs import RunInfo
    from cnnrepro.tracking.tracked_run import RunLogger
    from cnnrepro.train.engine.backend import Backend, RunResult
    from cnnrepro.train.engine.run_config import Prepared, RunConfig


def log_completed_run(
    logger: RunLogger,
    params: Params,
    config: RunConfig,
    prepared: Prepared,
    info: RunInfo,
    result: RunResult,
    backend: Backend,
    out: Path,
) -> None:
    """A completed run's data as dataset inputs, its curves and confusion matrix as images, its model as
    an MLflow logged model (unless tracking.log_models is off)."""
    from cnnrepro.tracking.logged_model import log_run_model
    from cnnrepro.tracking.run_records import SplitRecord, dataset_inputs, log_run_figures, source_tags
    from cnnrepro.tracking.tracked_run import param_values
    from cnnrepro.train.engine import lifecycle
    from cnnrepro.train.engine.run_config import legacy_record

    splits = {name: split for name, split in lifecycle.load_splits(config).items() if split is not None}
    data = Path(config.data.data_dir)
    records = [
        SplitRecord(
            name,
            str((data / f"{config.data.dataset}.npz") if config.data.is_idx else (data / name)),
            tuple(split.images.shape),
            str(split.images.dtype),
            str(split.labels.dtype),
        )
        for name, split in splits.items()
    ]
    logger.log_inputs(dataset_inputs(config.data.dataset, info.data_manifest_sha256 or "unknown", records))
    log_run_figures(logger, config.run_name, result.history, result.confusion)
    if not params["tracking"].get("log_models", True):
        return
    scored = splits.get("test") or splits["validation"]
    requirements = [f"{name}=={version}" for name, version in info.packages.items() if is_distribution(name, version)]
    log_run_model(
        logger,
        out,
        name=config.run_name.replace("/", "-"),
        model_file=backend.model_file,
        example=scored.images[:2],
        classes=config.data.classes,
        requirements=requirements,
        params=param_values(legacy_record(config, prepared)),
        tags={
            "framework": config.framework,
            "variant": config.variant,
            "seed": str(config.seed),
            **source_tags(info.git_commit),
        },
        step=len(result.history),
    )


def is_distribution(name: str, version: str | None) -> bool:
    """A run_info.json package entry that pip can install (not "python" or the Keras backend's name)."""
    from importlib import metadata

    try:
        return version is not None and metadata.version(name) == version
    except metadata.PackageNotFoundError:
        return False
