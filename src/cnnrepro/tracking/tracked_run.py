"""One tracked run: opened by explicit run id (never MLflow's global active run, so runs in several threads
or processes cannot cross), written through `RunLogger`, and ended FINISHED / FAILED / KILLED; a
SIGTERM handler ends it KILLED."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cnnrepro.errors import CnnreproError
from cnnrepro.tracking.liveness import process_tags
from cnnrepro.tracking.retries import first_line, retry
from cnnrepro.tracking.store import absolute_sqlite_uri, client, ensure_experiment

PARENT_RUN_ENV = "CNNREPRO_PARENT_RUN_ID"
PARENT_TAG = "mlflow.parentRunId"


def parent_run_id_from_env() -> str | None:
    """The pipeline's parent run id from CNNREPRO_PARENT_RUN_ID (set by `cnnrepro tracking start`)."""
    value = os.environ.get(PARENT_RUN_ENV, "").strip()
    return value or None


def _max_lengths() -> tuple[int, int]:
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH

    return MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to one level with dotted keys: {"a": {"b": 1}} -> {"a.b": 1}."""
    flat: dict[str, Any] = {}
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


class RunLogger:
    """Writes to one run by id. Every write retries while SQLite reports the database locked."""

    def __init__(self, client: Any, run_id: str, experiment_id: str) -> None:
        self._client = client
        self.run_id = run_id
        self.experiment_id = experiment_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Nested dicts flattened with dots; values stringified and cut to MLflow's length limit."""
        from mlflow.entities import Param

        limit, _ = _max_lengths()
        entries = [Param(key, _stringify(value, limit)) for key, value in flatten(params).items()]
        if entries:
            retry(self._client.log_batch, self.run_id, params=entries)

    def log_metrics(self, metrics: Mapping[str, float | None], step: int) -> None:
        """All metrics of one step in one batch; None values (not measured) are skipped."""
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        entries = [
            Metric(key, float(value), timestamp, int(step)) for key, value in metrics.items() if value is not None
        ]
        if entries:
            retry(self._client.log_batch, self.run_id, metrics=entries)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        _, limit = _max_lengths()
        entries = [RunTag(key, _stringify(value, limit)) for key, value in tags.items()]
        if entries:
            retry(self._client.log_batch, self.run_id, tags=entries)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """A file, or a directory's contents, under `artifact_path` in the run's artifacts."""
        path = Path(path)
        if path.is_dir():
            self._client.log_artifacts(self.run_id, str(path), artifact_path)
        elif path.is_file():
            self._client.log_artifact(self.run_id, str(path), artifact_path)
        else:
            raise CnnreproError(f"{path}: artifact to log does not exist")

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        """obj as JSON (or YAML for a .yaml/.yml name) at `artifact_file` in the run's artifacts."""
        self._client.log_dict(self.run_id, obj, artifact_file)


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


@contextmanager
def tracked_run(
    uri: str,
    experiment: str,
    *,
    run_name: str,
    tags: dict[str, str],
    parent_run_id: str | None = None,
) -> Iterator[RunLogger]:
    """Open a run, yield its logger, end it FINISHED / FAILED (exception) / KILLED (Ctrl-C or SIGTERM).

    The exception is always re-raised. The parent link is MLflow's `mlflow.parentRunId` tag; pass
    `parent_run_id_from_env()` to hang the run under the pipeline's parent run.
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
    with _SigtermGuard() as guard:
        run = retry(store.create_run, experiment_id, run_name=run_name, tags=run_tags)
        run_id = run.info.run_id
        try:
            yield RunLogger(store, run_id, experiment_id)
        except BaseException as exc:
            guard.finishing = True
            try:
                retry(store.set_terminated, run_id, _status_for(exc))
            except Exception as end_exc:
                # Keep the original error; the run stays RUNNING until mark_stale_runs_failed.
                print(f"cnnrepro: warning: could not end MLflow run {run_id}: {first_line(end_exc)}", file=sys.stderr)
            raise
        guard.finishing = True
        retry(store.set_terminated, run_id, "FINISHED")
