"""The book's fit_generator in Keras 3: model.fit on the endless generator, the validation batches scored
at each epoch's end, one history row, the epoch line, a checkpoint, and the epoch hooks, as the PyTorch loop."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnrepro.mappings import JsonObject
from cnnrepro.train.backends.keras import import_keras
from cnnrepro.train.backends.keras.streams import Streams, evaluate_batches
from cnnrepro.train.engine import checkpoint as ckpt
from cnnrepro.train.engine.backend import EpochHook, ResumeHook
from cnnrepro.train.engine.epochs import check_finite, epoch_line

keras = import_keras()


@dataclass
class EpochCheckpoint:
    """checkpoints/keras/<variant>/seed<S>/last.safetensors after every epoch: the trained model's variables (the
    dropout seed-generator states included), the optimizer's, the validation iterator, the RNGs, the
    history, the config hash and the owner (the MLflow run), as the PyTorch loop's checkpoint.

    The training generator's position is not saved but replayed: Keras pulls a generator ahead of what
    it has trained on (tf.data prefetch), so the saved position would be wrong. A resumed run regenerates
    the epochs' batches it already trained on (index draws and augmentation draws, no model work) and
    continues with the next one, which is the batch the killed run would have trained on.
    """

    path: Path
    config_hash: str
    owner: JsonObject

    def save(self, model: Any, streams: Streams, epoch: int, history: list[dict[str, float]]) -> None:
        ckpt.save_checkpoint(
            self.path,
            {
                "framework": "keras",
                "epoch": epoch,
                "model": [np.asarray(v.numpy()) for v in model.variables],
                "optimizer": [np.asarray(v.numpy()) for v in model.optimizer.variables],
                "validation_iterator": streams.validation_iterator.state_dict(),
                "rng": ckpt.python_numpy_rng_states() | {"torch": torch.get_rng_state().numpy()},
                "history": list(history),
                "config_hash": self.config_hash,
                "owner": self.owner,
            },
        )

    def restore(self, model: Any, streams: Streams, epochs: int) -> tuple[int, list[dict[str, float]], JsonObject]:
        """(epochs trained, their history rows, the owner that wrote them); (0, [], {}) without a usable checkpoint."""
        state = ckpt.load_checkpoint(self.path, self.config_hash, "keras")
        # The last epoch's checkpoint counts too: its run failed after training (outputs), so only they are left.
        if state is None or not int(state["epoch"]) <= epochs:
            return 0, [], {}
        model.optimizer.build(model.trainable_variables)
        pairs = ((model.variables, state["model"]), (model.optimizer.variables, state["optimizer"]))
        if any([tuple(v.shape) for v in variables] != [np.shape(x) for x in values] for variables, values in pairs):
            raise ckpt.CheckpointRefused(f"{self.path}: does not fit this model (its arrays have other shapes)")
        for variables, values in pairs:
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)
        epoch = int(state["epoch"])
        for _ in range(epoch * streams.steps_per_epoch):
            next(streams.train)
        streams.validation_iterator.load_state_dict(state["validation_iterator"])
        ckpt.set_python_numpy_rng_states(state["rng"])
        torch.set_rng_state(torch.from_numpy(np.array(state["rng"]["torch"])))
        return epoch, list(state["history"]), dict(state.get("owner") or {})


class _EpochEnd(keras.callbacks.Callback):
    """Per epoch: validation on the next batches of the persistent iterator, one history row (the runs
    contract), the line the PyTorch loop prints, the checkpoint, and the epoch hooks (MLflow)."""

    def __init__(
        self,
        streams: Streams,
        epochs: int,
        hooks: Sequence[EpochHook],
        checkpoint: EpochCheckpoint | None = None,
        history: Sequence[dict[str, float]] = (),
    ) -> None:
        super().__init__()
        self.streams = streams
        self.epochs = epochs
        self.hooks = hooks
        self.checkpoint = checkpoint
        self.rows: list[dict[str, float]] = list(history)
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: JsonObject | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: JsonObject | None = None) -> None:
        logs = logs or {}
        s = self.streams
        val = evaluate_batches(self.model, s.validation, s.validation_y, s.next_validation_batches(), s.inputs)
        row = {"epoch": epoch + 1, "loss": float(logs["loss"]), "accuracy": float(logs["accuracy"])}
        row |= {"val_loss": val["loss"], "val_accuracy": val["accuracy"]}
        self.rows.append(row)
        print(epoch_line(row, self.epochs, time.perf_counter() - self._started), flush=True)
        check_finite(row, self.rows)  # before the checkpoint; the exception ends model.fit
        if self.checkpoint is not None:
            self.checkpoint.save(self.model, s, epoch + 1, self.rows)
        for hook in self.hooks:
            hook(row)


def fit(
    model: Any,
    streams: Streams,
    epochs: int,
    hooks: Sequence[EpochHook],
    checkpoint: EpochCheckpoint | None = None,
    on_resume: ResumeHook | None = None,
) -> list[dict[str, float]]:
    """The book's fit_generator call in Keras 3: model.fit on the generator with steps_per_epoch; the
    validation_steps batches are scored at each epoch's end (see Streams). One history row per epoch.
    With a checkpoint of the same config, training continues after its epoch with every state restored."""
    start, history, owner = checkpoint.restore(model, streams, epochs) if checkpoint else (0, [], {})
    if start:
        ckpt.announce_resume(checkpoint.path, start, owner, history, hooks, on_resume)  # type: ignore[union-attr]
    callback = _EpochEnd(streams, epochs, hooks, checkpoint, history)
    if start == epochs:  # resumed from the last epoch's checkpoint: nothing left to train
        return callback.rows
    model.fit(
        streams.train,
        steps_per_epoch=streams.steps_per_epoch,
        epochs=epochs,
        initial_epoch=start,
        shuffle=False,  # the generator shuffles, as flow_from_directory did
        callbacks=[callback],
        verbose=0,
    )
    return callback.rows
