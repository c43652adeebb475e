"""PyTorch checkpoints: the training state as the engine's checkpoint file takes it (numpy arrays and plain
values, cnnrepro.train.engine.checkpoint), and back; written every N epochs (train.checkpoint_every), on a
GPU by a background thread while the next epoch trains.

The state is copied to the CPU (tensors cloned) before `save` returns, so the thread writes the
epoch it was given whatever training does next; one write at a time (the next save first waits for
the previous one), each atomic (checkpoint.save_checkpoint), and `close` waits for the last. A kill
during a background write leaves the previous checkpoint, from which the rerun resumes exactly, as
from any checkpoint: only the amount of work redone changes.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnrepro.errors import CnnreproError
from cnnrepro.mappings import JsonObject
from cnnrepro.train.engine import checkpoint as ckpt


def to_numpy(value: Any, *, copy: bool = False) -> Any:
    """`value` with every tensor as a numpy array on the CPU (cloned when `copy`: the training may go on
    changing the tensors while a thread writes them); containers rebuilt, the rest kept."""
    if torch.is_tensor(value):
        tensor = value.detach().to("cpu", copy=copy)
        if tensor.dtype == torch.bfloat16:
            raise CnnreproError("checkpoint state: a bfloat16 tensor has no numpy form (weights are float32)")
        return tensor.numpy()
    if isinstance(value, Mapping):
        return {k: to_numpy(v, copy=copy) for k, v in value.items()}
    if isinstance(value, list | tuple):
        converted = [to_numpy(v, copy=copy) for v in value]
        return converted if isinstance(value, list) else tuple(converted)
    return value


def to_torch(value: Any) -> Any:
    """What to_numpy made, with its arrays as tensors again (the same dtypes and bytes)."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value))
    if isinstance(value, Mapping):
        return {k: to_torch(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        converted = [to_torch(v) for v in value]
        return converted if isinstance(value, list) else tuple(converted)
    return value


def rng_states() -> JsonObject:
    """Every generator a PyTorch run draws from, besides the augmentation's own: Python, numpy, torch, CUDA."""
    states = ckpt.python_numpy_rng_states() | {"torch": torch.get_rng_state().numpy()}
    if torch.cuda.is_available():
        states["cuda"] = [state.numpy() for state in torch.cuda.get_rng_state_all()]
    return states


def set_rng_states(states: Mapping[str, Any]) -> None:
    ckpt.set_python_numpy_rng_states(states)
    torch.set_rng_state(torch.from_numpy(np.array(states["torch"])))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.from_numpy(np.array(s)) for s in states["cuda"]])


class CheckpointWriter:
    """Writes fit()'s checkpoints: only epochs that are multiples of `every`, optionally in the background."""

    def __init__(self, path: str | Path | None, *, every: int = 1, background: bool = False) -> None:
        if every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {every}")
        self.path = Path(path) if path is not None else None
        self.every = every
        self.background = background
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def due(self, epoch: int) -> bool:
        return self.path is not None and epoch % self.every == 0

    def save(self, state: JsonObject) -> None:
        """Write `state`; in the background if asked (then copied to the CPU first)."""
        assert self.path is not None
        self.wait()
        if not self.background:
            ckpt.save_checkpoint(self.path, to_numpy(state))  # written before training goes on: no copy needed
            return
        snapshot = to_numpy(state, copy=True)
        self._thread = threading.Thread(target=self._write, args=(snapshot,), name="checkpoint-writer")
        self._thread.start()

    def _write(self, snapshot: JsonObject) -> None:
        try:
            ckpt.save_checkpoint(self.path, snapshot)
        except BaseException as exc:  # re-raised in the training thread by wait()
            self._error = exc

    def wait(self) -> None:
        """Wait for the write under way, if any; a failed background write raises here."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    close = wait
