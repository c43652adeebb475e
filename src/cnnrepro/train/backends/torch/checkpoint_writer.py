"""Epoch checkpoints off the hot path: every N epochs (train.checkpoint_every), and on a GPU written
by a background thread while the next epoch trains.

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

import torch

from cnnrepro.train.engine import checkpoint as ckpt


def to_cpu(value: Any) -> Any:
    """A deep copy of `value` with every tensor cloned onto the CPU (containers rebuilt, the rest kept)."""
    if torch.is_tensor(value):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, Mapping):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        copied = [to_cpu(v) for v in value]
        return copied if isinstance(value, list) else tuple(copied)
    return value


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

    def save(self, state: dict[str, Any]) -> None:
        """Write `state`; in the background if asked (then copied to the CPU first)."""
        assert self.path is not None
        self.wait()
        if not self.background:
            ckpt.save_checkpoint(self.path, state)  # written before training goes on: no copy needed
            return
        snapshot = to_cpu(state)
        self._thread = threading.Thread(target=self._write, args=(snapshot,), name="checkpoint-writer")
        self._thread.start()

    def _write(self, snapshot: dict[str, Any]) -> None:
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
