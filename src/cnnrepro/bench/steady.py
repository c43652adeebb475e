"""Step times as training really sees them: the fast step's graph replays, and a steady fit() epoch.

`measure_graph` times the fast step (cnnrepro.train.backends.torch.fast_step, CUDA graphs) the way fit() drives
it: one index copy and one replay per step, no synchronization until the end. Its warm-up is a whole
pass over the training split (every batch size a pass has is captured before timing), so first-call
costs (capture, cuDNN autotuning, lazy initialisation) never land in the timed steps.

`fit_step_ms` is the cross-check that keeps the step tables honest: the time of a steady fit()
epoch (the second of two: `steps` training steps and one validation batch), through the very loop
`cnnrepro train` runs, divided by its training steps. A per-step figure far above it means the
step bench times something the training does not (as it once did for augmentation on a GPU).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from cnnrepro.bench.measure import PathResult, fill_flops, finish_timing, timed_setup
from cnnrepro.bench.peaks import DevicePeak
from cnnrepro.train.backends.torch import trainer
from cnnrepro.train.backends.torch.fast_step import FastSteps
from cnnrepro.train.backends.torch.loop import FitSettings, fit
from cnnrepro.train.engine.epochs import KerasIterator
from cnnrepro.train.engine.lifecycle import load_splits
from cnnrepro.train.engine.run_config import Prepared, RunConfig


def _autocast_dtype(config: RunConfig) -> torch.dtype | None:
    return torch.bfloat16 if config.mixed_precision else None


def measure_graph(config: RunConfig, prepared: Prepared, *, steps: int, warmup: int, peak: DevicePeak) -> PathResult:
    """The fast step's replays (CUDA only; elsewhere a not_run row with the reason)."""
    device = torch.device(config.runtime.device)
    record = config.as_record()
    options = {k: record[k] for k in ("mixed_precision", "channels_last", "image_cache")}
    result = PathResult(config.variant, "graph", "measured", batch_size=config.training.batch_size, options=options)
    if device.type != "cuda":
        return PathResult(config.variant, "graph", "not_run", reason=f"CUDA graphs need CUDA (device {device})")
    setup, result.setup_s = timed_setup(config, prepared, device)
    fast = FastSteps(
        setup.trained,
        setup.optimizer,
        setup.train,
        setup.validation,
        setup.inputs,
        config.training.loss,
        config.training.batch_size,
        autocast_dtype=_autocast_dtype(config),
        capture=True,
    )
    iterator = KerasIterator(len(setup.train), config.training.batch_size, shuffle=True, seed=[config.seed, 1])
    fast.start_epoch()
    sample = setup.train.batch(np.arange(min(config.training.batch_size, len(setup.train))))
    macs = fill_flops(result, setup.trained, (setup.inputs(sample[0], train=True), sample[1]), config.training.loss)
    indices: list[np.ndarray] = []

    def fetch() -> tuple[torch.Tensor, torch.Tensor]:
        indices.append(next(iterator))
        n = len(indices[-1])
        return sample[0][:n], sample[1][:n]  # only counted: the replay gathers the batch on the device itself

    def update(_: Any) -> None:
        fast.train(indices.pop())

    # A whole pass first: every batch size of a pass captured before anything is timed.
    finish_timing(
        result,
        fetch=fetch,
        update=update,
        steps=steps,
        warmup=max(warmup, iterator.batches_per_pass()),
        device=device,
        peak=peak,
        train_macs_per_image=macs,
    )
    # The replay is one launch: a per-step split into data and compute means nothing here.
    result.data_ms = result.compute_ms = None
    return result


def fit_step_ms(config: RunConfig, prepared: Prepared, *, steps: int, fast_step: bool) -> float:
    """Wall ms per training step of a steady fit() epoch (and one validation batch), as `cnnrepro train` runs it."""
    trainer.configure_process(config)
    setup = trainer.setup_training(config, prepared, load_splits(config))
    ends: list[float] = []
    settings = FitSettings(
        loss=config.training.loss,
        epochs=2,
        batch_size=config.training.batch_size,
        steps_per_epoch=steps,
        validation_steps=1,  # one batch: the epoch's time is then (almost) its training steps
        seed=config.seed,
        mixed_precision=config.mixed_precision,
        progress=False,
        fast_step=fast_step,
    )
    started = time.perf_counter()
    # The epoch's row is built from figures read back from the device: its hook runs after the GPU finished.
    fit(setup.trained, setup.optimizer, setup.train, setup.validation, setup.inputs, settings, [_at(ends)])
    epoch_s = ends[1] - ends[0] if len(ends) == 2 else ends[0] - started
    return 1000 * epoch_s / steps


def _at(ends: list[float]):
    def hook(_: dict[str, float]) -> None:
        ends.append(time.perf_counter())

    return hook
