"""Is the MLflow tracking URI usable? Checked when params load and when the Snakefile is parsed.

An unusable store must stop the pipeline in one line within seconds, before any job or MLflow run
starts, and never be created as a side effect (no `mkdir -p /nonexistent/dir`). Checked here:
the scheme is one MLflow can open; for a SQLite file, its directory exists and a file can be created
in it (a real probe: `/proc` passes `os.access` as root and still refuses every new file), the
database, if present, is a regular file that can be read and written, and SQLite can read its
header (a corrupt or foreign file is named, not handed to SQLAlchemy). A server URI is not contacted
here; the first call to it reports its own failure.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from cnnrepro.errors import ParamsError
from cnnrepro.fsutil import cannot_create_files

# MLflow's tracking stores (SQLAlchemy dialects take a `+driver` suffix, e.g. postgresql+psycopg2).
KNOWN_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")


def sqlite_database(uri: str) -> Path | None:
    """The database path of a `sqlite:///path` URI (relative to the working directory), None for memory."""
    rest = uri.split("?", 1)[0].removeprefix("sqlite:")
    if rest in ("", "//", "///:memory:"):
        return None
    if not rest.startswith("///"):
        raise ValueError("expected sqlite:///relative/path.db or sqlite:////absolute/path.db")
    return Path(rest[3:])


def check_sqlite_file(path: Path) -> str:
    """'' when `path` can hold (or holds) a SQLite store, else what is wrong, naming the path."""
    directory = path.parent
    if not directory.exists():
        return f"directory {directory} does not exist (create it, or point the URI elsewhere)"
    if not directory.is_dir():
        return f"{directory} is not a directory"
    if not path.exists():
        reason = cannot_create_files(directory)
        return f"cannot create files in {directory} ({reason})" if reason else ""
    if not path.is_file():
        return f"{path} is not a regular file"
    if not os.access(path, os.R_OK | os.W_OK):
        return f"{path} is not readable and writable"
    if path.stat().st_size == 0:
        return ""  # an empty file becomes a new store
    # Read through SQLite, never with open(): closing any other descriptor of the database file drops
    # every POSIX lock this process's SQLite connections hold on it (fcntl semantics), which lets another
    # process checkpoint the WAL under them. SQLite itself shares one descriptor per file within a process.
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)) as db:
            db.execute("PRAGMA schema_version").fetchone()
    except sqlite3.OperationalError:
        pass  # busy or locked: a store in use, not a broken one
    except sqlite3.DatabaseError as exc:
        return f"{path} is not an SQLite database ({exc}: corrupt, or another kind of file)"
    # SQLite writes its journal (or WAL) beside the database: the directory must take new files too.
    reason = cannot_create_files(directory)
    return f"cannot create files in {directory} ({reason})" if reason else ""


def check_tracking_uri(uri: str, source: str) -> None:
    """Raise ParamsError (one line: `source`, the URI, the cause) unless `uri` names a usable store."""
    scheme = uri.split(":", 1)[0] if ":" in uri else ""
    if scheme.split("+", 1)[0].lower() not in KNOWN_SCHEMES:
        known = ", ".join(f"{s}:" for s in KNOWN_SCHEMES)
        raise ParamsError(f"{source}: {uri}: unknown tracking URI scheme {scheme or '(none)'!r} (known: {known})")
    if scheme != "sqlite":
        return
    try:
        path = sqlite_database(uri)
    except ValueError as exc:
        raise ParamsError(f"{source}: {uri}: {exc}") from None
    problem = check_sqlite_file(path) if path is not None else ""
    if problem:
        raise ParamsError(f"{source}: {uri}: {problem}")
