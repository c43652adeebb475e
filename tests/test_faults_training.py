"""A training job killed with SIGKILL mid-epoch, alone and under Snakemake, then run again.

What must hold: nothing looks finished after the kill (no metrics.json; Snakemake's incomplete marker
handled by the default profile's rerun-incomplete), the next run resumes from the last epoch checkpoint,
the killed run's MLflow run ends FAILED and the resumed one names it (tag cnnrepro.resumed_from_run),
and the final weights equal those of an uninterrupted run with the same seed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

from cnnrepro.orchestration import pipeline_lock
from cnnrepro.tracking.pipeline import TAG_KIND
from cnnrepro.tracking.store import client as store_client
from cnnrepro.train.cli import TAG_RESUMED_AFTER, TAG_RESUMED_FROM
from cnnrepro.train.engine import checkpoint as ckpt

from .helpers_faults import copy_profiles, find_descendant, kill_tree, project_with_profiles, set_params, wait_for
from .helpers_train import make_npz, shared_store, train, write_params
from .pipeline_project import run

VARIANT = "lenet"
EPOCHS = 5
# About half a second per epoch on one thread: time to land a kill inside an epoch.
OVERRIDES = {VARIANT: {"epochs": EPOCHS, "batch_size": 16, "max_train_images": 1600}}
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # same kernels in every run: bitwise-equal results


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return shared_store(tmp_path_factory)


def _train_cmd(out: str, checkpoints: str, data: str = "prepared") -> list[str]:
    return [
        "cnnrepro", "train", "--framework", "torch", "--variant", VARIANT, "--seed", "0",
        "--data", data, "--out", out, "--checkpoints", checkpoints,
    ]  # fmt: skip


def _start(cmd: list[str], cwd: Path, log: Path) -> subprocess.Popen[Any]:
    with log.open("w") as sink:
        return subprocess.Popen(cmd, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT, env=os.environ | ONE_THREAD)


def _checkpoint_epoch(path: Path) -> int:
    return int(ckpt.decode(Path(path).read_bytes())["epoch"])


def _kill_mid_epoch(victim: subprocess.Popen[Any], log: Path, checkpoint: Path) -> None:
    """SIGKILL once epoch 2 is checkpointed and epoch 3 is under way."""
    wait_for(lambda: checkpoint.exists() and "epoch 2/" in log.read_text(), 300, "epoch 2", 0.05, victim, log)
    time.sleep(0.3)
    victim.send_signal(signal.SIGKILL)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "artifacts" / "model.safetensors")


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"weights differ from the uninterrupted run: {different}"


def _runs(store: str, experiment: str) -> list[Any]:
    client = store_client(store)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], max_results=1000) if found else []


@pytest.fixture
def one_thread() -> Iterator[None]:
    """This process's torch on one thread, like the killed job's: same kernels, bitwise-equal results."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_killed_training_resumes_to_the_uninterrupted_result(
    tmp_path: Path, store: str, one_thread: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cnnrepro train` in its own process, SIGKILLed in epoch 3; the rerun (here in-process, the command's
    own code path) resumes; an uninterrupted run of the same seed gives the same weights."""
    monkeypatch.chdir(tmp_path)
    make_npz(tmp_path / "prepared" / "fashion_mnist.npz", n_train=2400, n_test=100)
    params_path = write_params(tmp_path / "params.yaml", tracking_uri=store, overrides=OVERRIDES)
    # The experiment name is per test, so the runs below are this test's only.
    params = yaml.safe_load(params_path.read_text())
    params["tracking"]["experiment"] = "killed-training"
    params_path.write_text(yaml.safe_dump(params))

    victim = _start(_train_cmd("resumed", "ck"), tmp_path, tmp_path / "victim.log")
    checkpoint = ckpt.checkpoint_path("ck", "torch", VARIANT, 0)
    try:
        _kill_mid_epoch(victim, tmp_path / "victim.log", checkpoint)
        assert victim.wait(timeout=60) == -signal.SIGKILL
    finally:
        victim.kill()
    killed_after = _checkpoint_epoch(checkpoint)
    assert 2 <= killed_after < EPOCHS
    assert not Path("resumed", "metrics.json").exists()  # nothing looks finished
    (killed,) = [r for r in _runs(store, "killed-training") if r.info.status == "RUNNING"]

    data = Path("prepared")
    assert train(VARIANT, 0, data, Path("straight"), params=params_path, checkpoints=Path("ck-straight")) == 0
    capsys.readouterr()
    assert train(VARIANT, 0, data, Path("resumed"), params=params_path, checkpoints=Path("ck")) == 0
    assert f"resuming from {checkpoint} after epoch {killed_after}" in capsys.readouterr().out
    _assert_same_weights(tmp_path / "straight", tmp_path / "resumed")
    assert (tmp_path / "straight" / "history.csv").read_text() == (tmp_path / "resumed" / "history.csv").read_text()
    assert not checkpoint.exists()  # removed once the outputs are written

    client = store_client(store)
    assert client.get_run(killed.info.run_id).info.status == "FAILED"
    run_id = yaml.safe_load((tmp_path / "resumed" / "run_info.json").read_text())["mlflow"]["run_id"]
    new = client.get_run(run_id)
    assert new.info.status == "FINISHED"
    assert new.data.tags[TAG_RESUMED_FROM] == killed.info.run_id
    assert new.data.tags[TAG_RESUMED_AFTER] == str(killed_after)
    steps = [m.step for m in client.get_metric_history(run_id, "val_accuracy")]
    assert sorted(steps) == list(range(1, EPOCHS + 1))  # the whole curve, restored epochs included


# ---------------------------------------------------------------- under Snakemake


TARGET = f"runs/torch/{VARIANT}/seed0"


@pytest.mark.slow
def test_snakemake_killed_mid_epoch_resumes_on_the_next_run(tmp_path: Path) -> None:
    """SIGKILL of the whole Snakemake process tree (power loss, OOM killer) during a training."""
    project = project_with_profiles(tmp_path)

    def settings(p: dict[str, Any]) -> None:
        p["train"]["overrides"] = OVERRIDES
        p["train"]["variants"] = {"pets": [], "pets_fine_tuning": [], "idx": [VARIANT], "keras_example": []}

    set_params(project, settings)
    run(["snakemake", "--cores", "1", "data/prepared/fashion_mnist.npz", "data/prepared/mnist.npz"], project)
    # The tiny fixture's 120 images make too short an epoch: a larger npz of the same shape.
    make_npz(project / "data" / "prepared" / "fashion_mnist.npz", n_train=2400, n_test=100)

    env = os.environ | ONE_THREAD
    pins = project.parent / "idx_pins.json"
    env["CNNREPRO_IDX_PINS"] = str(pins)
    log = project / "snakemake-1.log"
    with log.open("w") as sink:
        command = ["snakemake", "--cores", "1", f"{TARGET}/metrics.json"]
        first = subprocess.Popen(command, cwd=project, stdout=sink, stderr=subprocess.STDOUT, env=env)
    checkpoint = project / "checkpoints" / "torch" / VARIANT / "seed0" / "last.safetensors"
    train_log = project / "logs" / "train" / "torch" / VARIANT / "seed0.log"
    try:
        wait_for(lambda: train_log.exists(), 300, "the training job to start", proc=first, log=log)
        trainer = wait_for(lambda: find_descendant(first.pid, "cnnrepro", "train"), 60, "cnnrepro train", proc=first)
        holder = pipeline_lock.current_holder(project)
        assert holder is not None and holder.tool == "snakemake" and holder.pid == first.pid
        wait_for(lambda: checkpoint.exists() and "epoch 2/" in train_log.read_text(), 300, "epoch 2", 0.05, first, log)
        time.sleep(0.3)
        kill_tree(first, signal.SIGKILL)  # every process at once, Snakemake included: no hook runs
        first.wait(timeout=60)
    finally:
        kill_tree(first)
    assert trainer
    killed_after = _checkpoint_epoch(checkpoint)
    assert not (project / TARGET / "metrics.json").exists()
    assert pipeline_lock.current_holder(project) is None  # our lock died with Snakemake
    store = "sqlite:///" + str(project / "mlflow.db")
    running = {r.info.run_id: r for r in _runs(store, "cnnrepro") if r.info.status == "RUNNING"}
    (killed_parent,) = [r for r in running.values() if r.data.tags.get(TAG_KIND) == "pipeline"]
    (killed_job,) = [r for r in running.values() if r.info.run_id != killed_parent.info.run_id]

    # Snakemake's own directory lock is left behind by SIGKILL: the documented `--unlock` clears it.
    run(["snakemake", "--unlock"], project)
    second = run(["snakemake", "--cores", "1", f"{TARGET}/metrics.json"], project)
    # Outputs are written only at the end, each atomically: the killed job left none, so Snakemake sees
    # them missing (not half-written) and reruns the job, which resumes.
    assert "reason: Missing output files: " in second.stdout + second.stderr
    assert (
        f"resuming from checkpoints/torch/{VARIANT}/seed0/last.safetensors after epoch {killed_after}"
        in train_log.read_text()
    )
    assert (project / TARGET / "metrics.json").exists()

    client = store_client(store)
    assert client.get_run(killed_job.info.run_id).info.status == "FAILED"
    assert client.get_run(killed_parent.info.run_id).info.status == "FAILED"  # its process is gone
    runs = _runs(store, "cnnrepro")
    (resumed,) = [r for r in runs if r.data.tags.get(TAG_RESUMED_FROM) == killed_job.info.run_id]
    assert resumed.info.status == "FINISHED"
    (parent,) = [r for r in runs if r.info.run_id == resumed.data.tags["mlflow.parentRunId"]]
    assert parent.info.status == "FINISHED" and parent.data.tags[TAG_KIND] == "pipeline"
    assert not [r for r in runs if r.info.status == "RUNNING"]

    # The same training, uninterrupted, by hand in the same project.
    straight = subprocess.run(
        _train_cmd("straight", "ck-straight", "data/prepared"), cwd=project, capture_output=True, text=True, env=env
    )
    assert straight.returncode == 0, straight.stdout + straight.stderr
    _assert_same_weights(project / "straight", project / TARGET)
    assert (project / "straight" / "history.csv").read_text() == (project / TARGET / "history.csv").read_text()


# ---------------------------------------------------------------- Snakemake's incomplete marker

# A job killed after it wrote part of its outputs: Snakemake marks them incomplete.
SNAKEFILE_SLOW_JOB = """
rule all:
    input: "out/a.txt"
rule slow:
    output: "out/a.txt", "out/b.txt"
    shell: "echo half > out/a.txt; echo started > started.txt; sleep 300; echo done > out/b.txt"
"""


@pytest.mark.slow
def test_default_profile_reruns_an_incomplete_job(tmp_path: Path) -> None:
    """The case atomic writes cannot cover: a job killed with some outputs written. Without rerun-incomplete
    the next run refuses; with profiles/default it reruns the job."""
    (tmp_path / "Snakefile").write_text(SNAKEFILE_SLOW_JOB)
    copy_profiles(tmp_path)
    proc = subprocess.Popen(
        ["snakemake", "--cores", "1"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: (tmp_path / "started.txt").exists(), 120, "the job to start")
        kill_tree(proc, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        kill_tree(proc)
    assert (tmp_path / "out" / "a.txt").exists()
    run(["snakemake", "--unlock"], tmp_path)
    (tmp_path / "Snakefile").write_text(SNAKEFILE_SLOW_JOB.replace("sleep 300", "true"))
    bare = run(["snakemake", "--cores", "1", "--workflow-profile", "none"], tmp_path, check=False)
    assert bare.returncode != 0 and "incomplete" in (bare.stdout + bare.stderr).lower()
    again = run(["snakemake", "--cores", "1"], tmp_path)
    assert "Using workflow specific profile profiles/default" in again.stdout + again.stderr
    assert (tmp_path / "out" / "b.txt").read_text() == "done\n"
