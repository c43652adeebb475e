"""The MLflow store: where it is (sqlite paths made absolute, busy timeout, artifact folder), opening it
once per process under a file lock, and creating the experiment.

SQLite under parallel writers fails in known ways (see the reference failure-modes notes): the first
schema migration racing ("duplicate column name") and `set_experiment` racing are serialized by a
`FileLock` beside the database file (`<db>-cnnrepro.lock`); "database is locked" is met by the URL's
`?timeout=60`, WAL journaling for a new database, and `retries.retry` on every write.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cnnrepro.errors import CnnreproError
from cnnrepro.tracking.retries import first_line, retry
from cnnrepro.tracking.uri import check_sqlite_file

# The MLflow UI opens an experiment tagged so in its "Model training" view, not GenAI (see cnnrepro.tracking.ui).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"

ARTIFACT_DIR_NAME = "mlartifacts"
SQLITE_TIMEOUT_S = 60
LOCK_TIMEOUT_S = 600

# (store uri, experiment) -> experiment id, and the store uris already opened, in this process.
_experiments: dict[tuple[str, str], str] = {}
_opened_stores: set[str] = set()
_open_lock = threading.Lock()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite URI; None for other stores and in-memory databases."""
    if not uri.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    if not database or database == ":memory:":
        return None
    return Path(database)


def absolute_sqlite_uri(uri: str) -> str:
    """A relative sqlite path made absolute (from the working directory, the project root under both
    orchestrators), so later directory changes and the lock file agree on one database."""
    path = sqlite_path(uri)
    if path is None or path.is_absolute():
        return uri
    from sqlalchemy.engine import make_url

    return make_url(uri).set(database=str(path.resolve())).render_as_string(hide_password=False)


def engine_uri(uri: str) -> str:
    """The URI handed to MLflow: for sqlite, with a busy timeout unless the user set one."""
    if sqlite_path(uri) is None:
        return uri
    from sqlalchemy.engine import make_url

    url = make_url(uri)
    if "timeout" in url.query:
        return uri
    return url.update_query_dict({"timeout": str(SQLITE_TIMEOUT_S)}).render_as_string(hide_password=False)


def _artifact_location(uri: str) -> str | None:
    path = sqlite_path(uri)
    if path is None:
        return None  # a server or another database decides where artifacts go
    return (path.resolve().parent / ARTIFACT_DIR_NAME).as_uri()


def tracking_settings(params: Mapping[str, Any]) -> tuple[str, str]:
    """(tracking_uri, experiment_name) from the resolved params (env overrides already applied by
    `config.load_params`); a relative sqlite path becomes absolute."""
    section = params["tracking"]
    return absolute_sqlite_uri(str(section["uri"])), str(section["experiment"])


def _init_sqlite_file(path: Path) -> None:
    """Create a new database in WAL mode (persistent in the file) so readers never block the writer."""
    if path.exists() and path.stat().st_size > 0:
        return
    with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


@contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialize store creation and experiment creation across processes (sqlite only)."""
    path = sqlite_path(uri)
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


def client(uri: str) -> Any:
    """An MlflowClient on `uri`; the first one per process creates the store if needed, under the lock.

    MlflowClient's constructor builds the store (and migrates an empty database), so for a store not
    yet created even the constructor runs under the lock; a ready store is opened without it.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
    from sqlalchemy.exc import SQLAlchemyError

    uri = absolute_sqlite_uri(uri)
    engine = engine_uri(uri)
    path = sqlite_path(uri)
    try:
        with _open_lock:
            if uri not in _opened_stores and path is not None and not _store_ready(path):
                with _store_lock(uri):
                    if not _store_ready(path):
                        _init_sqlite_file(path)
                        retry(MlflowClient, tracking_uri=engine)
            _opened_stores.add(uri)
            # MLflow caches the store per URI: after the first, a client costs nothing.
            return retry(MlflowClient, tracking_uri=engine)
    except MlflowException as exc:
        raise CnnreproError(f"tracking store {uri}: {first_line(exc)}") from exc
    except (OSError, sqlite3.Error, SQLAlchemyError) as exc:  # e.g. a corrupt database file
        raise CnnreproError(f"tracking store {uri}: {first_line(exc)}") from exc


def ensure_experiment(uri: str, experiment: str) -> str:
    """Create the store and the experiment if needed (once, under the lock); return the experiment id.

    A deleted experiment of that name is restored rather than shadowed. For a sqlite store the
    artifact location is fixed to `mlartifacts/` beside the database.
    """
    from mlflow.exceptions import MlflowException

    uri = absolute_sqlite_uri(uri)
    key = (uri, experiment)
    if key in _experiments:
        return _experiments[key]
    store = client(uri)
    with _store_lock(uri):
        try:
            found = retry(store.get_experiment_by_name, experiment)
            if found is None:
                try:
                    experiment_id = retry(
                        store.create_experiment, experiment, artifact_location=_artifact_location(uri)
                    )
                except MlflowException:
                    # A tracking server has no file lock: another job may have created it first.
                    found = retry(store.get_experiment_by_name, experiment)
                    if found is None:
                        raise
                    experiment_id = found.experiment_id
            else:
                experiment_id = found.experiment_id
                if found.lifecycle_stage == "deleted":
                    retry(store.restore_experiment, experiment_id)
            if found is None or found.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
                retry(store.set_experiment_tag, experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        except MlflowException as exc:
            raise CnnreproError(f"tracking store {uri}: experiment {experiment!r}: {first_line(exc)}") from exc
    _experiments[key] = str(experiment_id)
    return str(experiment_id)
