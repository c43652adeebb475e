"""GPUs for the pipeline: how many this machine offers, how many a training job takes, which one it uses.

Snakemake only limits `resources: gpu` when a global amount is given, so the workflow registers the
number found here times train.runs_per_gpu (unless `--resources gpu=N` was passed): `snakemake
--cores 8` then runs at most that many trainings at once, each GPU shared by runs_per_gpu of them
(`resources: gpu` counts training slots). Snakemake does not say WHICH GPU a job should use, so with
several GPUs visible a training job claims a free slot itself (`claim_cuda_device`, an flock per
slot), on the least busy GPU.

Counting uses `nvidia-smi -L` (no torch import while Snakemake parses the workflow) and respects
CUDA_VISIBLE_DEVICES as CUDA does: an empty value or an invalid entry hides the devices from there on.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

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


@dataclass
class GpuClaim:
    """An exclusive claim on one GPU, held until release() or the end of the process."""

    index: int
    path: Path
    _fd: int | None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


_held: list[GpuClaim] = []


def default_lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / "cnnrepro-gpus"


def claim_slot(gpu_ids: Sequence[str], lock_dir: Path | None = None, slots_per_gpu: int = 1) -> GpuClaim | None:
    """A GPU in `gpu_ids` (stable ids, e.g. UUIDs) with one of its `slots_per_gpu` slots unclaimed by any
    other process, the least busy first (slot 0 of every GPU, then slot 1, ...); None if all are taken.

    The lock files live on the local disk (the temporary directory): GPUs belong to one host.
    """
    lock_dir = lock_dir or default_lock_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        lock_dir.chmod(0o1777)  # shared by every user's jobs, like /tmp itself
    candidates = [
        (slot, index, gpu_id) for slot in range(max(1, slots_per_gpu)) for index, gpu_id in enumerate(gpu_ids)
    ]
    for slot, index, gpu_id in candidates:
        name = "".join(c if c.isalnum() or c in "-_" else "_" for c in gpu_id)
        # Slot 0 keeps the one-run-per-GPU file name.
        path = lock_dir / (f"{name}.lock" if slot == 0 else f"{name}.slot{slot}.lock")
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                continue
            raise
        return GpuClaim(index, path, fd)
    return None


def claim_cuda_device(runs_per_gpu: int = 1) -> int | None:
    """With several GPUs visible, make one with a free slot (of `runs_per_gpu`) torch's current device for
    the rest of this process.

    Returns its index; None with one GPU or none (nothing to choose), or when every slot is claimed
    (more jobs than slots were asked for with --resources gpu=N: they share the current device).
    """
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return None
    if _held:  # one GPU per process, however many times the device is resolved
        return _held[0].index
    ids = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        ids.append(str(getattr(props, "uuid", "") or f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'all')}-{index}"))
    claim = claim_slot(ids, slots_per_gpu=runs_per_gpu)
    if claim is None:
        print(f"all {len(ids)} GPUs are claimed by other cnnrepro jobs; sharing GPU {torch.cuda.current_device()}")
        return None
    _held.append(claim)
    torch.cuda.set_device(claim.index)
    return claim.index
