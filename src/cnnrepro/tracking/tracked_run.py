"""One tracked run: opened by explicit run id (never MLflow's global active run, so runs in several threads
or processes cannot cross), written through `RunLogger`, and ended FINISHED / FAILED / KILLED; a
SIGTERM handler ends it KILLED."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cnnrepro.errors import CnnreproError
from cnnrepro.mappings import JsonObject
from cnnrepro.tracking.dvc_experiment import DVC_EXP_TAG, dvc_experiment_from_env, name_after_experiment
from cnnrepro.tracking.liveness import process_tags
from cnnrepro.tracking.retries import first_line, retry
from cnnrepro.tracking.store import absolute_sqlite_uri, client, engine_uri, ensure_experiment

PARENT_RUN_ENV = "CNNREPRO_PARENT_RUN_ID"
PARENT_TAG = "mlflow.parentRunId"


def parent_run_id_from_env() -> str | None:
    """The pipeline's parent run id from CNNREPRO_PARENT_RUN_ID (set by `cnnrepro tracking start`)."""
    value = os.environ.get(PARENT_RUN_ENV, "").strip()
    return value or None


def _max_lengths() -> tuple[int, int]:
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH

    return MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH


def flatten(obj: Mapping[str, Any], prefix: str = "") -> JsonObject:
    """Nested mappings to one level with dotted keys: {"a": {"b": 1}} -> {"a.b": 1}."""
    flat: JsonObject = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def _stringify(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else str(value)
    return text[:limit]


def param_value(value: Any, limit: int) -> str | None:
    """A param as MLflow stores it (text): None for a value not set (logged as absent, never "None");
    numbers and booleans as Python writes them ("0.001", "32", "True"), so the UI compares them as
    numbers; lists and mappings as JSON."""
    if value is None:
        return None
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, sort_keys=True, default=str)[:limit]
    return _stringify(value, limit)


def param_values(params: Mapping[str, Any]) -> dict[str, str]:
    """Nested params as MLflow stores them: dotted keys, text cut to MLflow's limit, None left out."""
    limit, _ = _max_lengths()
    values = {key: param_value(value, limit) for key, value in flatten(params).items()}
    return {key: value for key, value in values.items() if value is not None}


class RunLogger:
    """Writes to one run by id. Every write retries while SQLite reports the database locked."""

    def __init__(self, client: Any, run_id: str, experiment_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Nested dicts flattened with dots; None values left out (see `param_value`), cut to MLflow's limit."""
        from mlflow.entities import Param

        entries = [Param(key, value) for key, value in param_values(params).items()]
        if entries:
            retry(self.client.log_batch, self.run_id, params=entries)

    def log_metrics(self, metrics: Mapping[str, float | None], step: int) -> None:
        """All metrics of one step in one batch; None values (not measured) are skipped."""
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        entries = [
            Metric(key, float(value), timestamp, int(step)) for key, value in metrics.items() if value is not None
        ]
        if entries:
            retry(self.client.log_batch, self.run_id, metrics=entries)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        _, limit = _max_lengths()
        entries = [RunTag(key, _stringify(value, limit)) for key, value in tags.items()]
        if entries:
            retry(self.client.log_batch, self.run_id, tags=entries)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """A file, or a directory's contents, under `artifact_path` in the run's artifacts."""
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        elif path.is_file():
            self.client.log_artifact(self.run_id, str(path), artifact_path)
        else:
            raise CnnreproError(f"{path}: artifact to log does not exist")

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        """obj as JSON (or YAML for a .yaml/.yml name) at `artifact_file` in the run's artifacts."""
        self.client.log_dict(self.run_id, obj, artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """A matplotlib figure as an image (the name's suffix: .png) in the run's artifacts."""
        self.client.log_figure(self.run_id, figure, artifact_file)

    def log_inputs(self, datasets: Sequence[Any]) -> None:
        """MLflow DatasetInputs (mlflow.entities) of this run: what it trained, validated and tested on."""
        if datasets:
            retry(self.client.log_inputs, self.run_id, datasets=list(datasets))


class RunTerminated(SystemExit):
    """Raised in the main thread by the SIGTERM handler; exits 143 (128 + SIGTERM) if nothing catches it."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


class _SigtermGuard:
    """While active, SIGTERM raises RunTerminated once, so the stack unwinds (closing any open database
    transaction) and the run is ended KILLED; a SIGTERM during the final write is held and re-sent after."""

    def __init__(self) -> None:
        self.active = threading.current_thread() is threading.main_thread()
        self.fired = False
        self.finishing = False
        self.pending = False
        self.previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.finishing or self.fired:
            self.pending = not self.fired
            return
        self.fired = True
        raise RunTerminated()

    def __enter__(self) -> _SigtermGuard:
        if self.active:
            self.previous = signal.signal(signal.SIGTERM, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.active:
            return
        signal.signal(signal.SIGTERM, self.previous if self.previous is not None else signal.SIG_DFL)
        if self.pending:
            os.kill(os.getpid(), signal.SIGTERM)


def _status_for(exc: BaseException) -> str:
    if isinstance(exc, RunTerminated | KeyboardInterrupt):
        return "KILLED"
    if isinstance(exc, SystemExit) and exc.code in (0, None):
        return "FINISHED"
    return "FAILED"


def _check_parent(store: Any, uri: str, parent_run_id: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        retry(store.get_run, parent_run_id)
    except MlflowException:
        raise CnnreproError(
            f"parent run {parent_run_id} not found in {uri} (check {PARENT_RUN_ENV} / `cnnrepro tracking start`)"
        ) from None


def start_system_metrics(uri: str, run_id: str) -> Any:
    """MLflow's system metrics monitor on this run (a daemon thread sampling every
    MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL s, 10 by default); None where it cannot start (no psutil)."""
    # Its INFO lines (started, stopping, no GPU) would be four more lines on every training's stderr, where a
    # failure is one line; its warnings still show.
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run_id, tracking_uri=engine_uri(uri))
    except Exception as exc:  # system metrics are a convenience: the run goes on without them
        print(f"cnnrepro: warning: no MLflow system metrics: {first_line(exc)}", file=sys.stderr)
        return None
    monitor.start()
    return monitor


def stop_system_metrics(monitor: Any) -> None:
    """Stop sampling (at once: the thread waits on an event) and write what is still buffered, including
    the samples of a run shorter than one logging interval (MLflow would drop them)."""
    if monitor is None:
        return
    monitor.finish()
    try:
        if leftover := monitor.aggregate_metrics():
            monitor.publish_metrics(leftover)
            monitor.mlflow_logger.flush()
    except Exception as exc:  # system metrics are a convenience: never fail the run for them
        print(f"cnnrepro: warning: last MLflow system metrics not written: {first_line(exc)}", file=sys.stderr)


@contextmanager
def tracked_run(
    uri: str,
    experiment: str,
    *,
    run_name: str,
    tags: dict[str, str],
    parent_run_id: str | None = None,
    system_metrics: bool = False,
) -> Iterator[RunLogger]:
    """Open a run, yield its logger, end it FINISHED / FAILED (exception) / KILLED (Ctrl-C or SIGTERM).

    The exception is always re-raised. The parent link is MLflow's `mlflow.parentRunId` tag; pass
    `parent_run_id_from_env()` to hang the run under the pipeline's parent run. Under `dvc exp run` the
    run is tagged `dvc.exp_name` and the parent named after the experiment. `system_metrics`: MLflow's
    system metrics (CPU, memory, disk, network, GPU) sampled while the run is open.
    """
    uri = absolute_sqlite_uri(uri)
    experiment_id = ensure_experiment(uri, experiment)
    store = client(uri)
    if parent_run_id:
        _check_parent(store, uri, parent_run_id)
    _, tag_limit = _max_lengths()
    run_tags = {key: _stringify(value, tag_limit) for key, value in tags.items()}
    run_tags.update(process_tags())
    if parent_run_id:
        run_tags[PARENT_TAG] = parent_run_id
    dvc_experiment = dvc_experiment_from_env()
    if dvc_experiment:
        run_tags[DVC_EXP_TAG] = _stringify(dvc_experiment, tag_limit)
        if parent_run_id:
            name_after_experiment(uri, parent_run_id, dvc_experiment)
    with _SigtermGuard() as guard:
        run = retry(store.create_run, experiment_id, run_name=run_name, tags=run_tags)
        run_id = run.info.run_id
        monitor = start_system_metrics(uri, run_id) if system_metrics else None
        try:
            yield RunLogger(store, run_id, experiment_id)
        except BaseException as exc:
            guard.finishing = True
            stop_system_metrics(monitor)
            try:
                retry(store.set_terminated, run_id, _status_for(exc))
            except Exception as end_exc:
                # Keep the original error; the run stays RUNNING until mark_stale_runs_failed.
                print(f"cnnrepro: warning: could not end MLflow run {run_id}: {first_line(end_exc)}", file=sys.stderr)
            raise
        guard.finishing = True
        stop_system_metrics(monitor)
        retry(store.set_terminated, run_id, "FINISHED")
