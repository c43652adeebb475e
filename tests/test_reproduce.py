"""`cnnrepro reproduce`: the plan from Snakemake's real dry run, the estimate, and the progress read from logs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cnnrepro.orchestration.reproduce import plan as planning
from cnnrepro.orchestration.reproduce.progress import format_duration, read_state, read_training
from cnnrepro.train.ablations import planned_runs

from .pipeline_project import make_project, run


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("reproduce"))


def test_the_plan_counts_snakemakes_jobs(project: Path) -> None:
    output = run(["snakemake", "-n", "--cores", "2"], project)
    dry = planning.parse_dry_run(output.stdout + output.stderr)
    params = yaml.safe_load((project / "params.yaml").read_text())
    train = params["train"]
    expected = [v for group in train["variants"].values() for v in group]
    faithful = [job for job in dry.trainings if job.ablation is None]
    assert sorted(job.variant for job in faithful) == sorted(expected * len(train["seeds"]))
    # The ablate_* jobs count as trainings too, each (variant, ablation) once per framework and seed.
    ablated = sorted((job.variant, job.ablation) for job in dry.trainings if job.ablation is not None)
    runs = [(v, a) for _, v, a in planned_runs(params)]
    assert ablated and ablated == sorted(runs * len(train["seeds"]) * len(train["frameworks"]))
    assert {job.framework for job in dry.trainings} == set(train["frameworks"])
    assert dry.jobs_per_rule["download"] == 3 and dry.jobs_per_rule["all"] == 1
    assert f"total {dry.total}" in " ".join((output.stdout + output.stderr).split())


def test_the_plan_screen(project: Path) -> None:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        [sys.executable, "-m", "cnnrepro.cli", "reproduce", "--plan-only", "--no-estimate", "--cores", "3"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "the plan (3 cores" in out
    assert "jobs to run: " in out and "train_idx" in out
    assert "device: CPU only - WARNING" in out
    assert not (project / "logs").exists()  # a plan runs nothing


def test_bad_params_stop_the_plan_in_one_line(project: Path) -> None:
    params = project / "params.yaml"
    original = params.read_text()
    broken = yaml.safe_load(original)
    broken["train"]["seeds"] = "0"
    params.write_text(yaml.safe_dump(broken))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "cnnrepro.cli", "reproduce", "--plan-only"],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        params.write_text(original)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "cnnrepro reproduce: error: params.yaml: train.seeds: '0' is not of type 'array'"
    ]


def test_an_estimate_is_measured_and_grows_with_the_epochs(project: Path) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    device = planning.Device("cpu", "CPU", 1)
    params["train"]["overrides"]["mnist_dense"] = {"epochs": 1, "batch_size": 128}
    one = planning.estimate_run(params, "mnist_dense", device, 1, project)
    params["train"]["overrides"]["mnist_dense"] = {"epochs": 4, "batch_size": 128}
    four = planning.estimate_run(params, "mnist_dense", device, 1, project)
    assert one.seconds_per_run > 0
    assert "1 epochs x 60000 images" in one.how and "4 epochs x 60000 images" in four.how
    assert four.seconds_per_run > 2 * one.seconds_per_run  # four epochs, each timed afresh


def test_parallel_slots() -> None:
    assert planning.parallel_trainings(planning.Device("cpu", "CPU", 2), 2) == 1
    assert planning.parallel_trainings(planning.Device("cpu", "CPU", 16), 16) == 4
    assert planning.parallel_trainings(planning.Device("cuda", "H200", 2), 16) == 2


# Lines as cnnrepro train and Snakemake 9 write them.
SNAKEMAKE_LOG = """\
[Tue Dec  1 16:20:01 2026]
localrule train_idx:
    input: data/prepared/mnist.npz, data/prepared/fashion_mnist.npz, src/cnnrepro/models, src/cnnrepro/training
    output: runs/torch/lenet/seed0/artifacts, runs/torch/lenet/seed0/run_info.json, runs/torch/lenet/seed0/metrics.json
    log: logs/train/torch/lenet/seed0.log
    jobid: 12
7 of 37 steps (19%) done
"""
TRAIN_LOG = """\
resuming from checkpoints/torch/lenet/seed0/checkpoint.pt after epoch 2
epoch 3/10: loss 0.6123 acc 0.7712 val_loss 0.5811 val_acc 0.7844 (61.0 s)
"""


def test_progress_is_read_from_the_logs(tmp_path: Path) -> None:
    (tmp_path / "snakemake.log").write_text(SNAKEMAKE_LOG)
    log = tmp_path / "logs/train/torch/lenet/seed0.log"
    log.parent.mkdir(parents=True)
    log.write_text(TRAIN_LOG)
    state = read_state(tmp_path / "snakemake.log", tmp_path)
    assert (state.steps_done, state.steps_total) == (7, 37)
    assert [t.name for t in state.running] == ["torch/lenet/seed0"]
    training = state.running[0]
    assert (training.epoch, training.epochs, training.val_accuracy) == (3, 10, 0.7844)
    assert "epoch 3/10" in training.line() and "~7 min left" in training.line()
    (tmp_path / "runs/torch/lenet/seed0").mkdir(parents=True)
    (tmp_path / "runs/torch/lenet/seed0/metrics.json").write_text("{}")
    assert read_state(tmp_path / "snakemake.log", tmp_path).running == ()
    assert read_training(tmp_path / "missing.log", "x").line().endswith("starting (data, model)")
    log.write_text(TRAIN_LOG.splitlines()[0] + "\n")
    assert read_training(log, "x").line().endswith("resuming after epoch 2 (data, model)")


def test_durations() -> None:
    assert [format_duration(s) for s in (5, 125, 3 * 3600 + 5 * 60)] == ["5 s", "2 min", "3 h 05 min"]


def test_vgg16_weights_named_in_params_are_found(tmp_path: Path, project: Path) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    weights = tmp_path / "vgg16.h5"
    weights.write_bytes(b"h5")
    params["train"]["vgg16"]["path"] = str(weights)
    assert planning.vgg16_weights_here(params)


@pytest.mark.slow
def test_ctrl_c_then_the_same_command_finishes(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole foreground group, as a terminal sends it) once a training has started:
    one short message, exit 130; the same command again finishes the pipeline."""
    import signal
    import time

    project = make_project(tmp_path)
    env = dict(os.environ, CNNREPRO_IDX_PINS=str(tmp_path / "idx_pins.json"))
    command = [sys.executable, "-m", "cnnrepro.cli", "reproduce", "--no-estimate", "--cores", "1"]
    first = subprocess.Popen(command, cwd=project, env=env, text=True, stdout=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 600
    while not list((project / "logs").glob("train/*/*/*.log")) and time.monotonic() < deadline:
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGINT)
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 130, out
    assert "Run the same command again to resume" in out
    assert "Traceback" not in out and "WorkflowError" not in out
    again = subprocess.run(command, cwd=project, env=env, text=True, capture_output=True, timeout=1800)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "done: reports/comparison.md" in again.stdout
    assert (project / "reports" / "comparison.md").exists()
