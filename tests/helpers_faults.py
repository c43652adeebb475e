"""Helpers for the fault, parallelism and cluster tests: a fake `nvidia-smi`, a project copy with the
Snakemake profiles, reading a dry run's job resources, and watching and killing a process tree that
the test itself started.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import yaml

from .conftest import PROJECT_ROOT
from .pipeline_project import make_mirror, make_project, tiny_params


def fake_gpu_bin(root: Path, n_gpus: int) -> Path:
    """A directory holding an `nvidia-smi` that lists `n_gpus` GPUs (and a MIG slice, which must not count)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = [f"GPU {i}: NVIDIA Test GPU (UUID: GPU-0000000{i}-test)" for i in range(n_gpus)]
    if n_gpus:
        lines.insert(1, "  MIG 1g.10gb     Device  0: (UUID: MIG-00000000-test)")
    script = root / "nvidia-smi"
    body = "".join(f"echo '{line}'\n" for line in lines)
    script.write_text(f'#!/bin/sh\n[ "$1" = "-L" ] || exit 2\n{body}')
    script.chmod(0o755)
    return root


def with_path(directory: Path) -> str:
    return f"{directory}{os.pathsep}{os.environ.get('PATH', '')}"


def copy_profiles(project: Path) -> Path:
    shutil.copytree(PROJECT_ROOT / "profiles", project / "profiles")
    return project


def project_with_profiles(tmp: Path, **train: Any) -> Path:
    """make_project's tiny pipeline copy (profiles/ included), with `train` settings changed."""
    params = tiny_params(make_mirror(tmp))
    params["train"].update(train)
    return make_project(tmp, params)


def set_params(project: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    change(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def dry_run_resources(output: str) -> dict[str, dict[str, str]]:
    """job output path (its metrics.json or first output) -> resources, from `snakemake -n` output."""
    jobs: dict[str, dict[str, str]] = {}
    current: str | None = None
    for line in output.splitlines():
        if m := re.match(r"^\s+output: (.*)$", line):
            outputs = [p.strip() for p in m.group(1).split(",")]
            current = next((p for p in outputs if p.endswith("metrics.json")), outputs[0])
        elif current and (m := re.match(r"^\s+resources: (.*)$", line)):
            jobs[current] = dict(item.strip().split("=", 1) for item in m.group(1).split(", "))
            current = None
    return jobs


def wait_for(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 0.1,
    proc: subprocess.Popen[Any] | None = None,
    log: Path | None = None,
) -> Any:
    """Poll until `predicate()` is true; fail at once if `proc` (the process that should get there) exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
            raise AssertionError(f"exited ({proc.returncode}) before {what}:\n{tail}")
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def descendants(pid: int) -> list[Any]:
    """psutil processes under `pid` (children first)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def find_descendant(pid: int, *words: str) -> int | None:
    """The first process under `pid` whose command line has every word as an argument (or its basename)."""
    for process in descendants(pid):
        try:
            args = process.cmdline()
        except psutil.Error:
            continue
        if all(any(arg == word or arg.endswith("/" + word) for arg in args) for word in words):
            return process.pid
    return None


def kill_tree(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    """Signal a process the test started and everything under it (by pid, leaves first)."""
    for process in reversed(descendants(proc.pid)):
        with contextlib.suppress(psutil.Error):
            process.send_signal(sig)
    if proc.poll() is None:
        proc.send_signal(sig)
