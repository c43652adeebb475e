"""Per-epoch checkpoints: enough state to continue a killed run to the same result.

checkpoints/<framework>/<variant>/seed<S>/last.pt holds the model, the optimizer, every RNG
(python, numpy, torch CPU and CUDA, the augmentation generator), the data iterators' positions,
the epoch, the history, and the hash of the resolved config. A rerun resumes from it only when the
hash matches, and it is removed once the run has written its outputs.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnrepro.fsutil import atomic_path, write_file

# Settings that may differ between the killed run and its continuation without changing what it
# computes: epochs (a longer run continues a shorter one's exact trajectory) and where outputs go.
# The image cache's location never changes a decoded pixel.
# How often and how a checkpoint is written never changes what is trained.
HASH_EXCLUDED = (
    "epochs",
    "out_dir",
    "overrides",
    "documented_settings",
    "image_cache",
    "checkpoint_every",
    "checkpoint_in_background",
)
# Options added after checkpoints were written: at these values they hash as if absent, so a run
# checkpointed before they existed still resumes; switched on, they change the arithmetic and the hash.
HASH_ABSENT_AT = {"channels_last": False, "compile": False, "fast_step": False}


def checkpoint_path(root: str | Path, framework: str, variant: str, seed: int) -> Path:
    return Path(root) / framework / variant / f"seed{seed}" / "last.pt"


def config_hash(config: Mapping[str, Any]) -> str:
    kept = {
        k: v
        for k, v in config.items()
        if k not in HASH_EXCLUDED and not (k in HASH_ABSENT_AT and v == HASH_ABSENT_AT[k])
    }
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def rng_states() -> dict[str, Any]:
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Mapping[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically: a kill during the write leaves the previous epoch's checkpoint intact.

    Serialized in memory first, then written by Python: torch's own file writer reports a full disk
    as "unexpected pos" with no errno and no path; this way it is WriteError naming `path` and the cause.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_path(path) as tmp:
        write_file(tmp, buffer.getbuffer())


def load_checkpoint(path: str | Path, expected_hash: str) -> dict[str, Any] | None:
    """The checkpoint's state if it exists and was made with the same config; None otherwise."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        # Our own file, holding numpy RNG state and iterator arrays: not loadable with weights_only.
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a corrupt checkpoint is ignored, not fatal
        print(f"checkpoint {path} unreadable ({type(exc).__name__}); starting from scratch")
        return None
    if not isinstance(state, dict) or state.get("config_hash") != expected_hash:
        print(f"checkpoint {path} belongs to a different config; starting from scratch")
        return None
    return state


def remove_checkpoint(path: str | Path) -> None:
    path = Path(path)
    path.unlink(missing_ok=True)
    for parent in list(path.parents)[:3]:
        try:
            parent.rmdir()  # only when empty
        except OSError:
            break


def announce_resume(
    path: str | Path,
    epoch: int,
    owner: dict[str, Any],
    history: Sequence[dict[str, float]],
    hooks: Iterable[Callable[[dict[str, float]], None]],
    on_resume: Callable[[dict[str, Any], int], None] | None,
) -> None:
    """What a resumed run does before its next epoch, in either framework: one line, on_resume(owner, epoch)
    (the command links the killed MLflow run), and every restored epoch through the hooks once, so the
    MLflow curves are complete."""
    print(f"resuming from {path} after epoch {epoch}", flush=True)
    if on_resume is not None:
        on_resume(owner, epoch)
    hooks = tuple(hooks)
    for row in history:
        for hook in hooks:
            hook(row)
