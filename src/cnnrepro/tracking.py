"""MLflow tracking through explicit run ids, safe with many jobs writing one SQLite store at once.

Every call goes through `MlflowClient` with an explicit run id, never MLflow's global "active run",
so runs in several threads or processes cannot cross.

SQLite under parallel writers fails in three known ways (see the reference failure-modes notes);
each has its guard here:

- the first schema migration racing ("duplicate column name") and `set_experiment` racing: the
  store is opened and the experiment created under a `FileLock` beside the database file
  (`<db>-cnnrepro.lock`), once per process;
- "database is locked": the SQLAlchemy URL carries `?timeout=60` (pysqlite's busy timeout, used while
  the engine inspects and migrates; MLflow 3.17 itself sets `PRAGMA busy_timeout = 20000` per session),
  a new database is switched to WAL journaling so readers never block the writer, and every write is
  retried with backoff if SQLite still answers "locked";
- runs left RUNNING by a killed job: a SIGTERM handler ends the run KILLED, and each run records its
  host and pid (tags `cnnrepro.host`, `cnnrepro.pid`, `cnnrepro.pid_start`) so `mark_stale_runs_failed`
  can close runs whose process died (SIGKILL, power loss).

Artifacts of a SQLite store go to `mlartifacts/` beside the database, fixed when the experiment is
created, so they do not depend on the job's working directory.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from cnnrepro.errors import CnnreproError
from cnnrepro.tracking_uri import check_sqlite_file

PARENT_RUN_ENV = "CNNREPRO_PARENT_RUN_ID"
TAG_PID = "cnnrepro.pid"
TAG_PID_START = "cnnrepro.pid_start"
TAG_HOST = "cnnrepro.host"
TAG_KIND = "cnnrepro.kind"
TAG_STALE = "cnnrepro.stale_reason"
PARENT_TAG = "mlflow.parentRunId"
END_STATUSES = ("FINISHED", "FAILED", "KILLED")

ARTIFACT_DIR_NAME = "mlartifacts"
SQLITE_TIMEOUT_S = 60
LOCK_TIMEOUT_S = 600
RETRY_ATTEMPTS = 10
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 5.0
# Messages SQLite gives when another writer holds the database; anything else is a real error.
_BUSY_MESSAGES = ("database is locked", "database table is locked", "database is busy")

T = TypeVar("T")

# (store uri, experiment) -> experiment id, and the store uris already opened, in this process.
_experiments: dict[tuple[str, str], str] = {}
_opened_stores: set[str] = set()
_open_lock = threading.Lock()


# --- store addressing ---------------------------------------------------------------------------


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite URI; None for other stores and in-memory databases."""
    if not uri.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    if not database or database == ":memory:":
        return None
    return Path(database)


def _absolute_sqlite_uri(uri: str) -> str:
    """A relative sqlite path made absolute (from the working directory, the project root under both
    orchestrators), so later directory changes and the lock file agree on one database."""
    path = _sqlite_path(uri)
    if path is None or path.is_absolute():
        return uri
    from sqlalchemy.engine import make_url

    return make_url(uri).set(database=str(path.resolve())).render_as_string(hide_password=False)


def _engine_uri(uri: str) -> str:
    """The URI handed to MLflow: for sqlite, with a busy timeout unless the user set one."""
    if _sqlite_path(uri) is None:
        return uri
    from sqlalchemy.engine import make_url

    url = make_url(uri)
    if "timeout" in url.query:
        return uri
    return url.update_query_dict({"timeout": str(SQLITE_TIMEOUT_S)}).render_as_string(hide_password=False)


def _artifact_location(uri: str) -> str | None:
    path = _sqlite_path(uri)
    if path is None:
        return None  # a server or another database decides where artifacts go
    return (path.resolve().parent / ARTIFACT_DIR_NAME).as_uri()


def tracking_settings(params: Mapping[str, Any]) -> tuple[str, str]:
    """(tracking_uri, experiment_name) from the resolved params (env overrides already applied by
    `config.load_params`); a relative sqlite path becomes absolute."""
    section = params["tracking"]
    return _absolute_sqlite_uri(str(section["uri"])), str(section["experiment"])


def parent_run_id_from_env() -> str | None:
    """The pipeline's parent run id from CNNREPRO_PARENT_RUN_ID (set by `cnnrepro tracking start`)."""
    value = os.environ.get(PARENT_RUN_ENV, "").strip()
    return value or None


# --- retries and store opening ------------------------------------------------------------------


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(message in text for message in _BUSY_MESSAGES)


def _retry(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call fn, retrying with jittered exponential backoff while SQLite reports the database locked.

    MLflow already waits 20 s per statement; this covers the cases SQLite refuses at once (a reader
    upgrading to writer) and a burst of many jobs finishing together.
    """
    delay = RETRY_FIRST_S
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if attempt == RETRY_ATTEMPTS or not _is_busy(exc):
                raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, RETRY_MAX_S)
    raise AssertionError("unreachable")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _init_sqlite_file(path: Path) -> None:
    """Create a new database in WAL mode (persistent in the file) so readers never block the writer."""
    if path.exists() and path.stat().st_size > 0:
        return
    with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


@contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialize store creation and experiment creation across processes (sqlite only)."""
    path = _sqlite_path(uri)
    if path is None:
        yield
        return
    from filelock import FileLock, Timeout

    # A missing or unwritable directory is an error now, not a lock file to retry for LOCK_TIMEOUT_S.
    problem = check_sqlite_file(path)
    if problem:
        raise CnnreproError(f"tracking store {uri}: {problem}")
    lock_path = path.with_name(path.name + "-cnnrepro.lock")
    try:
        with FileLock(str(lock_path), timeout=LOCK_TIMEOUT_S):
            yield
    except Timeout:
        raise CnnreproError(
            f"{lock_path}: still locked after {LOCK_TIMEOUT_S} s (another job opening the store?)"
        ) from None


def _store_ready(path: Path) -> bool:
    """True once some process finished creating the store: MLflow writes its Default experiment
    (id 0) only after the schema migrations succeeded. Opening such a store writes nothing."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=SQLITE_TIMEOUT_S)) as connection:
            return connection.execute("SELECT 1 FROM experiments WHERE experiment_id = 0").fetchone() is not None
    except sqlite3.Error:
        return False


def _client(uri: str) -> Any:
    """An MlflowClient on `uri`; the first one per process creates the store if needed, under the lock.

    MlflowClient's constructor builds the store (and migrates an empty database), so for a store not
    yet created even the constructor runs under the lock; a ready store is opened without it.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
    from sqlalchemy.exc import SQLAlchemyError

    uri = _absolute_sqlite_uri(uri)
    engine_uri = _engine_uri(uri)
    path = _sqlite_path(uri)
    try:
        with _open_lock:
            if uri not in _opened_stores and path is not None and not _store_ready(path):
                with _store_lock(uri):
                    if not _store_ready(path):
                        _init_sqlite_file(path)
                        _retry(MlflowClient, tracking_uri=engine_uri)
            _opened_stores.add(uri)
            # MLflow caches the store per URI: after the first, a client costs nothing.
            return _retry(MlflowClient, tracking_uri=engine_uri)
    except MlflowException as exc:
        raise CnnreproError(f"tracking store {uri}: {_first_line(exc)}") from exc
    except (OSError, sqlite3.Error, SQLAlchemyError) as exc:  # e.g. a corrupt database file
        raise CnnreproError(f"tracking store {uri}: {_first_line(exc)}") from exc


def ensure_experiment(uri: str, experiment: str) -> str:
    """Create the store and the experiment if needed (once, under the lock); return the experiment id.

    A deleted experiment of that name is restored rather than shadowed. For a sqlite store the
    artifact location is fixed to `mlartifacts/` beside the database.
    """
    from mlflow.exceptions import MlflowException

    uri = _absolute_sqlite_uri(uri)
    key = (uri, experiment)
    if key in _experiments:
        return _experiments[key]
    client = _client(uri)
    with _store_lock(uri):
        try:
            found = _retry(client.get_experiment_by_name, experiment)
            if found is None:
                try:
                    experiment_id = _retry(
                        client.create_experiment, experiment, artifact_location=_artifact_location(uri)
                    )
                except MlflowException:
                    # A tracking server has no file lock: another job may have created it first.
                    found = _retry(client.get_experiment_by_name, experiment)
                    if found is None:
                        raise
                    experiment_id = found.experiment_id
            else:
                experiment_id = found.experiment_id
                if found.lifecycle_stage == "deleted":
                    _retry(client.restore_experiment, experiment_id)
        except MlflowException as exc:
            raise CnnreproError(f"tracking store {uri}: experiment {experiment!r}: {_first_line(exc)}") from exc
    _experiments[key] = str(experiment_id)
    return str(experiment_id)


# --- process identity (for finding runs whose process died) --------------------------------------


def _process_identity(pid: int) -> str | None:
    """Boot id and kernel start time of a process, so a recycled pid is not taken for the original."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (comm) may contain spaces and parentheses; the fields after the last ')' are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    return f"{boot_id}/{fields[19]}"


def _process_alive(pid: int, identity: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return False  # killed, not yet reaped by its parent
    except OSError:
        pass
    current = _process_identity(pid)
    return not (identity and current and current != identity)


def _own_tags() -> dict[str, str]:
    tags = {TAG_PID: str(os.getpid()), TAG_HOST: socket.gethostname()}
    identity = _process_identity(os.getpid())
    if identity:
        tags[TAG_PID_START] = identity
    return tags


# --- runs ---------------------------------------------------------------------------------------


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
            _retry(self._client.log_batch, self.run_id, params=entries)

    def log_metrics(self, metrics: Mapping[str, float | None], step: int) -> None:
        """All metrics of one step in one batch; None values (not measured) are skipped."""
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        entries = [
            Metric(key, float(value), timestamp, int(step)) for key, value in metrics.items() if value is not None
        ]
        if entries:
            _retry(self._client.log_batch, self.run_id, metrics=entries)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        _, limit = _max_lengths()
        entries = [RunTag(key, _stringify(value, limit)) for key, value in tags.items()]
        if entries:
            _retry(self._client.log_batch, self.run_id, tags=entries)

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


def _check_parent(client: Any, uri: str, parent_run_id: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        _retry(client.get_run, parent_run_id)
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
    uri = _absolute_sqlite_uri(uri)
    experiment_id = ensure_experiment(uri, experiment)
    client = _client(uri)
    if parent_run_id:
        _check_parent(client, uri, parent_run_id)
    _, tag_limit = _max_lengths()
    run_tags = {key: _stringify(value, tag_limit) for key, value in tags.items()}
    run_tags.update(_own_tags())
    if parent_run_id:
        run_tags[PARENT_TAG] = parent_run_id
    with _SigtermGuard() as guard:
        run = _retry(client.create_run, experiment_id, run_name=run_name, tags=run_tags)
        run_id = run.info.run_id
        try:
            yield RunLogger(client, run_id, experiment_id)
        except BaseException as exc:
            guard.finishing = True
            try:
                _retry(client.set_terminated, run_id, _status_for(exc))
            except Exception as end_exc:
                # Keep the original error; the run stays RUNNING until mark_stale_runs_failed.
                print(f"cnnrepro: warning: could not end MLflow run {run_id}: {_first_line(end_exc)}", file=sys.stderr)
            raise
        guard.finishing = True
        _retry(client.set_terminated, run_id, "FINISHED")


def start_pipeline_run(uri: str, experiment: str, name: str | None = None) -> str:
    """Open the parent run of one pipeline invocation; return its id.

    It records no pid (the `cnnrepro tracking start` process exits at once), so only
    `mark_stale_runs_failed(..., older_than_s=...)` or `end_pipeline_run` closes it.
    """
    uri = _absolute_sqlite_uri(uri)
    experiment_id = ensure_experiment(uri, experiment)
    client = _client(uri)
    run_name = name or time.strftime("pipeline %Y-%m-%d %H:%M:%S")
    tags = {TAG_KIND: "pipeline", TAG_HOST: socket.gethostname()}
    run = _retry(client.create_run, experiment_id, run_name=run_name, tags=tags)
    return run.info.run_id


def end_pipeline_run(uri: str, run_id: str, status: str = "FINISHED") -> None:
    """Close a run (normally the pipeline's parent) with FINISHED, FAILED or KILLED."""
    from mlflow.exceptions import MlflowException

    if status not in END_STATUSES:
        raise CnnreproError(f"run status {status!r} is not one of {', '.join(END_STATUSES)}")
    uri = _absolute_sqlite_uri(uri)
    client = _client(uri)
    try:
        _retry(client.get_run, run_id)
    except MlflowException:
        raise CnnreproError(f"run {run_id} not found in {uri}") from None
    _retry(client.set_terminated, run_id, status)


def _running_runs(client: Any, experiment_id: str) -> list[Any]:
    runs: list[Any] = []
    page_token = None
    while True:
        page = _retry(
            client.search_runs,
            [experiment_id],
            filter_string="attributes.status = 'RUNNING'",
            max_results=1000,
            page_token=page_token,
        )
        runs.extend(page)
        page_token = page.token
        if not page_token:
            return runs


def _stale_reason(run: Any, host: str, now_ms: int, older_than_s: float | None) -> str | None:
    tags = run.data.tags
    pid = tags.get(TAG_PID)
    if pid and pid.isdigit() and tags.get(TAG_HOST) == host and not _process_alive(int(pid), tags.get(TAG_PID_START)):
        return f"process {pid} on {host} is gone"
    if older_than_s is not None and run.info.start_time is not None:
        age_s = (now_ms - run.info.start_time) / 1000
        if age_s > older_than_s:
            return f"running for {age_s:.0f} s (limit {older_than_s:g} s)"
    return None


def mark_stale_runs_failed(uri: str, experiment: str, *, older_than_s: float | None = None) -> list[str]:
    """Set FAILED every RUNNING run whose process on this host is gone, and, with `older_than_s`,
    every RUNNING run started longer ago than that (any host). Returns their ids; the reason is
    kept in the tag `cnnrepro.stale_reason`."""
    from mlflow.entities import RunTag

    uri = _absolute_sqlite_uri(uri)
    client = _client(uri)
    found = _retry(client.get_experiment_by_name, experiment)
    if found is None:
        return []
    host = socket.gethostname()
    now_ms = int(time.time() * 1000)
    marked: list[str] = []
    for run in _running_runs(client, found.experiment_id):
        reason = _stale_reason(run, host, now_ms, older_than_s)
        if reason is None:
            continue
        _retry(client.log_batch, run.info.run_id, tags=[RunTag(TAG_STALE, reason)])
        _retry(client.set_terminated, run.info.run_id, "FAILED")
        marked.append(run.info.run_id)
    return marked
