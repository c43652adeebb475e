"""What an epoch is, in either framework: Keras' batch index logic (`KerasIterator`), the iterators of a
run drawn from its seed, in-order batches, and the line printed after each epoch.

Both backends draw the same batches in the same order from the same seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from cnnrepro.mappings import JsonObject


class KerasIterator:
    """keras.preprocessing.image.Iterator's index logic (Keras 2.0.8 `_flow_index`), endless.

    Each pass draws a fresh permutation (when shuffling); batches walk it in order; the last batch
    of a pass is short (n % batch_size images) and the next call starts a new pass. steps_per_epoch
    batches therefore cross pass boundaries freely, as fit_generator's did. The permutation comes
    from a numpy Generator seeded by the run (Keras used the global numpy RNG).
    """

    def __init__(self, n: int, batch_size: int, *, shuffle: bool, seed: Any = None) -> None:
        if n <= 0:
            raise ValueError("empty split")
        self.n = n
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.rng = np.random.default_rng(seed)
        self.batch_index = 0
        self.total_batches_seen = 0
        self.index_array = np.arange(n)

    def __iter__(self) -> KerasIterator:
        return self

    def __next__(self) -> np.ndarray:
        if self.batch_index == 0:
            self.index_array = self.rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        current_index = (self.batch_index * self.batch_size) % self.n
        if self.n > current_index + self.batch_size:
            current_batch_size = self.batch_size
            self.batch_index += 1
        else:
            current_batch_size = self.n - current_index
            self.batch_index = 0
        self.total_batches_seen += 1
        return self.index_array[current_index : current_index + current_batch_size]

    def batches_per_pass(self) -> int:
        return -(-self.n // self.batch_size)

    def state_dict(self) -> JsonObject:
        return {
            "batch_index": self.batch_index,
            "total_batches_seen": self.total_batches_seen,
            "index_array": self.index_array.copy(),
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: JsonObject) -> None:
        self.batch_index = int(state["batch_index"])
        self.total_batches_seen = int(state["total_batches_seen"])
        self.index_array = np.asarray(state["index_array"])
        self.rng.bit_generator.state = state["rng"]


def sequential_batches(n: int, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, n, batch_size):
        yield np.arange(start, min(start + batch_size, n))


def make_iterators(
    seed: int, batch_size: int, validation_steps: int | None, n_train: int, n_val: int
) -> dict[str, KerasIterator]:
    """The training iterator and, where the source drew validation batches, the validation one.

    Streams derived from the seed, distinct per purpose, so the data order is a function of the seed only.
    """
    iterators = {"train": KerasIterator(n_train, batch_size, shuffle=True, seed=[seed, 1])}
    if validation_steps is not None:
        # The book's validation generator: flow_from_directory's default shuffle=True, one object for all epochs.
        iterators["validation"] = KerasIterator(n_val, batch_size, shuffle=True, seed=[seed, 2])
    return iterators


def epoch_line(row: dict[str, float], epochs: int, seconds: float) -> str:
    """The line both frameworks print after each epoch."""
    return (
        f"epoch {int(row['epoch'])}/{epochs}: loss {row['loss']:.4f} acc {row['accuracy']:.4f} "
        f"val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.4f} ({seconds:.1f} s)"
    )


class Diverged(Exception):
    """An epoch's training loss (or its validation loss) is no longer a finite number: the run stops there.

    Training on from NaN or inf weights only writes more NaN, and a run that ends "completed" on them
    would be scored. The run is written and logged as `diverged` at `epoch`; `history` holds every epoch
    up to and including that one, as it was measured.
    """

    def __init__(self, epoch: int, figures: dict[str, float], history: list[dict[str, float]]) -> None:
        shown = ", ".join(f"{name} {value}" for name, value in figures.items())
        super().__init__(f"diverged at epoch {epoch}: {shown}")
        self.epoch, self.figures, self.history = epoch, figures, list(history)


def check_finite(row: dict[str, float], history: list[dict[str, float]]) -> None:
    """Raise Diverged when `row` (an epoch's history row, already in `history`) has a non-finite training
    loss or an infinite validation loss. Called by both backends' loops before the epoch is checkpointed,
    so a checkpoint never holds a diverged model. A NaN val_loss alone is left alone: the history contract
    writes NaN for a split that was not evaluated."""
    figures = {name: row[name] for name in ("loss",) if not math.isfinite(row[name])}
    figures |= {name: row[name] for name in ("val_loss",) if math.isinf(row[name])}
    if figures:
        raise Diverged(int(row["epoch"]), figures, history)
