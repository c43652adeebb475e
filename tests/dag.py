"""Read the pipeline's DAG as each orchestrator itself sees it, in one comparable shape.

Snakemake: the jobs of a forced dry run (`snakemake -n -p -F`). DVC: the stages of its index.
A job is (rule/stage name, command without the log redirection, outputs, inputs).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

LOG_REDIRECT = re.compile(r"\s*>\s*\S+\s+2>&1\s*$")


@dataclass(frozen=True)
class Job:
    rule: str
    cmd: str
    outputs: frozenset[str]
    inputs: frozenset[str]


def snakemake_jobs(root: Path, extra_args: tuple[str, ...] = ()) -> list[Job]:
    result = subprocess.run(
        ["snakemake", "-n", "-p", "-F", "--cores", "1", *extra_args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise AssertionError(f"snakemake dry run failed:\n{result.stdout}\n{result.stderr}")
    jobs: list[Job] = []
    current: dict[str, str] | None = None
    for line in (result.stdout + "\n" + result.stderr).splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):$", line):
            current = {"rule": m.group(1)}
        elif current is not None and (m := re.match(r"^\s+(input|output): (.*)$", line)):
            current[m.group(1)] = m.group(2)
        elif current is not None and line.startswith("Shell command: "):
            cmd = LOG_REDIRECT.sub("", line.removeprefix("Shell command: ")).strip()
            jobs.append(
                Job(
                    rule=current["rule"],
                    cmd=cmd,
                    outputs=frozenset(_split(current.get("output", ""))),
                    inputs=frozenset(_split(current.get("input", ""))),
                )
            )
            current = None
    return jobs


# Snakemake-only bookkeeping inputs: the params stamps (cnnrepro.orchestration.tool_state), which stand in for
# the params DVC tracks itself.
SNAKEMAKE_ONLY = ".cnnrepro/"


def _split(paths: str) -> list[str]:
    return [p.strip() for p in paths.split(", ") if p.strip() and not p.strip().startswith(SNAKEMAKE_ONLY)]


def dvc_jobs(root: Path) -> list[Job]:
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    jobs = []
    with Repo(str(root)) as repo:
        for stage in repo.index.stages:
            jobs.append(
                Job(
                    rule=stage.name.split("@")[0],
                    cmd=" ".join(stage.cmd.split()),
                    outputs=frozenset(o.def_path for o in stage.outs),
                    inputs=frozenset(d.def_path for d in stage.deps if not isinstance(d, ParamsDependency)),
                )
            )
    return jobs


def covers(outer: str, inner: str) -> bool:
    """A DVC directory dependency covers every file Snakemake lists beneath it."""
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")
