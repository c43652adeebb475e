"""One pipeline at a time per project directory, whichever tool runs it (Snakemake or DVC).

The orchestrator process (Snakemake's `onstart` hook, or the `make dvc-repro` wrapper) takes an
exclusive `flock` on `.cnnrepro/pipeline.lock` and writes who holds it (tool, pid, host, start time,
pipeline id) into the file. A second pipeline fails at once with one line naming that holder. The
kernel drops the lock when the holding process dies, however it dies, so a killed pipeline never
leaves a stale lock: the file may remain, but a file nobody has locked means nothing.

Stage commands (`cnnrepro download`, `train`, ...) call `guard_stage`: while the lock is held, a
command whose `CNNREPRO_PIPELINE_ID` is not the holder's (a plain `dvc repro`, or a stage started by
hand, while Snakemake runs) refuses to run rather than write the same outputs as the running pipeline.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from cnnrepro.errors import CnnreproError

LOCK_PATH = Path(".cnnrepro") / "pipeline.lock"
PIPELINE_ID_ENV = "CNNREPRO_PIPELINE_ID"
# A stage probing the lock holds it shared for microseconds; an orchestrator starting at that
# instant retries for this long before it concludes another pipeline holds the lock.
ACQUIRE_GRACE_S = 0.5


class PipelineLocked(CnnreproError):
    """Another pipeline holds the lock; the message names it."""


@dataclass(frozen=True)
class Holder:
    tool: str
    pid: int
    host: str
    started: str
    pipeline_id: str

    def describe(self) -> str:
        return f"{self.tool} (pid {self.pid} on {self.host}, started {self.started})"


@dataclass
class PipelineLock:
    """A held lock; `release()` (or process death) frees it."""

    path: Path
    holder: Holder
    _fd: int | None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        # Unlocking closes nothing else: flock belongs to this open file description only.
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> PipelineLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_path(root: str | Path = ".") -> Path:
    return Path(root) / LOCK_PATH


def _open(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not inherited by child processes (PEP 446), so only this process's life keeps the lock.
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


def _try_flock(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _read_holder(path: Path) -> Holder | None:
    try:
        data = json.loads(path.read_text())
        return Holder(**{key: data[key] for key in Holder.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):
        return None  # empty or being written at this instant


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def _locked_message(path: Path, holder: Holder | None) -> str:
    who = holder.describe() if holder else "another process (holder not recorded yet)"
    return f"{path}: another pipeline is running in this directory: {who}; wait for it to finish or stop it"


def acquire(tool: str, root: str | Path = ".", pipeline_id: str | None = None) -> PipelineLock:
    """Take the project's pipeline lock for this process, or raise PipelineLocked naming the holder."""
    path = lock_path(root)
    fd = _open(path)
    try:
        deadline = time.monotonic() + ACQUIRE_GRACE_S
        while not _try_flock(fd, fcntl.LOCK_EX):
            if time.monotonic() >= deadline:
                raise PipelineLocked(_locked_message(path, _read_holder(path)))
            time.sleep(0.05)
        holder = Holder(
            tool=tool,
            pid=os.getpid(),
            host=socket.gethostname(),
            started=_now(),
            pipeline_id=pipeline_id or uuid.uuid4().hex,
        )
        # Written in place, not by rename: a new inode would not carry the lock.
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(asdict(holder)) + "\n").encode(), 0)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    return PipelineLock(path, holder, fd)


def current_holder(root: str | Path = ".") -> Holder | None:
    """Who holds the lock now; None when no live process holds it (a leftover file included)."""
    path = lock_path(root)
    if not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        if _try_flock(fd, fcntl.LOCK_SH):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        holder = _read_holder(path)
        if holder is None:
            return Holder(tool="unknown", pid=0, host="?", started="?", pipeline_id="")
        return holder
    finally:
        os.close(fd)


def guard_stage(command: str, root: str | Path = ".") -> None:
    """Refuse to run a pipeline stage while a pipeline it does not belong to holds the lock."""
    holder = current_holder(root)
    if holder is None:
        return
    own = os.environ.get(PIPELINE_ID_ENV, "")
    if own and own == holder.pipeline_id:
        return
    raise PipelineLocked(
        f"{lock_path(root)}: pipeline {holder.describe()} is running in this directory and "
        f"`cnnrepro {command}` is not one of its jobs; wait for it to finish or stop it"
    )
