"""The SLURM profile for real: a one-node SLURM cluster (scripts/slurm-cluster.sh) and an MLflow tracking
server (scripts/mlflow-server.sh), a small slice of the pipeline (the MNIST data stages from the mirror, three
short trainings, the report) run by `snakemake --profile profiles/slurm`, every job through sbatch; then one
training cancelled with scancel mid-epoch, which the profile's retry resubmits and which resumes.

Needs root and Debian's packages (apt-get install slurm-wlm slurmdbd munge mariadb-server); skipped, with
the reason, without them. The jobs get the environment a user's would: no PYTEST_CURRENT_TEST (under which
MLflow turns its telemetry off by itself, which hid a race that killed a training under the server).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pytest
from mlflow.tracking import MlflowClient

from cnnrepro.tracking.pipeline import TAG_KIND
from cnnrepro.tracking.tracked_run import PARENT_RUN_ENV, PARENT_TAG
from cnnrepro.train.cli import TAG_RESUMED_AFTER, TAG_RESUMED_FROM

from .conftest import PROJECT_ROOT
from .helpers_data import make_petimages_zip
from .helpers_faults import set_params, wait_for
from .pipeline_project import ARCHIVE, make_project, tiny_params

SCRIPTS = PROJECT_ROOT / "scripts"
MIRROR = PROJECT_ROOT.parent / "shared" / "datasets"  # params.yaml's data.mirror, ../shared/datasets
VARIANTS = ["mnist_convnet", "mnist_dense", "lenet"]
SHORT = {"epochs": 3, "steps_per_epoch": 20, "validation_steps": 5, "batch_size": 64}
# lenet again, with epochs long enough (seconds) to land a scancel inside one.
LONG = {"epochs": 4, "steps_per_epoch": 300, "validation_steps": 5, "batch_size": 64}
# This node has 2 CPUs: one thread per training (--cpus-per-task follows), and status checks every few
# seconds instead of the plugin's 40 s, for a test. Everything else is the profile as shipped.
SNAKEMAKE = [
    "snakemake", "--profile", "profiles/slurm", "--set-threads", "train_idx=1",
    "--slurm-init-seconds-before-status-checks", "5",
]  # fmt: skip
SACCT_FIELDS = "JobID,Comment,State,Elapsed,AllocCPUS,AllocTRES"
SACCT_SHOWN = "JobID,Comment%48,State%16,Elapsed,AllocCPUS,AllocTRES%46"
NEEDED = ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "sbatch", "sacct", "scancel")
EXPECTED_JOBS = Counter(
    {"download": 3, "clean": 1, "split": 1, "prepare_mnist": 2, "train_idx": 3, "visualize": 1, "report": 1}
)


def _script(name: str, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([str(SCRIPTS / name), *args], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, f"{name} {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    return result.stdout.strip()


@pytest.fixture(scope="module")
def cluster() -> Any:
    if os.geteuid() != 0:
        pytest.skip("a SLURM cluster here needs root (slurmd runs jobs as their submitter; SlurmUser=root)")
    missing = [tool for tool in NEEDED if shutil.which(tool) is None]
    if missing:
        pytest.skip(
            f"SLURM not installed ({', '.join(missing)}): apt-get install slurm-wlm slurmdbd munge mariadb-server"
        )
    if not (MIRROR / "mnist").is_dir():
        pytest.skip(f"no MNIST mirror at {MIRROR}")
    was_up = subprocess.run([str(SCRIPTS / "slurm-cluster.sh"), "status"], capture_output=True).returncode == 0
    _script("slurm-cluster.sh", "start")
    yield
    if not was_up:
        _script("slurm-cluster.sh", "stop")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = os.environ | {
        "CNNREPRO_MLFLOW_DIR": str(tmp_path_factory.mktemp("server")),
        "CNNREPRO_MLFLOW_PORT": str(port),
    }
    url = _script("mlflow-server.sh", "start", env=env)
    yield url
    _script("mlflow-server.sh", "stop", env=env)


def _user_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "MLFLOW_DISABLE_TELEMETRY")}
    for name in ("CNNREPRO_PARENT_RUN_ID", "CNNREPRO_DATA_MIRROR", "MLFLOW_TRACKING_URI", "CNNREPRO_IDX_PINS"):
        env.pop(name, None)
    return env | {"CNNREPRO_TRACKING_URI": url}


def _sacct(*args: str) -> list[dict[str, str]]:
    out = subprocess.run(
        ["sacct", "-X", "-P", "-o", SACCT_FIELDS, *args],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    header, *rows = out.splitlines()
    return [dict(zip(header.split("|"), row.split("|"), strict=True)) for row in rows]


def _show_sacct(title: str, *args: str) -> None:
    """What the closing note quotes: sacct's own listing (pytest -s shows it)."""
    listing = subprocess.run(["sacct", "-X", "-o", SACCT_SHOWN, *args], capture_output=True, text=True).stdout
    print(f"\n--- {title}\n$ sacct -X -o {SACCT_SHOWN} {' '.join(args)}\n{listing}")


def _run_id(output: str) -> str:
    match = re.search(r"SLURM run ID: ([0-9a-f-]{36})", output)
    assert match, output[-3000:]
    return match.group(1)


def _runs(url: str) -> list[Any]:
    client = MlflowClient(url)
    experiment = client.get_experiment_by_name("cnnrepro")
    return client.search_runs([experiment.experiment_id], max_results=1000)


@pytest.fixture(scope="module")
def first_run(cluster: None, server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The slice, once: a tiny PetImages archive (the report reads its cleaning summary) beside the real
    MNIST and Fashion-MNIST of the mirror."""
    tmp = tmp_path_factory.mktemp("slurm")
    mirror = tmp / "mirror"
    make_petimages_zip(mirror / "petimages" / ARCHIVE, n_per_class=14)
    for name in ("mnist", "fashion-mnist"):
        (mirror / name).symlink_to(MIRROR / name)
    params = tiny_params(mirror)
    params["train"]["seeds"] = [0]
    params["train"]["variants"] = {"pets": [], "pets_fine_tuning": [], "idx": VARIANTS, "keras_example": []}
    params["train"]["overrides"] = {variant: dict(SHORT) for variant in VARIANTS}
    project = make_project(tmp, params)
    t0 = time.monotonic()
    result = subprocess.run(SNAKEMAKE, cwd=project, capture_output=True, text=True, timeout=1800, env=_user_env(server))
    elapsed = time.monotonic() - t0
    output = result.stdout + result.stderr
    (tmp / "snakemake-1.log").write_text(output)
    assert result.returncode == 0, output[-6000:]
    print(f"\n--- the slice under SLURM took {elapsed:.0f} s (snakemake start to end)")
    return {"project": project, "output": output, "run_id": _run_id(output), "elapsed": elapsed}


def test_telemetry_is_off_in_the_jobs_unless_the_user_set_it() -> None:
    """MLflow's telemetry thread deletes _MLFLOW_TELEMETRY_SESSION_ID from os.environ when its config fetch
    fails (no internet) while requests iterates os.environ: KeyError in a training logging to a server."""
    code = "import cnnrepro, os, mlflow; from mlflow.telemetry.client import get_telemetry_client as g; "
    code += "print(os.environ['MLFLOW_DISABLE_TELEMETRY'], g() is None)"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "MLFLOW_DISABLE_TELEMETRY")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["true", "True"]
    env["MLFLOW_DISABLE_TELEMETRY"] = "false"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split()[0] == "false"


@pytest.mark.slow
def test_slice_runs_job_by_job_under_slurm_and_logs_to_the_server(first_run: dict[str, Any], server: str) -> None:
    project, output = first_run["project"], first_run["output"]
    # Every job went through sbatch: none ran on the submit host (only the target rule `all` is local).
    assert not [line for line in output.splitlines() if line.startswith("localrule") and line != "localrule all:"]
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", output)
    jobs = _sacct("--name", first_run["run_id"])
    _show_sacct("the slice's jobs", "--name", first_run["run_id"])
    assert sorted(job["JobID"] for job in jobs) == sorted(submitted)
    assert Counter(job["Comment"].split("_wildcards_")[0].removeprefix("rule_") for job in jobs) == EXPECTED_JOBS
    assert all(job["State"] == "COMPLETED" for job in jobs), jobs
    for job in jobs:
        training = job["Comment"].startswith("rule_train_idx")
        assert ("gres/gpu=1" in job["AllocTRES"]) == training, job  # the profile's GPU, for trainings only
        assert job["AllocCPUS"] == "1", job  # = threads (--set-threads train_idx=1; other rules 1)
    assert (project / "reports" / "comparison.md").exists()
    assert (project / "data" / "prepared" / "mnist.npz").exists()

    # One parent run for the invocation, one child per training, all through the server.
    runs = _runs(server)
    (parent,) = [r for r in runs if r.data.tags.get(TAG_KIND) == "pipeline"]
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get(PARENT_TAG) == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == sorted(f"torch/{v}/seed0" for v in VARIANTS)
    assert all(r.info.status == "FINISHED" and "test_accuracy" in r.data.metrics for r in children)
    assert all(MlflowClient(server).list_artifacts(r.info.run_id) for r in children)
    print(f"--- MLflow at {server}: parent {parent.info.run_id} ({parent.info.status})")
    for r in sorted(children, key=lambda r: r.info.run_name):
        accuracy = r.data.metrics["test_accuracy"]
        print(f"    child {r.info.run_id} {r.info.run_name} {r.info.status} test_accuracy={accuracy}")


def _trainer(project: Path, variant: str) -> psutil.Process | None:
    for process in psutil.process_iter(["cmdline", "cwd"]):
        args = process.info["cmdline"] or []
        # [python, .../bin/cnnrepro, train, ...]; the job's `bash -c "... cnnrepro train ..."` has one string.
        console = any(arg.endswith("/cnnrepro") for arg in args[:2])
        if console and process.info["cwd"] == str(project) and "train" in args and variant in args:
            return process
    return None


def _slurm_job(comment: str) -> str | None:
    out = subprocess.run(["squeue", "-h", "-o", "%i|%k"], capture_output=True, text=True).stdout
    return next((line.split("|")[0] for line in out.splitlines() if line.endswith(f"|{comment}")), None)


@pytest.mark.slow
def test_scancel_mid_epoch_then_the_retry_resumes(first_run: dict[str, Any], server: str) -> None:
    project = first_run["project"]
    set_params(project, lambda p: p["train"]["overrides"].update(lenet=dict(LONG)))
    for stale in ("checkpoints/torch/lenet/seed0", "logs/train/torch/lenet"):
        shutil.rmtree(project / stale, ignore_errors=True)
    train_log = project / "logs" / "train" / "torch" / "lenet" / "seed0.log"
    checkpoint = project / "checkpoints" / "torch" / "lenet" / "seed0" / "last.safetensors"
    log = project.parent / "snakemake-2.log"
    t0 = time.monotonic()
    with log.open("w") as sink:
        # The report is up to date, so a missing run alone would not be rebuilt: force that job (and so the report).
        command = [*SNAKEMAKE, "--forcerun", "runs/torch/lenet/seed0/metrics.json"]
        proc = subprocess.Popen(command, cwd=project, stdout=sink, stderr=subprocess.STDOUT, env=_user_env(server))
    try:
        trainer = wait_for(lambda: _trainer(project, "lenet"), 600, "the lenet training to start", 0.5, proc, log)
        job = _slurm_job("rule_train_idx_wildcards_torch_lenet_0")
        # The environment the job sees: its allocation, the threads, the server, the parent run, the venv.
        env = trainer.environ()
        assert env["SLURM_JOB_ID"] == job and env["SLURM_CPUS_PER_TASK"] == "1" and env["OMP_NUM_THREADS"] == "1"
        assert env["CNNREPRO_TRACKING_URI"] == server
        assert env["CUDA_VISIBLE_DEVICES"] in ("0", "1")  # SLURM bound one of the node's (fake) GPUs
        assert str(Path(sys.executable).parent) in env["PATH"].split(os.pathsep)
        parent_id = env[PARENT_RUN_ENV]
        wait_for(lambda: checkpoint.exists() and "epoch 2/" in train_log.read_text(), 600, "epoch 2", 0.1, proc, log)
        time.sleep(1.0)
        subprocess.run(["scancel", job], check=True)
        assert proc.wait(timeout=1800) == 0, log.read_text()[-6000:]
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=120)
    elapsed = time.monotonic() - t0
    output = log.read_text()

    jobs = _sacct("--name", _run_id(output))
    _show_sacct("the rerun: lenet cancelled, then resubmitted by the retry", "--name", _run_id(output))
    lenet = [j for j in jobs if j["Comment"] == "rule_train_idx_wildcards_torch_lenet_0"]
    assert len(lenet) == 2 and lenet[0]["JobID"] == job, jobs
    assert lenet[0]["State"].startswith("CANCELLED") and lenet[1]["State"] == "COMPLETED", lenet
    match = re.search(r"resuming from checkpoints/torch/lenet/seed0/last\.pt after epoch (\d+)", train_log.read_text())
    assert match, train_log.read_text()
    after = int(match.group(1))
    assert 2 <= after < LONG["epochs"]
    assert len((project / "runs/torch/lenet/seed0/history.csv").read_text().strip().splitlines()) == 1 + LONG["epochs"]
    assert "lenet" in (project / "reports" / "comparison.md").read_text()

    runs = {r.info.run_id: r for r in _runs(server)}
    parent = runs[parent_id]
    assert parent.info.status == "FINISHED" and parent.data.tags[TAG_KIND] == "pipeline"
    children = [r for r in runs.values() if r.data.tags.get(PARENT_TAG) == parent_id]
    assert sorted(r.info.run_name for r in children) == ["torch/lenet/seed0"] * 2  # killed + resumed, nothing else
    (resumed,) = [r for r in children if TAG_RESUMED_FROM in r.data.tags]
    killed = runs[resumed.data.tags[TAG_RESUMED_FROM]]
    assert killed.data.tags.get(PARENT_TAG) == parent_id and killed.info.status in (
        "KILLED",
        "FAILED",
    )  # SIGTERM: KILLED; SIGKILL: FAILED
    assert resumed.info.status == "FINISHED" and resumed.data.tags[TAG_RESUMED_AFTER] == str(after)
    assert not [r for r in runs.values() if r.info.status == "RUNNING"]
    print(f"--- scancel {job} after epoch {after} checkpointed; retry resumed; rerun took {elapsed:.0f} s")
    print(f"    parent {parent_id} FINISHED: killed {killed.info.run_id} {killed.info.status}, ")
    print(f"    resumed {resumed.info.run_id} FINISHED ({TAG_RESUMED_FROM}={killed.info.run_id}, after epoch {after})")
