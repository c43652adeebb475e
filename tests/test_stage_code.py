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
import yaml

from cnnrepro.commands import COMMANDS
from cnnrepro.orchestration.stage_code import expand_roots, framework_code, rewrite_dvc_yaml, stage_code, stage_files

from .conftest import PROJECT_ROOT
from .dag import dvc_jobs
from .pipeline_project import make_project, run

STAGE_COMMANDS = ("download", "clean", "split", "prepare-mnist", "train", "visualize", "report")


def _command(cmd: str) -> str | None:
    words = cmd.split()
    return words[1] if words[:1] == ["cnnrepro"] and len(words) > 1 else None


def _framework(cmd: str) -> str | None:
    words = cmd.split()
    return words[words.index("--framework") + 1] if "--framework" in words else None


def test_every_cnnrepro_stage_of_dvc_lists_exactly_the_code_it_imports() -> None:
    """dvc.yaml's code deps are the walk's files with each folder the stage mostly imports taken whole
    (stage_files, what Snakemake watches too), every file the walk found among them; a training job's are
    its own backend's, never the other's."""
    seen = set()
    for job in dvc_jobs(PROJECT_ROOT):
        command = _command(job.cmd)
        if command is None:
            continue
        seen.add(command)
        code = sorted(expand_roots([path for path in job.inputs if path.startswith("src/")]))
        framework = _framework(job.cmd)
        walk = framework_code(command, framework) if framework else stage_code(command)
        assert set(walk) <= set(code), f"{job.rule}: imports {sorted(set(walk) - set(code))}, not in its deps"
        assert code == sorted(stage_files(command, framework)), (
            f"dvc.yaml stage {job.rule}: code deps differ from what `cnnrepro {command}` imports; "
            "run `python -m cnnrepro.orchestration.stage_code --write dvc.yaml`"
        )
        if framework:
            other = {"torch": "keras", "keras": "torch"}[framework]
            assert not [path for path in code if f"/backends/{other}/" in path], job.rule
    assert seen == set(STAGE_COMMANDS)


def test_the_dvc_yaml_writer_is_a_fixed_point() -> None:
    text = (PROJECT_ROOT / "dvc.yaml").read_text()
    assert rewrite_dvc_yaml(text) == text


def test_dvc_yaml_is_readable_at_a_glance() -> None:
    text = (PROJECT_ROOT / "dvc.yaml").read_text()
    assert len(text.splitlines()) <= 350
    assert "&train_deps" not in text and text.count("- src/cnnrepro") == 0  # code deps are package-level lists


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
    # The Keras backend is imported only when --framework keras is asked for; it is still the stage's code,
    # but not the code of a PyTorch job.
    assert "src/cnnrepro/train/backends/keras/trainer.py" in train
    torch_job = stage_code("train", framework="torch")
    assert "src/cnnrepro/train/backends/torch/trainer.py" in torch_job
    assert not [path for path in torch_job if "/backends/keras/" in path]
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


def test_a_backend_edit_makes_only_its_frameworks_runs_out_of_date_in_both_tools(tmp_path: Path) -> None:
    """Both frameworks' runs made and recorded (outputs written by hand, then `snakemake --touch` and `dvc
    commit`: what trains is not the point here, what each tool sees as stale is), then one backend edited."""
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["data"]["mirror"] = None
    params["train"]["frameworks"] = ["torch", "keras"]
    params["train"]["variants"] = {"pets": [], "pets_fine_tuning": [], "idx": ["mnist_dense"], "keras_example": []}
    params["ablations"]["run"] = {group: [] for group in params["ablations"]["run"]}
    project = make_project(tmp_path, params)
    for npz in ("mnist", "fashion_mnist"):
        (project / "data" / "prepared").mkdir(parents=True, exist_ok=True)
        (project / "data" / "prepared" / f"{npz}.npz").write_bytes(npz.encode())
    runs = {fw: f"runs/{fw}/mnist_dense/seed0" for fw in ("torch", "keras")}
    for out in runs.values():
        (project / out / "artifacts").mkdir(parents=True)
        for name in ("metrics.json", "run_info.json", "history.csv", "artifacts/model"):
            (project / out / name).write_text(name)
    targets = [f"{out}/metrics.json" for out in runs.values()]
    run(["snakemake", "--touch", "--cores", "1", *targets], project)
    jobs = {fw: f"train_idx@{fw}-mnist_dense-0" for fw in runs}
    run(["dvc", "commit", "-f", *jobs.values()], project)

    def stale() -> dict[str, tuple[bool, bool]]:
        smk = run(["snakemake", "-n", "--cores", "1", *targets], project).stdout
        dvc = run(["dvc", "status", *jobs.values()], project).stdout
        return {fw: (f"framework={fw}" in smk, f"{jobs[fw]}:" in dvc) for fw in runs}

    assert stale() == {"torch": (False, False), "keras": (False, False)}
    edited = project / "src/cnnrepro/train/backends/torch/steps.py"
    edited.write_text(edited.read_text() + "\n# edited\n")
    assert stale() == {"torch": (True, True), "keras": (False, False)}
    edited = project / "src/cnnrepro/train/backends/keras/fit.py"
    edited.write_text(edited.read_text() + "\n# edited\n")
    assert stale() == {"torch": (True, True), "keras": (True, True)}
