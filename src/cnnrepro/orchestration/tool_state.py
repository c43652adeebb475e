"""One state for both orchestrators: what DVC made, Snakemake sees as made, and the reverse.

Each tool keeps its own record of what it made: DVC its dvc.lock (hashes and params of every stage), Snakemake
its .snakemake/metadata (params, code, input set of every output it wrote). Neither reads the other's, so:

- **DVC made it, then a param changed**: Snakemake has no metadata for the outputs, so its params trigger
  cannot fire and mtimes alone say "Nothing to be done". Every rule therefore takes a *params stamp* as an
  input: .cnnrepro/params/<stage>.json, the values of the params its stage tracks (cnnrepro.orchestration.
  stages), rewritten while the Snakefile is parsed when they change. A stamp is dated *now* when dvc.lock
  records other values for that stage (the outputs are older than the params: the job reruns), and in the
  past when dvc.lock agrees or has no entry (nothing the params made is stale; Snakemake's own params
  trigger covers what Snakemake made).
- **Snakemake made it**: DVC has no hashes of the outputs, so `dvc status` wants every stage rerun. After a
  successful run the Snakefile's onsuccess records the stages whose outputs Snakemake wrote with
  `dvc commit --force` (hashes, params and the cache, as `dvc repro` would have left them), and those it
  found up to date where DVC sees only changed deps (`record_in_dvc`).

Snakemake's marker files in directory() outputs (.snakemake_timestamp) are in .dvcignore, so nothing
Snakemake writes counts as part of a DVC output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from cnnrepro.fsutil import write_text_atomic
from cnnrepro.mappings import Params

STAMP_DIR = Path(".cnnrepro") / "params"
DVC_LOCK = Path("dvc.lock")
PARAMS_FILE = "params.yaml"
# A stamp whose params DVC's outputs were made with is dated here (1970-01-02): older than any output.
PAST = 86_400


def _canonical(values: Any) -> str:
    return json.dumps(values, sort_keys=True, indent=1, default=str) + "\n"


def locked_params(stage: str, lock: str | Path = DVC_LOCK) -> list[Params]:
    """The params.yaml values dvc.lock records for `stage`: the entry of that name, or of every instance of
    the family (`train_idx` covers `train_idx@torch-mnist_dense-0`, ...). [] when there is no lock."""
    path = Path(lock)
    if not path.is_file():
        return []
    try:
        stages = (yaml.safe_load(path.read_text()) or {}).get("stages") or {}
    except yaml.YAMLError:
        return []  # a lock DVC itself cannot read says nothing about what DVC made
    return [
        (entry.get("params") or {}).get(PARAMS_FILE, {})
        for name, entry in stages.items()
        if isinstance(entry, dict) and (name == stage or ("@" not in stage and name.split("@", 1)[0] == stage))
    ]


def write_params_stamp(
    stage: str, values: Mapping[str, Any], root: str | Path = ".", lock: str | Path | None = None
) -> str:
    """Write .cnnrepro/params/<stage>.json when `values` differ from what it holds (see the module docstring
    for its date); returns its path relative to `root`, as a rule's input."""
    relative = STAMP_DIR / f"{stage}.json"
    path = Path(root) / relative
    text = _canonical(dict(values))
    if path.is_file() and path.read_text() == text:
        return relative.as_posix()
    made_with_other = any(_canonical(entry) != text for entry in locked_params(stage, lock or Path(root) / DVC_LOCK))
    write_text_atomic(path, text)
    if not made_with_other:
        os.utime(path, (PAST, PAST))
    return relative.as_posix()


def stages_of_outputs(outputs: Iterable[str], root: str | Path = ".") -> list[str]:
    """The DVC stages (instance names, e.g. train_idx@torch-mnist_dense-0) that declare any of `outputs`."""
    from dvc.repo import Repo

    made = {os.path.normpath(o) for o in outputs}
    with Repo(str(root)) as repo:
        # The name, not `addressing` (relative to the cwd): the project's one dvc.yaml is at `root`.
        return sorted(
            stage.name
            for stage in repo.index.stages
            if any(os.path.normpath(out.def_path) in made for out in stage.outs)
        )


def _note(message: str) -> None:
    print(f"cnnrepro pipeline: {message}", file=sys.stderr, flush=True)


def _dvc(args: list[str], root: str | Path) -> subprocess.CompletedProcess[str]:
    """`dvc ARGS` in `root`; a dvc that cannot be started is a failed run (exit 127), not an exception."""
    try:
        return subprocess.run(["dvc", *args], cwd=root, capture_output=True, text=True, check=False)
    except OSError as exc:
        return subprocess.CompletedProcess(["dvc", *args], 127, "", f"dvc: cannot run ({exc.strerror})")


def _commit(stages: list[str], root: str | Path) -> bool:
    result = _dvc(["commit", "--force", "--quiet", *stages], root)
    if result.returncode != 0:
        _note(f"`dvc commit` failed, `dvc status` will list {len(stages)} stage(s): {result.stderr.strip()[-300:]}")
    return result.returncode == 0


def stale_deps_only(stages: list[str], root: str | Path = ".") -> list[str]:
    """Of `stages`, those `dvc status` lists for changed deps alone: none of their outputs changed or missing."""
    if not stages:
        return []
    result = subprocess.run(["dvc", "status", "--json", *stages], cwd=root, capture_output=True, text=True, check=False)
    try:
        status = json.loads(result.stdout or "{}")
    except json.JSONDecodeError:
        return []

    def deps_only(changes: Any) -> bool:
        return all(isinstance(change, dict) and set(change) == {"changed deps"} for change in changes)

    return [name for name in stages if name in status and deps_only(status[name])]


def record_in_dvc(made: Iterable[str], kept: Iterable[str] = (), root: str | Path = ".") -> list[str]:
    """Tell DVC what a successful Snakemake run left, so `dvc status` agrees with `snakemake -n`; returns the
    stages committed (`dvc commit --force`: hashes, params and cache, as `dvc repro` would have left them).

    `made`: the outputs of the jobs Snakemake ran. `kept`: the outputs of the jobs it judged up to date; their
    stages are committed only where DVC sees nothing but changed deps (DVC's visualize depends on all of runs/,
    Snakemake's on the runs it draws), never where an output itself differs from dvc.lock. Nothing (and a
    note) outside a DVC project or when DVC fails: the outputs are good, only DVC's record of them is missing."""
    made, kept = list(made), list(kept)
    if not made or not (Path(root) / ".dvc").is_dir():
        return []
    try:
        ran = stages_of_outputs(made, root)
        judged = [s for s in stages_of_outputs(kept, root) if s not in ran]
    except Exception as exc:  # DVC cannot read dvc.yaml here: say so, the run itself succeeded
        _note(f"DVC not told what Snakemake made ({type(exc).__name__}: {exc})")
        return []
    committed = ran if ran and _commit(ran, root) else []
    agreed = stale_deps_only(judged, root)
    committed += agreed if agreed and _commit(agreed, root) else []
    if committed:
        _note(f"recorded in dvc.lock: {len(committed)} stage(s) Snakemake made or found up to date")
    return committed


def snakemake_outputs(dag: Any) -> tuple[list[str], list[str]]:
    """(outputs of the jobs a finished Snakemake run executed, outputs of the jobs of its DAG it did not run)."""
    ran = {job for job in dag.needrun_jobs(exclude_finished=False) if dag.finished(job)}
    made = sorted({str(path) for job in ran for path in job.output})
    kept = sorted({str(path) for job in dag.jobs if job not in ran for path in job.output})
    return made, kept
