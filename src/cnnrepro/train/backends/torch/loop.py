"""The training loop: Keras fit / fit_generator semantics in one readable PyTorch loop.

Per epoch: `steps_per_epoch` batches from an endlessly cycling, reshuffling iterator (or one pass
when the source trained on arrays), the training loss/accuracy averaged over the epoch's samples
as Keras' progress bar does (each batch's figures taken before its update), then validation as
the source computed it, one history row, a checkpoint, and the epoch hooks.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnrepro.mappings import JsonObject
from cnnrepro.train.backends.torch.checkpoint_writer import CheckpointWriter, rng_states, set_rng_states, to_torch
from cnnrepro.train.backends.torch.steps import DeviceSplit, evaluate, train_step
from cnnrepro.train.engine import checkpoint as ckpt
from cnnrepro.train.engine.backend import EpochHook
from cnnrepro.train.engine.epochs import check_finite, epoch_line, make_iterators, sequential_batches
from cnnrepro.train.inputs.pipeline import InputPipeline


@dataclass
class FitSettings:
    loss: str
    epochs: int
    batch_size: int
    steps_per_epoch: int | None  # None: one pass over the training split per epoch
    validation_steps: int | None  # None: the whole validation split once per epoch
    seed: int
    mixed_precision: bool = False
    checkpoint: Path | None = None
    config_hash: str = ""
    # Saved with every checkpoint (e.g. the MLflow run that wrote it); handed to on_resume(owner, epoch).
    owner: JsonObject = field(default_factory=dict)
    on_resume: Callable[[JsonObject, int], None] | None = None
    progress: bool = field(default_factory=lambda: sys.stderr.isatty())
    # Speed (cnnrepro.train.backends.torch.fast_step, checkpoint_writer): the same results, fewer launches and syncs.
    fast_step: bool = False  # train and validate through CUDA-graph replays (uncaptured on a CPU)
    # A fault injected into the fast step's capture ("raise" | "disagree", fast_step_guard.FAULTS): shows the fallback.
    fast_step_fault: str | None = None
    # Told what fit() decided at run time, once: on_decision("fast_step", {"state": ..., "reason": ...}).
    on_decision: Callable[[str, dict[str, str]], None] | None = None
    checkpoint_every: int = 1  # checkpoint after epochs that are multiples of this
    checkpoint_in_background: bool = False  # written by a thread while the next epoch trains


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: DeviceSplit,
    validation: DeviceSplit,
    inputs: InputPipeline,
    settings: FitSettings,
    hooks: Sequence[EpochHook] = (),
) -> list[dict[str, float]]:
    """Train `model` (only what the optimizer holds moves) and return the history, one row per epoch.

    With a checkpoint of the same config, training continues after its epoch with every state restored.
    """
    iterators = make_iterators(
        settings.seed, settings.batch_size, settings.validation_steps, len(train), len(validation)
    )
    history: list[dict[str, float]] = []
    start_epoch = 0
    state = ckpt.load_checkpoint(settings.checkpoint, settings.config_hash, "torch") if settings.checkpoint else None
    # A checkpoint of the last epoch resumes too (zero epochs left): a run whose outputs failed to write
    # after training finishes by writing them, without training again.
    if state is not None and state["epoch"] <= settings.epochs:
        history = restore(state, model, optimizer, iterators, inputs, settings.checkpoint)
        start_epoch = int(state["epoch"])
        owner = dict(state.get("owner") or {})
        ckpt.announce_resume(settings.checkpoint, start_epoch, owner, history, hooks, settings.on_resume)

    device = train.x.device
    writer = CheckpointWriter(
        settings.checkpoint, every=settings.checkpoint_every, background=settings.checkpoint_in_background
    )
    fast = _fast_steps(model, optimizer, train, validation, inputs, settings)  # None: the eager reference
    try:
        for epoch in range(start_epoch + 1, settings.epochs + 1):
            started = time.perf_counter()
            model.train()
            steps = settings.steps_per_epoch or iterators["train"].batches_per_pass()
            total = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            seen = 0
            if fast is not None:
                fast.start_epoch()
                total, correct = fast.train_totals()
            for _ in _progress(range(steps), settings.progress, f"epoch {epoch}/{settings.epochs}"):
                if fast is not None:  # the captured step; its loss/accuracy sums are `total`/`correct`
                    seen += fast.train(next(iterators["train"]))
                    continue
                x, y = train.batch(next(iterators["train"]))
                batch_total, batch_correct = train_step(
                    model, optimizer, inputs(x, train=True), y, settings.loss, mixed_precision=settings.mixed_precision
                )
                total += batch_total
                correct += batch_correct
                seen += len(y)

            if "validation" in iterators:
                val_batches: Iterable[np.ndarray] = (
                    next(iterators["validation"]) for _ in range(settings.validation_steps)
                )
            else:
                val_batches = sequential_batches(len(validation), settings.batch_size)
            if fast is not None:
                val = fast.validate(val_batches)
            else:
                val = evaluate(
                    model, validation, val_batches, inputs, settings.loss, mixed_precision=settings.mixed_precision
                )
            row = {
                "epoch": epoch,
                "loss": float(total) / seen,
                "accuracy": float(correct) / seen,
                "val_loss": val["loss"],
                "val_accuracy": val["accuracy"],
            }
            history.append(row)
            print(epoch_line(row, settings.epochs, time.perf_counter() - started), flush=True)
            check_finite(row, history)  # before the checkpoint: a diverged model is never saved
            if writer.due(epoch):
                writer.save(
                    {
                        "framework": "torch",
                        "epoch": epoch,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "iterators": {name: it.state_dict() for name, it in iterators.items()},
                        "augmentation_rng": inputs.generator.get_state() if inputs.generator is not None else None,
                        "rng": rng_states(),
                        "history": history,
                        "config_hash": settings.config_hash,
                        "owner": settings.owner,
                    },
                )
            for hook in hooks:
                hook(row)
    finally:
        writer.close()  # a background write under way finishes, also when the run stops (Diverged)
    return history


def restore(
    state: JsonObject,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    iterators: JsonObject,
    inputs: InputPipeline,
    path: Path | None,
) -> list[dict[str, float]]:
    """Every state of a checkpoint put back (model, optimizer, data iterators, generators); its history.
    A checkpoint whose arrays do not fit this model is refused in one line, before anything trains."""
    try:
        model.load_state_dict(to_torch(state["model"]))
        optimizer.load_state_dict(to_torch(state["optimizer"]))
        for name, it in iterators.items():
            it.load_state_dict(state["iterators"][name])
        if inputs.generator is not None:
            inputs.generator.set_state(to_torch(state["augmentation_rng"]))
        set_rng_states(state["rng"])
        history = [dict(row) for row in state["history"]]
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ckpt.CheckpointRefused(f"{path}: does not fit this run ({reason})") from None
    return history


def _fast_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: DeviceSplit,
    validation: DeviceSplit,
    inputs: InputPipeline,
    settings: FitSettings,
) -> Any:
    """The fast step (cnnrepro.train.backends.torch.fast_step.FastSteps), checked against the eager step
    (fast_step_guard), when asked for and it holds; else None. The decision goes to settings.on_decision."""
    if not settings.fast_step:
        fast, record = None, {"state": "off", "reason": "train.fast_step resolved off (auto: CUDA without compile)"}
    else:
        from cnnrepro.train.backends.torch import fast_step_guard

        fast, decision = fast_step_guard.start(
            model,
            optimizer,
            train,
            validation,
            inputs,
            loss=settings.loss,
            batch_size=settings.batch_size,
            mixed_precision=settings.mixed_precision,
            fault=settings.fast_step_fault,
        )
        record = decision.record()
    if settings.on_decision is not None:
        settings.on_decision("fast_step", record)
    return fast


def _progress(steps: range, enabled: bool, desc: str) -> Iterable[int]:
    if not enabled:
        return steps
    from tqdm import tqdm

    return tqdm(steps, desc=desc, leave=False, dynamic_ncols=True)
