"""`cnnrepro train`: train one (framework, variant, seed), write the run outputs, log it to MLflow.

The config is resolved once (documented spec + params overrides + device), printed, logged as
MLflow params and stored in run_info.json. Every MLflow call of a training run starts in this module:
besides params, per-epoch metrics, system metrics and the run files, a completed run logs its data as
dataset inputs, its curves and confusion matrix as images and (params tracking.log_models) its model as
an MLflow logged model (cnnrepro.train.completed_run).
A run that cannot happen here (VGG16 weights unavailable, the run it continues from not run) is
written and logged as not_run with the reason, and the command exits 0 so the pipeline goes on.
A run whose loss turns non-finite stops at that epoch: written as `diverged` (the epoch in run_info.json),
its MLflow run ended FAILED with the epoch as a tag, one line on stderr, and the command exits 0 too: a
failing job's outputs are deleted by Snakemake, and the report must see the run to count it failed with
its reason (as it sees a not_run one).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cnnrepro.errors import CnnreproError
from cnnrepro.mappings import JsonObject, Params
from cnnrepro.params import load_params
from cnnrepro.variants.registry import list_variants

if TYPE_CHECKING:
    from cnnrepro.run_outputs import RunMetrics
    from cnnrepro.train.engine.backend import Backend, EpochHook
    from cnnrepro.train.engine.lifecycle import RunInfo
    from cnnrepro.train.engine.run_config import Prepared, RunConfig

# Tags of a run that resumed from a checkpoint: the epoch it resumed after, and the MLflow run that wrote it.
TAG_RESUMED_AFTER = "cnnrepro.resumed_after_epoch"
TAG_RESUMED_FROM = "cnnrepro.resumed_from_run"
# Tag of a run stopped because its loss turned non-finite (the run itself ends FAILED): the epoch it did.
TAG_DIVERGED_AT = "cnnrepro.diverged_at_epoch"


class DivergedRun(CnnreproError):
    """The run diverged; its outputs are written. Raised through the MLflow run so that it ends FAILED."""


# A run-time decision of the backend (RunResult.decisions) as two tags: cnnrepro.<name> = its state
# ("on", "fell back", "off"), cnnrepro.<name>.reason = why.
TAG_DECISION = "cnnrepro.{}"


def decision_tags(decisions: dict[str, dict[str, str]]) -> dict[str, str]:
    tags = {}
    for name, decision in decisions.items():
        tags[TAG_DECISION.format(name)] = decision.get("state", "")
        tags[TAG_DECISION.format(name) + ".reason"] = decision.get("reason", "")[:5000]  # MLflow's tag limit
    return tags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--framework", required=True, choices=["torch", "keras"])
    parser.add_argument("--variant", required=True, choices=list_variants())
    parser.add_argument("--seed", required=True, type=int)
    parser.add_argument(
        "--data", required=True, type=Path, help="data/split/book, data/prepared or data/split/keras_example"
    )
    parser.add_argument("--out", required=True, type=Path, help="the run directory, runs/<framework>/<variant>/seed<S>")
    parser.add_argument("--init-from", type=Path, default=None, help="the run fine_tuning continues from")
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"), help="per-epoch checkpoint root")
    parser.add_argument(
        "--ablation",
        default=None,
        help="train under this ablation of params ablations.definitions (out: runs/<f>/<v>/ablation-<name>/seed<S>)",
    )


def main(args: argparse.Namespace) -> int:
    return run(load_params(args.params), args)


def run(params: Params, args: argparse.Namespace, hooks: Sequence[EpochHook] = ()) -> int:
    """Everything after argument parsing; `hooks` are extra per-epoch callbacks (tests use them)."""
    from cnnrepro.train import ablations
    from cnnrepro.train.backends import load_backend
    from cnnrepro.train.configure import configure_run
    from cnnrepro.train.engine import checkpoint as ckpt
    from cnnrepro.train.engine import run_dir
    from cnnrepro.train.engine.preflight import check_run_inputs

    # Before anything is touched: a missing extra fails here (and Keras' backend follows train.device).
    backend = load_backend(args.framework, str(params["train"]["device"]))
    config = configure_run(
        params,
        framework=args.framework,
        variant=args.variant,
        seed=args.seed,
        data_dir=args.data,
        out_dir=args.out,
        init_from=args.init_from,
        ablation=args.ablation,
        backend=backend,
    )
    ablations.check_continues_from(config)
    args.checkpoints = ablations.checkpoint_root(args.checkpoints, args.ablation)
    check_run_inputs(config, args.checkpoints)  # before the MLflow run: a run that cannot start leaves none
    run_dir.check_out_dir(args.out, config)  # a folder that is not this run's is left as it is
    checkpoint = ckpt.checkpoint_path(args.checkpoints, config.framework, config.variant, config.seed)
    # Held until the checkpoint is removed: a second training of this run refuses before its MLflow run opens.
    with run_dir.run_locks(args.out, checkpoint, config.run_name):
        return _run_locked(params, args, config, backend, hooks)


def _run_locked(
    params: Params, args: argparse.Namespace, config: RunConfig, backend: Backend, hooks: Sequence[EpochHook]
) -> int:
    from cnnrepro.train import ablations
    from cnnrepro.train.engine import lifecycle
    from cnnrepro.train.engine.run_config import Prepared, format_config
    from cnnrepro.train.engine.splits import manifest_sha256

    lifecycle.clear_done_marker(args.out)
    t0 = time.perf_counter()
    info = lifecycle.RunInfo(
        framework=config.framework,
        variant=config.variant,
        seed=config.seed,
        status="running",
        device=config.runtime.device,
        started_at=lifecycle.now_iso(),
        git_commit=lifecycle.git_commit(),
        data_manifest_sha256=manifest_sha256(config.data.data_dir, config.data.dataset),
        config=config.as_record(),
        overrides=dict(config.overrides),
    )
    prepared = Prepared()
    try:
        # The pipeline's download timeout, capped: a missing file should not hold a job for minutes.
        prepared = backend.prepare(config, download_timeout_s=min(float(params["download"]["timeout_s"]), 30.0))
        if reason := ablations.not_runnable_reason(config):
            raise lifecycle.NotRunnable(reason)
    except lifecycle.NotRunnable as exc:
        info.status, info.reason = "not_run", str(exc)
    print(f"cnnrepro train {config.run_name}:\n{format_config(config, prepared)}", flush=True)

    try:
        metrics = _tracked(params, config, prepared, info, args, backend, tuple(hooks), t0)
    except DivergedRun as exc:
        print(f"cnnrepro train: {exc}", file=sys.stderr, flush=True)
        return 0
    if info.status == "completed":
        print(
            f"done: val_accuracy {metrics.val_accuracy} test_accuracy {metrics.test_accuracy} "
            f"({info.duration_s:.1f} s) -> {args.out}",
            flush=True,
        )
    else:
        print(f"not run: {info.reason} -> {args.out}", flush=True)
    return 0


def _tracked(
    params: Params,
    config: RunConfig,
    prepared: Prepared,
    info: RunInfo,
    args: argparse.Namespace,
    backend: Backend,
    hooks: tuple[EpochHook, ...],
    t0: float,
) -> RunMetrics:
    """Train (unless not_run) inside one MLflow run and write the outputs; every MLflow call is here."""
    from cnnrepro.tracking.liveness import mark_stale_runs_failed
    from cnnrepro.tracking.run_records import source_tags
    from cnnrepro.tracking.store import tracking_settings
    from cnnrepro.tracking.tracked_run import parent_run_id_from_env, tracked_run
    from cnnrepro.train.completed_run import log_completed_run
    from cnnrepro.train.engine import checkpoint as ckpt
    from cnnrepro.train.engine import lifecycle, run_dir
    from cnnrepro.train.engine.epochs import Diverged
    from cnnrepro.train.engine.run_config import legacy_record

    uri, experiment = tracking_settings(params)
    parent = parent_run_id_from_env()
    tags = {
        "variant": config.variant,
        "seed": str(config.seed),
        "framework": config.framework,
        "device": config.runtime.device,
        "git_commit": info.git_commit or "",
        "data_hash": info.data_manifest_sha256 or "",
        "status": info.status,
        **source_tags(info.git_commit),
    }
    if config.ablation:
        tags["ablation"] = config.ablation.name
    with tracked_run(
        uri, experiment, run_name=config.run_name, tags=tags, parent_run_id=parent, system_metrics=True
    ) as logger:
        info.mlflow = {
            "tracking_uri": uri,
            "experiment_id": logger.experiment_id,
            "run_id": logger.run_id,
            "parent_run_id": parent,
        }
        logger.log_params(legacy_record(config, prepared))
        result = None
        diverged: Diverged | None = None
        if info.status != "not_run":

            def log_epoch(row: dict[str, float]) -> None:
                logger.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))

            def link_resumed(owner: JsonObject, epoch: int) -> None:
                # Name the run that wrote the checkpoint (killed: its process is gone, so it is marked FAILED).
                logger.set_tags({TAG_RESUMED_AFTER: epoch, TAG_RESUMED_FROM: owner.get("mlflow_run_id") or ""})
                mark_stale_runs_failed(uri, experiment)

            try:
                result = backend.train_variant(
                    config,
                    prepared,
                    checkpoint_root=args.checkpoints,
                    hooks=(log_epoch, *hooks),
                    owner={"mlflow_run_id": logger.run_id, "tracking_uri": uri},
                    on_resume=link_resumed,
                )
            except lifecycle.NotRunnable as exc:  # weights that fail only when loaded (torchvision)
                info.reason = str(exc)
            except Diverged as exc:
                diverged = exc
                info.reason, info.diverged_epoch = str(exc), exc.epoch
                log_epoch(exc.history[-1])  # the epoch the hooks did not see: its curves end where it stopped
        info.status = "completed" if result is not None else "diverged" if diverged else "not_run"
        info.finished_at = lifecycle.now_iso()
        info.duration_s = round(time.perf_counter() - t0, 3)
        info.train_duration_s = round(result.train_duration_s, 3) if result is not None else None
        stopped_history = diverged.history if diverged else []
        metrics = lifecycle.write_outputs(args.out, config, prepared, info, result, backend, stopped_history)
        if result is not None:
            # val_* of the last epoch are already in the per-epoch curves; log only what is new.
            final = {k: v for k, v in result.metrics.items() if isinstance(v, int | float) and not k.startswith("val_")}
            logger.log_metrics(final, step=len(result.history))
            log_completed_run(logger, params, config, prepared, info, result, backend, Path(args.out))
        for file in ("history.csv", "metrics.json", "run_info.json"):
            logger.log_artifact(Path(args.out) / file)
        for name in (*run_dir.ARTIFACT_FILES, backend.model_file):  # the run's own, never a file put beside them
            if (Path(args.out) / "artifacts" / name).is_file():
                logger.log_artifact(Path(args.out) / "artifacts" / name, "artifacts")
        logger.set_tags({"status": info.status, **({"reason": info.reason} if info.reason else {})})
        if result is not None and result.decisions:
            logger.set_tags(decision_tags(result.decisions))
        if diverged:
            logger.set_tags({TAG_DIVERGED_AT: diverged.epoch})
            # Raised inside the MLflow run: tracked_run ends it FAILED; `run` prints this one line.
            raise DivergedRun(f"{config.run_name}: {diverged} (written as diverged -> {args.out})")
    if result is not None:
        ckpt.remove_checkpoint(ckpt.checkpoint_path(args.checkpoints, config.framework, config.variant, config.seed))
    return metrics
