"""Which RUNNING runs have no live process behind them: each run records its host and pid (tags
`cnnrepro.host`, `cnnrepro.pid`, `cnnrepro.pid_start`), and `mark_stale_runs_failed` closes the runs
whose process died (SIGKILL, power loss) or that ran longer than a limit."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from cnnrepro.tracking.retries import retry
from cnnrepro.tracking.store import absolute_sqlite_uri, client

TAG_PID = "cnnrepro.pid"
TAG_PID_START = "cnnrepro.pid_start"
TAG_HOST = "cnnrepro.host"
TAG_STALE = "cnnrepro.stale_reason"


def process_identity(pid: int) -> str | None:
    """Boot id and kernel start time of a process, so a recycled pid is not taken for the original."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (comm) may contain spaces and parentheses; the fields after the last ')' are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    return f"{boot_id}/{fields[19]}"


def process_alive(pid: int, identity: str | None) -> bool:
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
    current = process_identity(pid)
    return not (identity and current and current != identity)


def process_tags() -> dict[str, str]:
    """This process's host, pid and start identity, as a run records them."""
    tags = {TAG_PID: str(os.getpid()), TAG_HOST: socket.gethostname()}
    identity = process_identity(os.getpid())
    if identity:
        tags[TAG_PID_START] = identity
    return tags


def _running_runs(store: Any, experiment_id: str) -> list[Any]:
    runs: list[Any] = []
    page_token = None
    while True:
        page = retry(
            store.search_runs,
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
    if pid and pid.isdigit() and tags.get(TAG_HOST) == host and not process_alive(int(pid), tags.get(TAG_PID_START)):
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

    uri = absolute_sqlite_uri(uri)
    store = client(uri)
    found = retry(store.get_experiment_by_name, experiment)
    if found is None:
        return []
    host = socket.gethostname()
    now_ms = int(time.time() * 1000)
    marked: list[str] = []
    for run in _running_runs(store, found.experiment_id):
        reason = _stale_reason(run, host, now_ms, older_than_s)
        if reason is None:
            continue
        retry(store.log_batch, run.info.run_id, tags=[RunTag(TAG_STALE, reason)])
        retry(store.set_terminated, run.info.run_id, "FAILED")
        marked.append(run.info.run_id)
    return marked
