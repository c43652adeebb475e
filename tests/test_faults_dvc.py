"""Orchestration faults: two pipelines in one directory (either tool), bad params under the CLI, Snakemake
and DVC, and an interrupted `dvc repro`.

- The pipeline lock: a second pipeline fails at once naming the first (tool, pid, start); a holder
  killed with SIGKILL leaves no stale lock; stages refuse to run under another pipeline.
- `python -m cnnrepro.orchestration.pipeline_run -- dvc repro` (`make dvc-repro`): one lock, one parent run.
- Bad params (unknown variant, negative epochs, wrong type, missing mirror): one line naming the key,
  before any stage writes anything.
- `dvc repro` interrupted by SIGINT or SIGKILL mid-stage: dvc.lock stays valid and the next
  `dvc repro` finishes the work.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cnnrepro.cli import main as cli_main
from cnnrepro.errors import CnnreproError
from cnnrepro.orchestration import pipeline_lock, pipeline_run
from cnnrepro.tracking.liveness import TAG_PID, TAG_STALE
from cnnrepro.tracking.pipeline import TAG_KIND, start_pipeline_run
from cnnrepro.tracking.store import client, ensure_experiment
from cnnrepro.tracking.tracked_run import PARENT_RUN_ENV
from cnnrepro.train.engine import checkpoint as ckpt

from .helpers_data import serve_directory, write_params
from .helpers_faults import kill_tree, project_with_profiles, set_params, wait_for
from .helpers_train import make_npz, shared_store
from .pipeline_project import ARCHIVE, make_mirror, make_project, run, tiny_params

# A process that holds the pipeline lock as `tool` and prints its pipeline id, then waits to be killed.
HOLD_LOCK = """
import sys, time
from cnnrepro.orchestration import pipeline_lock
lock = pipeline_lock.acquire(sys.argv[1])
print(lock.holder.pipeline_id, flush=True)
time.sleep(300)
"""


def hold_lock(cwd: Path, tool: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, tool], cwd=cwd, stdout=subprocess.PIPE, text=True)
    pipeline_id = proc.stdout.readline().strip()
    assert pipeline_id, "the lock holder did not start"
    return proc, pipeline_id


def _one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


# ---------------------------------------------------------------- the pipeline lock


def test_second_pipeline_fails_at_once_naming_the_first(tmp_path: Path) -> None:
    first = pipeline_lock.acquire("snakemake", tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(pipeline_lock.PipelineLocked) as info:
            pipeline_lock.acquire("dvc", tmp_path)
        assert time.monotonic() - started < 3
        message = _one_line(str(info.value))
        assert message.startswith(f"{tmp_path / '.cnnrepro' / 'pipeline.lock'}: another pipeline is running")
        assert f"snakemake (pid {os.getpid()} on " in message
        assert f"started {first.holder.started}" in message
        assert pipeline_lock.current_holder(tmp_path) == first.holder
    finally:
        first.release()
    assert pipeline_lock.current_holder(tmp_path) is None
    pipeline_lock.acquire("dvc", tmp_path).release()


def test_killed_pipeline_leaves_no_stale_lock(tmp_path: Path) -> None:
    proc, pipeline_id = hold_lock(tmp_path, "snakemake")
    holder = pipeline_lock.current_holder(tmp_path)
    assert (holder.tool, holder.pid, holder.pipeline_id) == ("snakemake", proc.pid, pipeline_id)
    proc.kill()
    proc.wait(timeout=30)
    assert (tmp_path / ".cnnrepro" / "pipeline.lock").exists()  # the file stays; nobody holds it
    assert pipeline_lock.current_holder(tmp_path) is None
    with pipeline_lock.acquire("dvc", tmp_path) as lock:
        assert lock.holder.tool == "dvc"


def test_stage_refuses_to_run_under_another_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline_lock.guard_stage("train", tmp_path)  # no pipeline: anything may run
    proc, pipeline_id = hold_lock(tmp_path, "snakemake")
    try:
        with pytest.raises(pipeline_lock.PipelineLocked) as info:
            pipeline_lock.guard_stage("train", tmp_path)
        message = _one_line(str(info.value))
        assert f"pipeline snakemake (pid {proc.pid} on " in message
        assert "`cnnrepro train` is not one of its jobs" in message
        monkeypatch.setenv(pipeline_lock.PIPELINE_ID_ENV, "some-other-pipeline")
        with pytest.raises(pipeline_lock.PipelineLocked):
            pipeline_lock.guard_stage("train", tmp_path)
        monkeypatch.setenv(pipeline_lock.PIPELINE_ID_ENV, pipeline_id)
        pipeline_lock.guard_stage("train", tmp_path)  # one of the pipeline's own jobs
    finally:
        proc.kill()
        proc.wait(timeout=30)
    monkeypatch.delenv(pipeline_lock.PIPELINE_ID_ENV)
    pipeline_lock.guard_stage("train", tmp_path)


# ---------------------------------------------------------------- the DVC wrapper: lock + parent run


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = shared_store(tmp_path_factory)
    ensure_experiment(uri, "wrapped")  # created here, in-process: cheaper than in a subprocess
    return uri


def _workdir(tmp_path: Path, store: str) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    params = write_params(work / "params.yaml", {"data.mirror": None})
    params.write_text(
        yaml.safe_dump(yaml.safe_load(params.read_text()) | {"tracking": {"uri": store, "experiment": "wrapped"}})
    )
    return work


# The wrapped "stage": records what a stage started by DVC would see.
REPORT_ENV = """
import json, os, sys
from cnnrepro.orchestration import pipeline_lock
holder = pipeline_lock.current_holder()
pipeline_lock.guard_stage("report")
env = {"parent": os.environ.get("CNNREPRO_PARENT_RUN_ID"), "pipeline": os.environ.get("CNNREPRO_PIPELINE_ID")}
print(json.dumps(env | {"holder": holder.tool, "holder_id": holder.pipeline_id}))
sys.exit(int(sys.argv[1]))
"""


def _wrapped(work: Path, code: int) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cnnrepro.orchestration.pipeline_run", "--tool", "dvc", "--"]
    return subprocess.run(
        [*command, sys.executable, "-c", REPORT_ENV, str(code)], cwd=work, capture_output=True, text=True, timeout=300
    )


def _run(store: str, run_id: str) -> Any:
    return client(store).get_run(run_id)


def test_wrapper_runs_the_command_as_one_pipeline(tmp_path: Path, store: str) -> None:
    work = _workdir(tmp_path, store)
    result = _wrapped(work, 3)
    assert result.returncode == 3, result.stderr  # the command's own status
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    # The stage saw the lock held by its own pipeline (so its guard let it run) and the parent run.
    assert seen["holder"] == "dvc" and seen["holder_id"] == seen["pipeline"]
    parent = _run(store, seen["parent"])
    assert parent.info.status == "FAILED"
    assert parent.data.tags[TAG_KIND] == "pipeline"
    assert pipeline_lock.current_holder(work) is None


def test_session_opens_and_closes_the_parent_run(tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(_workdir(tmp_path, store))
    session = pipeline_run.begin("snakemake")
    try:
        assert os.environ[PARENT_RUN_ENV] == session.parent_run_id
        assert os.environ[pipeline_lock.PIPELINE_ID_ENV] == session.lock.holder.pipeline_id
        assert pipeline_lock.current_holder().tool == "snakemake"
        parent = _run(store, session.parent_run_id)
        assert parent.info.status == "RUNNING"
        assert parent.data.tags[TAG_PID] == str(os.getpid())  # so a dead orchestrator's run is found
    finally:
        pipeline_run.finish("FINISHED")
    assert _run(store, session.parent_run_id).info.status == "FINISHED"
    assert PARENT_RUN_ENV not in os.environ and pipeline_lock.PIPELINE_ID_ENV not in os.environ
    assert pipeline_lock.current_holder() is None


def test_session_keeps_a_parent_run_the_user_opened(
    tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(_workdir(tmp_path, store))
    mine = start_pipeline_run(store, "wrapped", name="mine")
    monkeypatch.setenv(PARENT_RUN_ENV, mine)
    session = pipeline_run.begin("snakemake")
    pipeline_run.finish("FAILED")
    assert session.parent_run_id == mine and not session.owns_parent
    assert _run(store, mine).info.status == "RUNNING"  # the user's to close
    assert os.environ[PARENT_RUN_ENV] == mine
    monkeypatch.setenv(PARENT_RUN_ENV, "0" * 32)
    with pytest.raises(CnnreproError) as info:
        pipeline_run.begin("snakemake")
    assert _one_line(str(info.value)).startswith(f"CNNREPRO_PARENT_RUN_ID={'0' * 32}: no such run in ")
    assert pipeline_lock.current_holder() is None


# An orchestrator that opens its pipeline session, reports the parent run, then hangs until killed.
ORCHESTRATOR = """
import time
from cnnrepro.orchestration import pipeline_run
session = pipeline_run.begin("snakemake")
print(session.parent_run_id, flush=True)
time.sleep(300)
"""


def test_parent_run_of_a_killed_orchestrator_is_marked_failed(
    tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = _workdir(tmp_path, store)
    proc = subprocess.Popen([sys.executable, "-c", ORCHESTRATOR], cwd=work, stdout=subprocess.PIPE, text=True)
    try:
        parent = proc.stdout.readline().strip()
        assert parent, "the orchestrator did not start"
    finally:
        proc.kill()  # SIGKILL: no hook, no atexit
        proc.wait(timeout=30)
    assert _run(store, parent).info.status == "RUNNING"
    monkeypatch.chdir(work)
    pipeline_run.begin("snakemake")  # the next pipeline here cleans up first
    pipeline_run.finish("FINISHED")
    assert _run(store, parent).info.status == "FAILED"
    assert "is gone" in _run(store, parent).data.tags[TAG_STALE]


WAIT_FOREVER = "import time; print('started', flush=True); time.sleep(300)"


@pytest.mark.slow
def test_snakemake_and_dvc_exclude_each_other(tmp_path: Path) -> None:
    project = project_with_profiles(tmp_path)
    target = "data/raw/mnist"
    # `make dvc-repro` (the wrapper) runs a long stage: it holds the directory.
    dvc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cnnrepro.orchestration.pipeline_run",
            "--tool",
            "dvc",
            "--",
            sys.executable,
            "-c",
            WAIT_FOREVER,
        ],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert dvc.stdout.readline().strip() == "started", dvc.stderr.read()
        started = time.monotonic()
        second = run(["snakemake", "--cores", "1", target], project, check=False)
        assert second.returncode != 0
        assert f"another pipeline is running in this directory: dvc (pid {dvc.pid} on " in second.stdout + second.stderr
        assert not (project / target).exists() and not (project / "logs").exists()
        # A second `make dvc-repro` is refused the same way, in one line.
        wrapped = run(
            [sys.executable, "-m", "cnnrepro.orchestration.pipeline_run", "--", "dvc", "repro"], project, check=False
        )
        assert wrapped.returncode == 1
        assert f"dvc (pid {dvc.pid} on " in _one_line(wrapped.stderr)
        assert time.monotonic() - started < 60
    finally:
        kill_tree(dvc)
        dvc.wait(timeout=30)
    # Once it is gone (killed: no stale lock), Snakemake runs; its hooks took the lock and released it.
    run(["snakemake", "--cores", "1", target], project)
    assert (project / target / "manifest.json").exists()
    assert pipeline_lock.current_holder(project) is None


def test_plain_dvc_stage_refuses_while_snakemake_runs(tmp_path: Path) -> None:
    """A plain `dvc repro` knows nothing of the lock: its stage commands check it (cli.py's guard)."""
    project = make_project(tmp_path)
    holder, _ = hold_lock(project, "snakemake")
    try:
        result = run(["dvc", "repro", "download@mnist"], project, check=False)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert result.returncode != 0
    assert f"pipeline snakemake (pid {holder.pid} on " in result.stdout + result.stderr
    assert not (project / "data" / "raw" / "mnist").exists()


# ---------------------------------------------------------------- bad params


BAD_PARAMS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "unknown variant": (lambda p: p["train"]["variants"].update(pets=["resnet"]), "train.variants.pets.0"),
    "negative epochs": (
        lambda p: p["train"]["overrides"].update(baseline={"epochs": -1}),
        "train.overrides.baseline.epochs",
    ),
    "wrong type": (lambda p: p["train"].update(seeds="0"), "train.seeds"),
    "missing mirror": (lambda p: p["data"].update(mirror="/nonexistent/mirror"), "data.mirror"),
}


def _broken(params: dict[str, Any], fault: str) -> dict[str, Any]:
    broken = copy.deepcopy(params)
    BAD_PARAMS[fault][0](broken)
    return broken


@pytest.mark.parametrize("fault", list(BAD_PARAMS))
def test_bad_params_under_the_cli(fault: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(_broken(yaml.safe_load(write_params(params).read_text()), fault)))
    out = tmp_path / "out"
    train_args = ["--variant", "lenet", "--seed", "0", "--data", str(tmp_path), "--out", str(out / "run")]
    for argv in (
        ["download", "--dataset", "mnist", "--out", str(out / "raw")],
        ["train", "--framework", "torch", *train_args, "--checkpoints", str(out / "ckpt")],
    ):
        if fault == "missing mirror" and argv[0] == "train":
            continue  # training reads no mirror
        assert cli_main([argv[0], "--params", str(params), *argv[1:]]) == 1
        line = _one_line(capsys.readouterr().err)
        # config.mirror_dir names the key as "params.yaml: data.mirror" whatever the file's path.
        source = "params.yaml" if fault == "missing mirror" else str(params)
        assert line.startswith(f"cnnrepro {argv[0]}: error: {source}: {BAD_PARAMS[fault][1]}"), line
    # Nothing written (the download stage may have made the empty parent of its output directory).
    assert not out.exists() or list(out.iterdir()) == []


@pytest.fixture(scope="module")
def fresh_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return project_with_profiles(tmp_path_factory.mktemp("bad-params"))


def _with_params(project: Path, params: dict[str, Any]) -> Callable[[], None]:
    original = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return lambda: (project / "params.yaml").write_text(original)


def _nothing_ran(project: Path) -> None:
    assert not (project / "logs").exists()
    assert not (project / "data" / "raw").exists() or not any((project / "data" / "raw").iterdir())
    assert not (project / "mlflow.db").exists()


def test_snakemake_stops_while_dvc_holds_the_directory(fresh_project: Path) -> None:
    holder, _ = hold_lock(fresh_project, "dvc")
    try:
        second = run(["snakemake", "--cores", "1"], fresh_project, check=False)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert second.returncode != 0
    assert f"another pipeline is running in this directory: dvc (pid {holder.pid} on " in second.stdout + second.stderr
    _nothing_ran(fresh_project)


SLOW_SNAKEMAKE_FAULTS = ("unknown variant", "wrong type")  # the same schema check as "negative epochs"


@pytest.mark.parametrize(
    "fault", [pytest.param(f, marks=pytest.mark.slow) if f in SLOW_SNAKEMAKE_FAULTS else f for f in BAD_PARAMS]
)
def test_bad_params_under_snakemake(fault: str, fresh_project: Path) -> None:
    restore = _with_params(fresh_project, _broken(yaml.safe_load((fresh_project / "params.yaml").read_text()), fault))
    try:
        result = run(["snakemake", "--cores", "1"], fresh_project, check=False)
        dry = run(["snakemake", "-n"], fresh_project, check=False)
    finally:
        restore()
    output = result.stdout + result.stderr
    assert result.returncode != 0
    key = BAD_PARAMS[fault][1]
    if fault == "missing mirror":  # the schema cannot see it: the onstart hook's preflight does
        assert f"params.yaml: {key}: mirror directory /nonexistent/mirror does not exist" in output
    else:  # the Snakefile validates with the project's loader: the CLI's one line, nothing else
        for attempt in (result, dry):
            assert attempt.returncode == 1
            assert attempt.stdout == ""
            # Snakemake's own notice of the workflow profile it read comes first; then our line alone.
            profile_notice = "Using workflow specific profile profiles/default"
            line = _one_line("\n".join(x for x in attempt.stderr.splitlines() if not x.startswith(profile_notice)))
            assert line.startswith(f"cnnrepro pipeline: error: params.yaml: {key}"), line
    _nothing_ran(fresh_project)


@pytest.mark.parametrize("fault", list(BAD_PARAMS))
def test_bad_params_under_the_dvc_wrapper(fault: str, fresh_project: Path) -> None:
    restore = _with_params(fresh_project, _broken(yaml.safe_load((fresh_project / "params.yaml").read_text()), fault))
    try:
        result = run(
            [sys.executable, "-m", "cnnrepro.orchestration.pipeline_run", "--", "dvc", "repro"],
            fresh_project,
            check=False,
        )
    finally:
        restore()
    assert result.returncode == 1
    line = _one_line(result.stderr)
    assert line.startswith(f"cnnrepro pipeline: error: params.yaml: {BAD_PARAMS[fault][1]}"), line
    assert result.stdout == ""  # dvc never started
    _nothing_ran(fresh_project)
    assert pipeline_lock.current_holder(fresh_project) is None


def test_bad_params_under_plain_dvc(fresh_project: Path) -> None:
    """Plain `dvc repro`: the first stage stops on the one-line error. (A wrong type that breaks the
    dvc.yaml templating itself, like train.seeds: "0", fails inside DVC before any stage, in DVC's words;
    `make dvc-repro` names the key.)"""
    restore = _with_params(
        fresh_project, _broken(yaml.safe_load((fresh_project / "params.yaml").read_text()), "negative epochs")
    )
    try:
        result = run(["dvc", "repro"], fresh_project, check=False)
    finally:
        restore()
    assert result.returncode != 0
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("cnnrepro ")]
    key = BAD_PARAMS["negative epochs"][1]
    assert errors == [f"cnnrepro download: error: params.yaml: {key}: -1 is less than the minimum of 1"]
    assert not (fresh_project / "dvc.lock").exists()
    _nothing_ran(fresh_project)


# ---------------------------------------------------------------- interrupted dvc repro


def _lock_stages(project: Path) -> dict[str, Any]:
    return yaml.safe_load((project / "dvc.lock").read_text())["stages"]


@pytest.mark.parametrize(
    "sig", [signal.SIGKILL, pytest.param(signal.SIGINT, marks=pytest.mark.slow)], ids=["SIGKILL", "SIGINT"]
)
def test_interrupted_dvc_repro_keeps_dvc_lock_valid_and_finishes_next_time(tmp_path: Path, sig: int) -> None:
    """A download stage stalls mid-body; dvc is interrupted: SIGKILL of its whole process tree (power loss,
    OOM killer) or SIGINT to its process group (Ctrl-C)."""
    mirror = make_mirror(tmp_path)
    params = tiny_params(mirror)
    project = make_project(tmp_path, params)
    run(["dvc", "repro", "download@mnist"], project)
    before = (project / "dvc.lock").read_text()
    www = tmp_path / "www"
    www.mkdir()
    shutil.copy(mirror / "petimages" / ARCHIVE, www / ARCHIVE)
    with serve_directory(www, {ARCHIVE: ["stall_body"]}) as server:
        params = copy.deepcopy(params)
        params["data"]["mirror"] = None
        params["download"]["petimages"]["urls"] = [server.url_for(ARCHIVE)]
        params["download"]["timeout_s"] = 120
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        proc = subprocess.Popen(
            ["dvc", "repro", "download@petimages"],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
        try:
            wait_for(lambda: server.hits[ARCHIVE] >= 1, 120, "the download stage to start", proc=proc)
            time.sleep(0.5)
            if sig == signal.SIGINT:
                os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
            else:
                kill_tree(proc, signal.SIGKILL)
            output, _ = proc.communicate(timeout=120)
        finally:
            kill_tree(proc)
        assert proc.returncode != 0, output
        assert (project / "dvc.lock").read_text() == before, output  # untouched, still valid
        assert set(_lock_stages(project)) == {"download@mnist"}
        assert not (project / "data" / "raw" / "petimages").exists()
        server.stop.set()
        again = run(["dvc", "repro", "download@petimages"], project)
        assert "Running stage 'download@petimages'" in again.stdout
    assert set(_lock_stages(project)) == {"download@mnist", "download@petimages"}
    assert (project / "data" / "raw" / "petimages" / ARCHIVE).read_bytes() == (www / ARCHIVE).read_bytes()
    status = run(["dvc", "status", "download@petimages"], project)
    assert "up to date" in status.stdout


@pytest.mark.slow
def test_dvc_repro_killed_during_training_resumes_it(tmp_path: Path) -> None:
    project = make_project(tmp_path)

    def settings(p: dict[str, Any]) -> None:
        p["train"]["variants"] = {"pets": [], "pets_fine_tuning": [], "idx": ["lenet"], "keras_example": []}
        p["train"]["overrides"] = {"lenet": {"epochs": 5, "batch_size": 16, "max_train_images": 1600}}

    set_params(project, settings)
    run(["dvc", "repro", "prepare_mnist@mnist", "prepare_mnist@fashion_mnist"], project)
    before = (project / "dvc.lock").read_text()
    # The fixture's 120 images make epochs too short to interrupt: a larger file of the same shape, and
    # --single-item so that DVC does not restore the prepared one.
    make_npz(project / "data" / "prepared" / "fashion_mnist.npz", n_train=2400, n_test=100)
    stage = "train_idx@torch-lenet-0"
    log = tmp_path / "dvc.log"
    checkpoint = project / "checkpoints" / "torch" / "lenet" / "seed0" / "last.safetensors"
    env = os.environ | {"OMP_NUM_THREADS": "1", "CNNREPRO_IDX_PINS": str(tmp_path / "idx_pins.json")}
    with log.open("w") as sink:
        proc = subprocess.Popen(
            ["dvc", "repro", "--single-item", stage], cwd=project, stdout=sink, stderr=subprocess.STDOUT, env=env
        )
    try:
        wait_for(lambda: checkpoint.exists() and "epoch 2/" in log.read_text(), 300, "epoch 2", 0.05, proc, log)
        time.sleep(0.3)
        kill_tree(proc, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        kill_tree(proc)
    killed_after = int(ckpt.decode(Path(checkpoint).read_bytes())["epoch"])
    assert (project / "dvc.lock").read_text() == before
    assert not (project / "runs" / "torch" / "lenet" / "seed0" / "metrics.json").exists()

    again = run(["dvc", "repro", "--single-item", stage], project)
    assert f"resuming from checkpoints/torch/lenet/seed0/last.safetensors after epoch {killed_after}" in again.stdout
    assert stage in _lock_stages(project)
    assert (project / "runs" / "torch" / "lenet" / "seed0" / "metrics.json").exists()
    assert not checkpoint.exists()
