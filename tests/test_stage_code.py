"""Each stage depends on exactly the project code it imports, in both tools.

The walk (cnnrepro.orchestration.stage_code) is checked against the interpreter (what importing a command's module
really loads is a subset of it), dvc.yaml is checked against the walk (Snakemake calls the walk, and
the DAG parity test keeps the two tools equal), and the slow test edits modules in a real project.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cnnrepro.commands import COMMANDS
from cnnrepro.orchestration.stage_code import rewrite_dvc_code_deps, stage_code

from .conftest import PROJECT_ROOT
from .dag import dvc_jobs
from .pipeline_project import make_project, run

STAGE_COMMANDS = ("download", "clean", "split", "prepare-mnist", "train", "visualize", "report")


def _command(cmd: str) -> str | None:
    words = cmd.split()
    return words[1] if words[:1] == ["cnnrepro"] and len(words) > 1 else None


def test_every_cnnrepro_stage_of_dvc_lists_exactly_the_code_it_imports() -> None:
    seen = set()
    for job in dvc_jobs(PROJECT_ROOT):
        command = _command(job.cmd)
        if command is None:
            continue
        seen.add(command)
        code = sorted(path for path in job.inputs if path.startswith("src/"))
        assert code == stage_code(command), (
            f"dvc.yaml stage {job.rule}: code deps differ from what `cnnrepro {command}` imports; "
            "run `python -m cnnrepro.orchestration.stage_code --write dvc.yaml`"
        )
    assert seen == set(STAGE_COMMANDS)


def test_the_dvc_yaml_writer_is_a_fixed_point() -> None:
    text = (PROJECT_ROOT / "dvc.yaml").read_text()
    assert rewrite_dvc_code_deps(text) == text


@pytest.mark.parametrize("command", ["download", "report", "train"])
def test_the_walk_covers_what_the_interpreter_loads(command: str) -> None:
    """Importing the CLI and the command's module loads only files the walk lists."""
    script = (
        "import importlib, json, sys\n"
        "import cnnrepro.cli\n"
        f"importlib.import_module({COMMANDS[command][0]!r})\n"
        "print(json.dumps([m.__file__ for n, m in sys.modules.items() if n.split('.')[0] == 'cnnrepro']))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    src = PROJECT_ROOT / "src"
    loaded = {Path(f).resolve().relative_to(src.resolve()).as_posix() for f in json.loads(out.stdout)}
    listed = {path.removeprefix("src/") for path in stage_code(command)}
    assert loaded <= listed, f"loaded but not listed: {sorted(loaded - listed)}"


def test_lazy_imports_count_and_unrelated_code_does_not() -> None:
    train = stage_code("train")
    # The Keras backend is imported only when --framework keras is asked for; it is still the stage's code.
    assert "src/cnnrepro/train/backends/keras/trainer.py" in train
    assert "src/cnnrepro/variants/documented.py" in train
    assert not any(path.startswith("src/cnnrepro/report/") for path in train)
    assert not any("torch" in path or "training" in path for path in stage_code("download"))
    assert "src/cnnrepro/variants/documented.py" in stage_code("report")


@pytest.mark.slow
def test_editing_imported_code_reruns_the_stage_in_both_tools_and_other_code_does_not(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    run(["dvc", "repro", "download@mnist"], project)

    def snakemake_would_run() -> bool:
        result = run(["snakemake", "-n", "--cores", "1", "data/raw/mnist"], project)
        return "download" in result.stdout and "Nothing to be done" not in result.stdout

    def dvc_would_run() -> bool:
        return "up to date" not in run(["dvc", "status", "download@mnist"], project).stdout

    assert not dvc_would_run() and not snakemake_would_run()
    unrelated = project / "src/cnnrepro/report/stats.py"
    unrelated.write_text(unrelated.read_text() + "\n# edited\n")
    assert not dvc_would_run() and not snakemake_would_run()
    imported = project / "src/cnnrepro/fsutil.py"  # not download.py itself: a module download imports
    imported.write_text(imported.read_text() + "\n# edited\n")
    assert dvc_would_run() and snakemake_would_run()
