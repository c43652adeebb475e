"""One pipeline invocation: the directory lock, the MLflow store and parent run, the jobs' environment.

Before any job starts (`begin`):
  1. take `.cnnrepro/pipeline.lock` (`pipeline_lock`): a second pipeline here fails at once;
  2. check params.yaml as the stages will read it (env overrides included; the mirror too while
     raw data is still to be downloaded), so a mistake stops everything in one line;
  3. create the MLflow store and experiment once, so parallel jobs never race to create them, and
     mark FAILED the RUNNING runs whose process died (a job killed by SIGKILL or OOM);
  4. open the parent run, unless CNNREPRO_PARENT_RUN_ID is already set (then it is the user's: it is
     used and never closed here), and export it and the pipeline id to every job.
After the jobs (`finish`): close the parent run FINISHED / FAILED / KILLED, mark the runs of jobs killed
outright FAILED, release the lock.

Snakemake calls these from its onstart / onsuccess / onerror hooks (the Snakefile); jobs inherit
os.environ of the Snakemake process. DVC has no hooks, so `make dvc-repro` wraps it:

    python -m cnnrepro.orchestration.pipeline_run -- dvc repro [ARGS]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnrepro.errors import CnnreproError
from cnnrepro.mappings import Params
from cnnrepro.orchestration import pipeline_lock
from cnnrepro.params import DEFAULT_PARAMS, load_params, mirror_dir
from cnnrepro.tracking.liveness import mark_stale_runs_failed, process_tags
from cnnrepro.tracking.pipeline import end_pipeline_run, start_pipeline_run
from cnnrepro.tracking.retries import retry
from cnnrepro.tracking.store import client, ensure_experiment, tracking_settings
from cnnrepro.tracking.tracked_run import PARENT_RUN_ENV, RunLogger, parent_run_id_from_env

RAW_DATA = ("data/raw/petimages", "data/raw/mnist", "data/raw/fashion_mnist")


@dataclass
class Session:
    lock: pipeline_lock.PipelineLock
    uri: str
    experiment: str
    parent_run_id: str
    owns_parent: bool
    saved_env: dict[str, str | None] = field(default_factory=dict)
    finished: bool = False


_current: Session | None = None


def _note(message: str) -> None:
    print(f"cnnrepro pipeline: {message}", file=sys.stderr, flush=True)


def preflight(params: Params) -> None:
    """What the stages would reject later, rejected now: the mirror, while raw data is missing."""
    if any(not Path(path).exists() for path in RAW_DATA):
        mirror_dir(params)


def _tag_as_ours(uri: str, run_id: str) -> None:
    """Record this (long-lived) process on the parent run, so a later `mark_stale_runs_failed` can
    close it if this process dies without ending it (SIGKILL, power loss)."""
    RunLogger(client(uri), run_id, "").set_tags(process_tags())


def _check_run_exists(uri: str, run_id: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        retry(client(uri).get_run, run_id)
    except MlflowException:
        raise CnnreproError(
            f"{PARENT_RUN_ENV}={run_id}: no such run in {uri} (unset it, or use `cnnrepro tracking start`)"
        ) from None


def _export(session: Session, name: str, value: str) -> None:
    session.saved_env.setdefault(name, os.environ.get(name))
    os.environ[name] = value


@contextlib.contextmanager
def _sigterm_raises(what: str) -> Iterator[None]:
    """While `what` runs, SIGTERM raises CnnreproError at once: a hook waiting on a store (a lock, a
    server retried with backoff) ends on SIGTERM like the jobs do, instead of only on SIGINT."""

    def raise_terminated(signum: int, frame: Any) -> None:
        raise CnnreproError(f"terminated (SIGTERM) while {what}")

    try:
        previous = signal.signal(signal.SIGTERM, raise_terminated)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def begin(tool: str, params_path: str | Path = DEFAULT_PARAMS, run_name: str | None = None) -> Session:
    """Start a pipeline invocation in this process (see the module docstring); raises CnnreproError in one line."""
    global _current
    if _current is not None and not _current.finished:
        return _current
    with _sigterm_raises("starting the pipeline (MLflow store, parent run)"):
        return _begin(tool, params_path, run_name)


def run_hook(tool: str, stage: str, status: str = "") -> None:
    """A Snakemake hook: `begin` (stage "start") or `finish(status)`; a CnnreproError ends the process with
    its one line (exit 1) instead of Snakemake's traceback of the Snakefile."""
    try:
        if stage == "start":
            begin(tool)
        else:
            with _sigterm_raises(f"closing the pipeline's parent run ({status})"):
                finish(status)
    except CnnreproError as exc:
        _note(f"error: {exc}")
        sys.exit(1)


def _begin(tool: str, params_path: str | Path, run_name: str | None) -> Session:
    global _current
    lock = pipeline_lock.acquire(tool)
    try:
        params = load_params(params_path)
        preflight(params)
        uri, experiment = tracking_settings(params)
        ensure_experiment(uri, experiment)
        for run_id in mark_stale_runs_failed(uri, experiment):
            _note(f"marked run {run_id} FAILED (its process is gone)")
        parent = parent_run_id_from_env()
        owns_parent = parent is None
        if parent is None:
            name = run_name or f"{tool} pipeline {time.strftime('%Y-%m-%d %H:%M:%S')}"
            parent = start_pipeline_run(uri, experiment, name=name)
            _tag_as_ours(uri, parent)
        else:
            _check_run_exists(uri, parent)
    except BaseException:
        lock.release()
        raise
    session = Session(lock, uri, experiment, parent, owns_parent)
    _export(session, PARENT_RUN_ENV, parent)
    _export(session, pipeline_lock.PIPELINE_ID_ENV, lock.holder.pipeline_id)
    _current = session
    # Ctrl-C stops Snakemake without calling onsuccess/onerror: close the parent run on the way out.
    atexit.register(_finish_at_exit, session)
    _note(f"{tool} pipeline {lock.holder.pipeline_id}: parent run {parent}{'' if owns_parent else ' (given)'}")
    return session


def finish(status: str, session: Session | None = None) -> None:
    """End the invocation: close the parent run (if this process opened it) with `status`, release the lock."""
    session = session or _current
    if session is None or session.finished:
        return
    session.finished = True
    try:
        if session.owns_parent:
            end_pipeline_run(session.uri, session.parent_run_id, status)
        # Jobs killed outright (SIGKILL, OOM) left their runs RUNNING.
        for run_id in mark_stale_runs_failed(session.uri, session.experiment):
            _note(f"marked run {run_id} FAILED (its process is gone)")
    finally:
        session.lock.release()
        for name, value in session.saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _finish_at_exit(session: Session) -> None:
    if not session.finished:
        try:
            finish("KILLED", session)
        except Exception as exc:  # the interpreter is exiting: report, never raise
            _note(f"could not close parent run {session.parent_run_id}: {exc}")


# --- `python -m cnnrepro.orchestration.pipeline_run -- dvc repro ...` --------------------------------------------


def run_wrapped(command: list[str], tool: str, params_path: str | Path = DEFAULT_PARAMS) -> int:
    """Run `command` (e.g. `dvc repro`) as one pipeline invocation; return its exit status."""
    session = begin(tool, params_path)
    terminated = False

    def forward_sigterm(signum: int, frame: Any) -> None:
        nonlocal terminated
        terminated = True
        child.send_signal(signum)

    # Ctrl-C reaches the child from the terminal (same process group); the wrapper waits for it to stop.
    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        child = subprocess.Popen(command)
        previous_term = signal.signal(signal.SIGTERM, forward_sigterm)
        try:
            code = child.wait()
        finally:
            signal.signal(signal.SIGTERM, previous_term)
    except OSError as exc:
        finish("FAILED", session)
        raise CnnreproError(f"{command[0]}: cannot run ({exc.strerror})") from None
    finally:
        signal.signal(signal.SIGINT, previous_int)
    interrupted = terminated or code < 0 or code in (130, 128 + signal.SIGTERM)
    finish("FINISHED" if code == 0 else "KILLED" if interrupted else "FAILED", session)
    return code if code >= 0 else 128 - code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cnnrepro.orchestration.pipeline_run",
        description="Run a pipeline command (e.g. `dvc repro`) holding the project's pipeline lock, "
        "under one MLflow parent run.",
    )
    parser.add_argument("--tool", default=None, help="name recorded in the lock (default: the command's name)")
    parser.add_argument("--params", default=str(DEFAULT_PARAMS), help="the pipeline's params file")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (usage: python -m cnnrepro.orchestration.pipeline_run -- dvc repro)")
    try:
        return run_wrapped(command, args.tool or Path(command[0]).name, args.params)
    except CnnreproError as exc:
        print(f"cnnrepro pipeline: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
