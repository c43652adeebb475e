"""The device a PyTorch run uses, from params train.device (or a command's --device): auto = CUDA when
present, else the CPU; with several GPUs visible, a free slot of one is claimed for the process
(cnnrepro.train.engine.gpu_claim) and made torch's current device."""

from __future__ import annotations

import os

import torch

from cnnrepro.errors import CnnreproError
from cnnrepro.train.engine.gpu_claim import GpuClaim, claim_slot

_held: list[GpuClaim] = []


def resolve_device(name: str, runs_per_gpu: int = 1, source: str = "params.yaml: train.device") -> torch.device:
    """torch.device of `name`; `source` is what an error names (the params key or the command's flag)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise CnnreproError(f"{source}: {name!r} is not a device (auto, cpu, cuda[:N], mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CnnreproError(f"{source} is {name!r} but CUDA is not available here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CnnreproError(f"{source} is {name!r} but MPS is not available here")
    if device.type == "cuda" and device.index is None:
        # Several GPUs and parallel jobs: each takes a free one as its current device ("cuda" stays "cuda").
        claim_cuda_device(runs_per_gpu)
    return device


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
