"""GPU-aware parallelism and the Snakemake profiles: GPU counting, one GPU per training job and a global
limit of as many as are visible, torch honouring Snakemake's thread count, the default workflow profile,
and the SLURM profile validated by a dry run (what a dry run cannot validate: the sbatch calls themselves).
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from cnnrepro.orchestration import gpu_slots as gpus
from cnnrepro.orchestration.stages import training_rules
from cnnrepro.train.engine.gpu_claim import claim_slot

from .conftest import PROJECT_ROOT
from .helpers_faults import dry_run_resources, fake_gpu_bin, project_with_profiles, set_params, with_path
from .pipeline_project import run

TRAINING = "runs/torch/lenet/seed0/metrics.json"


# ---------------------------------------------------------------- counting and claiming GPUs


def test_count_visible_reads_nvidia_smi_and_cuda_visible_devices(tmp_path: Path) -> None:
    tool = str(fake_gpu_bin(tmp_path / "two", 2) / "nvidia-smi")
    assert gpus.physical_gpus(tool) == 2  # the MIG line under GPU 0 is not a third GPU
    assert gpus.count_visible({}, tool) == 2
    assert gpus.count_visible({"CUDA_VISIBLE_DEVICES": "1"}, tool) == 1
    assert gpus.count_visible({"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, tool) == 2  # no more than exist
    assert gpus.count_visible({"CUDA_VISIBLE_DEVICES": ""}, tool) == 0
    assert gpus.count_visible({"CUDA_VISIBLE_DEVICES": "0,-1,1"}, tool) == 1  # CUDA stops at an invalid entry
    assert gpus.count_visible({}, str(fake_gpu_bin(tmp_path / "none", 0) / "nvidia-smi")) == 0
    assert gpus.count_visible({}, str(tmp_path / "missing" / "nvidia-smi")) == 0
    broken = tmp_path / "broken" / "nvidia-smi"
    broken.parent.mkdir()
    broken.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    broken.chmod(0o755)
    assert gpus.count_visible({}, str(broken)) == 0


@pytest.mark.parametrize(
    ("device", "n_gpus", "expected"),
    [("auto", 1, 1), ("auto", 0, 0), ("cuda", 4, 1), ("cuda:1", 2, 1), ("cpu", 2, 0), ("mps", 2, 0)],
)
def test_gpus_per_training_job(device: str, n_gpus: int, expected: int) -> None:
    assert gpus.gpus_per_training_job(device, n_gpus) == expected


def test_each_claimer_gets_its_own_gpu_until_all_are_taken(tmp_path: Path) -> None:
    ids = ["GPU-aaaa", "GPU-bbbb"]
    first = claim_slot(ids, tmp_path)
    second = claim_slot(ids, tmp_path)
    assert (first.index, second.index) == (0, 1)
    assert claim_slot(ids, tmp_path) is None  # more jobs than GPUs: asked for with --resources gpu=N
    first.release()
    again = claim_slot(ids, tmp_path)
    assert again.index == 0
    # A claim held by another process counts too, and dies with it.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_CLAIM, str(tmp_path), *ids], stdout=subprocess.PIPE, text=True
    )
    try:
        second.release()
        again.release()
        assert holder.stdout.readline().strip() == "0"
        assert claim_slot(ids, tmp_path).index == 1
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert claim_slot(ids, tmp_path).index == 0


def test_runs_per_gpu_slots_fill_the_least_busy_gpu_first(tmp_path: Path) -> None:
    ids = ["GPU-aaaa", "GPU-bbbb"]
    claims = [claim_slot(ids, tmp_path, slots_per_gpu=2) for _ in range(4)]
    assert [c.index for c in claims] == [0, 1, 0, 1]  # one each, then a second each
    assert claim_slot(ids, tmp_path, slots_per_gpu=2) is None
    claims[1].release()
    assert claim_slot(ids, tmp_path, slots_per_gpu=2).index == 1
    assert gpus.training_slots(2, 4) == 8 and gpus.training_slots(0, 4) == 0


HOLD_CLAIM = """
import sys, time
from pathlib import Path
from cnnrepro.train.engine.gpu_claim import claim_slot
claim = claim_slot(sys.argv[2:], Path(sys.argv[1]))
print(claim.index, flush=True)
time.sleep(300)
"""


# ---------------------------------------------------------------- the workflow's resources


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return project_with_profiles(tmp_path_factory.mktemp("cluster"))


def _train_resources(output: str) -> dict[str, str]:
    jobs = dry_run_resources(output)
    assert TRAINING in jobs, f"no {TRAINING} job in the dry run:\n{output}"
    return jobs[TRAINING]


def test_one_gpu_per_training_only_where_a_gpu_will_be_used(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpu_only = run(["snakemake", "-n", "--cores", "8", TRAINING], project)
    assert "Using workflow specific profile profiles/default" in cpu_only.stdout + cpu_only.stderr
    assert _train_resources(cpu_only.stdout)["gpu"] == "0"
    assert _train_resources(cpu_only.stdout)["mem_mb"] == "3000"

    monkeypatch.setenv("PATH", with_path(fake_gpu_bin(tmp_path / "bin", 1)))
    with_gpu = run(["snakemake", "-n", "--cores", "8", TRAINING], project)
    assert _train_resources(with_gpu.stdout)["gpu"] == "1"
    # (train.device cpu leaves the GPU free: test_gpus_per_training_job.)


REPORT_THREADS = "import os, torch; print(torch.get_num_threads(), os.environ['OMP_NUM_THREADS'])"
SNAKEFILE_THREADS = """
rule one:
    output: "one.txt"
    threads: 1
    shell: "{python} -c \\"{code}\\" > {{output}}"
"""


def test_jobs_get_their_threads_and_torch_honours_them(tmp_path: Path) -> None:
    """Snakemake exports OMP_NUM_THREADS=threads; torch takes it as its thread count, so CPU trainings
    running side by side split the cores (4 threads each, scaled down to --cores) instead of each taking all."""
    (tmp_path / "Snakefile").write_text(SNAKEFILE_THREADS.format(python=sys.executable, code=REPORT_THREADS))
    run(["snakemake", "--cores", "2"], tmp_path)
    # torch's own default here would be every core (2 or more): 1 can only come from OMP_NUM_THREADS.
    assert (tmp_path / "one.txt").read_text().split() == ["1", "1"]


def test_default_profile_settings() -> None:
    profile = yaml.safe_load((PROJECT_ROOT / "profiles" / "default" / "config.yaml").read_text())
    assert profile == {
        "rerun-incomplete": True,
        "show-failed-logs": True,
        "printshellcmds": True,
        "max-checksum-file-size": "256MB",
    }


# ---------------------------------------------------------------- SLURM


def test_slurm_profile_dry_run(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The profile parses, the plugin loads, every training asks for one GPU and the rest for none.

    A dry run submits nothing: sbatch and sacct (fakes here that record any call) are never run, so the
    sbatch command lines and the cluster's acceptance of them are NOT validated by this test.
    """
    assert metadata.version("snakemake-executor-plugin-slurm")
    calls = tmp_path / "slurm-calls.txt"
    bin_dir = tmp_path / "slurm-bin"
    bin_dir.mkdir()
    for tool in ("sbatch", "sacct", "squeue", "sinfo", "scancel"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\nexit 1\n')
        script.chmod(0o755)
    monkeypatch.setenv("PATH", with_path(bin_dir))
    result = run(["snakemake", "--profile", "profiles/slurm", "-n"], project)
    output = result.stdout + result.stderr
    assert "This was a dry-run" in output
    jobs = dry_run_resources(result.stdout)
    trainings = {path: res for path, res in jobs.items() if path.startswith("runs/")}
    assert TRAINING in trainings and len(trainings) >= 5
    for path, resources in trainings.items():
        assert resources["gpu"] == "1", path  # not clamped by the submit host's 0 GPUs
        # No cpus_per_gpu/cpus_per_task: the plugin then asks --cpus-per-task = the rule's threads, the
        # OMP_NUM_THREADS the job runs with (tests/test_slurm_cluster.py checks both on a real cluster).
        assert not {"cpus_per_gpu", "cpus_per_task"} & resources.keys(), path
        assert int(resources["runtime"]) >= 60, path
    others = {path: res for path, res in jobs.items() if not path.startswith("runs/")}
    assert others and all(res.get("gpu", "0") == "0" for res in others.values())
    assert all(res["mem_mb"] == "4000" for path, res in others.items() if path.startswith("data/raw")), others
    assert not calls.exists(), calls.read_text()


def test_slurm_profile_names_the_plugin_settings() -> None:
    profile = yaml.safe_load((PROJECT_ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert profile["jobs"] >= 1
    groups = ("pets", "pets_fine_tuning", "idx", "keras_example")
    trainings = {f"{kind}_{group}" for kind in ("train", "ablate") for group in groups}
    assert set(profile["set-resources"]) == trainings
    assert all(profile["set-resources"][rule]["gpu"] == 1 for rule in trainings)
    # Every rule named in the profile exists in the workflow (the training rules are written per data group).
    assert trainings == set(training_rules("train")) | set(training_rules("ablate"))


# ---------------------------------------------------------------- the limit, in a real run


def _max_concurrent(output: str, rule: str) -> int:
    """Most jobs of `rule` running at once, from Snakemake's job start / "Finished jobid" lines."""
    running: set[str] = set()
    most = 0
    starting = False
    for line in output.splitlines():
        if re.match(rf"^(local)?rule {rule}:$", line):
            starting = True
        elif starting and (m := re.match(r"^\s+jobid: (\d+)$", line)):
            running.add(m.group(1))
            most = max(most, len(running))
            starting = False
        elif m := re.match(r"^Finished jobid: (\d+)", line):
            running.discard(m.group(1))
    return most


@pytest.mark.slow
def test_trainings_share_one_gpu_up_to_runs_per_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--cores 8` could start both 4-thread trainings at once. With one GPU visible: runs_per_gpu 1 makes
    them take turns; the shipped default (several per GPU) runs them side by side on it."""
    project = project_with_profiles(tmp_path)
    set_params(
        project,
        lambda p: p["train"].update(
            variants={"pets": [], "pets_fine_tuning": [], "idx": ["lenet", "mnist_dense"], "keras_example": []},
            runs_per_gpu=1,
        ),
    )
    targets = ["runs/torch/lenet/seed0/metrics.json", "runs/torch/mnist_dense/seed0/metrics.json"]
    run(["snakemake", "--cores", "2", "data/prepared/mnist.npz", "data/prepared/fashion_mnist.npz"], project)
    monkeypatch.setenv("PATH", with_path(fake_gpu_bin(tmp_path / "bin", 1)))
    # No CUDA in this torch: the jobs train on the CPU, but Snakemake schedules them as GPU jobs.
    result = run(["snakemake", "--cores", "8", *targets], project)
    output = result.stdout + result.stderr
    assert re.search(r"Provided resources: .*gpu\D+1\b", output), output
    assert output.count("resources: tmpdir=/tmp, gpu=1") == 2
    assert _max_concurrent(output, "train_idx") == 1
    # The shipped runs_per_gpu: two trainings at once on the one GPU.
    shipped = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["train"]["runs_per_gpu"]
    assert shipped >= 2
    set_params(project, lambda p: p["train"].update(runs_per_gpu=shipped))
    shared = run(["snakemake", "--cores", "8", "--forcerun", "train_idx", *targets], project)
    output = shared.stdout + shared.stderr
    assert re.search(rf"Provided resources: .*gpu\D+{shipped}\b", output), output
    assert _max_concurrent(output, "train_idx") == 2
    # Asked for explicitly, the limit is the user's: one at a time again.
    forced = run(["snakemake", "--cores", "8", "--resources", "gpu=1", "--forcerun", "train_idx", *targets], project)
    assert _max_concurrent(forced.stdout + forced.stderr, "train_idx") == 1
