"""GPUs for the pipeline: how many this machine offers and how many a training job takes.

Snakemake only limits `resources: gpu` when a global amount is given, so the workflow registers the
number found here times train.runs_per_gpu (unless `--resources gpu=N` was passed): `snakemake
--cores 8` then runs at most that many trainings at once, each GPU shared by runs_per_gpu of them
(`resources: gpu` counts training slots). Which GPU a job then uses is the job's own claim
(cnnrepro.train.engine.gpu_claim).

Counting uses `nvidia-smi -L` (no torch import while Snakemake parses the workflow) and respects
CUDA_VISIBLE_DEVICES as CUDA does: an empty value or an invalid entry hides the devices from there on.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping

NVIDIA_SMI_TIMEOUT_S = 20
# Devices a training job can put on an NVIDIA GPU; "cpu" and "mps" never take one.
GPU_DEVICES = ("auto", "cuda")


def physical_gpus(nvidia_smi: str = "nvidia-smi") -> int:
    """GPUs `nvidia-smi -L` lists (MIG slices, listed indented under their GPU, are not counted);
    0 when the tool is missing, fails or hangs."""
    try:
        result = subprocess.run(
            [nvidia_smi, "-L"], capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return 0
    if result.returncode != 0:
        return 0
    return sum(1 for line in result.stdout.splitlines() if line.startswith("GPU "))


def _visible_entries(value: str) -> int:
    """How many devices a CUDA_VISIBLE_DEVICES value exposes: entries up to the first invalid one."""
    count = 0
    for entry in value.split(","):
        entry = entry.strip()
        if not entry or entry.startswith("-") or entry.lower() == "nodevfiles":
            break
        count += 1
    return count


def count_visible(env: Mapping[str, str] | None = None, nvidia_smi: str = "nvidia-smi") -> int:
    """NVIDIA GPUs a job started from here can use."""
    env = os.environ if env is None else env
    found = physical_gpus(nvidia_smi)
    if found and "CUDA_VISIBLE_DEVICES" in env:
        return min(found, _visible_entries(env["CUDA_VISIBLE_DEVICES"]))
    return found


def training_slots(n_gpus: int, runs_per_gpu: int) -> int:
    """The global `gpu` limit of a local run: trainings that may run at once on the visible GPUs."""
    return n_gpus * max(1, runs_per_gpu)


def gpus_per_training_job(device: str, n_gpus: int) -> int:
    """1 when a training job will run on an NVIDIA GPU (params train.device auto/cuda and GPUs present), else 0."""
    kind = device.split(":", 1)[0]
    return 1 if kind in GPU_DEVICES and n_gpus > 0 else 0


# --- which GPU a job uses ------------------------------------------------------------------------
