"""Which GPU a training job uses: with several visible, the job claims a free slot itself (an flock per
slot, `claim_slot`), on the least busy GPU, and keeps it for the rest of the process (each backend turns
the claim into its framework's current device). Snakemake counts the slots
(cnnrepro.orchestration.gpu_slots) but does not say WHICH GPU a job should use.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


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
