"""PyTorch against Keras on the CPU: the same model and update on the same ready batch, one process, interleaved.

PyTorch: the pipeline's update (measure.fast_update) on the pipeline's own objects
(trainer.setup_training: memory format and threads as a run sets them). Keras: the project's Keras
port of the same variant (cnnrepro.train.backends.keras), set up and compiled as the Keras trainer
does it (seed, deterministic ops, the variant's optimizer and loss), `train_on_batch` on the same
batch in channels-last order. TensorFlow gets PyTorch's thread count. Both are timed in alternating
rounds (cnnrepro.bench.interleave); the figures are the median ms per step, the fastest round, and
PyTorch / Keras (below 1: PyTorch is faster).

CPU only: the Keras lock installs TensorFlow's CPU build, so on a GPU machine Keras would be timed on
another device than PyTorch. Variants on VGG16 are left out (their Keras side needs the ImageNet
weights and trains on cached features; the comparison would be of the small head alone).
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import asdict, dataclass

import numpy as np
import torch

from cnnrepro.bench.interleave import interleaved_ms
from cnnrepro.bench.measure import fast_update, timed_setup
from cnnrepro.errors import CnnreproError
from cnnrepro.mappings import JsonObject
from cnnrepro.train.backends.torch import trainer
from cnnrepro.train.engine.lifecycle import NotRunnable
from cnnrepro.train.engine.run_config import RunConfig


@dataclass
class VersusKeras:
    """One variant's PyTorch and Keras update times (ms per step)."""

    variant: str
    status: str  # "measured" | "not_run"
    reason: str | None = None
    batch_size: int | None = None
    threads: int | None = None
    channels_last: bool | None = None
    rounds: int | None = None
    torch_ms: float | None = None  # median over rounds
    keras_ms: float | None = None
    torch_fastest_ms: float | None = None
    keras_fastest_ms: float | None = None

    @property
    def ratio(self) -> float | None:
        """PyTorch ms over Keras ms (medians)."""
        return self.torch_ms / self.keras_ms if self.torch_ms and self.keras_ms else None

    def as_dict(self) -> JsonObject:
        return asdict(self) | {"torch_over_keras": self.ratio}


def versus_keras(config: RunConfig, *, rounds: int, warmup: int) -> VersusKeras:
    """The comparison for one variant; a not_run row with the reason where it cannot be made here."""
    row = VersusKeras(config.variant, "not_run", batch_size=config.training.batch_size)
    device = torch.device(config.runtime.device)
    if device.type != "cpu":
        row.reason = f"the Keras column is CPU only (TensorFlow's CPU build; device {device})"
        return row
    if config.vgg16 is not None:
        row.reason = "VGG16 variants are not compared (Keras side needs the ImageNet weights; trains on features)"
        return row
    try:
        from cnnrepro.train.backends.keras import devices
        from cnnrepro.train.backends.keras import trainer as keras_trainer
        from cnnrepro.train.backends.keras.streams import targets
    except CnnreproError as exc:  # the keras extra is not installed
        row.reason = str(exc)
        return row
    with contextlib.redirect_stdout(sys.stderr):  # the runner's progress lines: stdout is for the table
        try:
            prepared = trainer.prepare(config, download_timeout_s=10.0)
            setup, _ = timed_setup(config, prepared, device)
        except (NotRunnable, CnnreproError) as exc:
            row.reason = str(exc)
            return row
    row.threads = torch.get_num_threads()
    row.channels_last = config.runtime.channels_last
    row.rounds = rounds
    devices.resolve_device("cpu", row.threads)  # TensorFlow's intra- and inter-op pools: PyTorch's count
    keras_trainer.configure_process(config)
    keras_model = keras_trainer.build_model(config, prepared)
    keras_trainer.compile_for_training(keras_model, config)

    images, labels = setup.train.batch(np.arange(min(config.training.batch_size, len(setup.train))))
    setup.trained.train()
    x = setup.inputs(images, train=True)
    update = fast_update(config, setup)
    keras_x = np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy(), dtype=np.float32)
    keras_y = targets(labels.numpy(), config.training.loss, len(config.data.classes))
    steps = {"torch": lambda: update((x, labels)), "keras": lambda: keras_model.train_on_batch(keras_x, keras_y)}
    # At least one untimed step each: Keras traces its train function on the first call.
    times = interleaved_ms(steps, rounds=rounds, warmup=max(1, warmup))
    row.status = "measured"
    row.torch_ms, row.keras_ms = times["torch"].median, times["keras"].median
    row.torch_fastest_ms, row.keras_fastest_ms = times["torch"].fastest, times["keras"].fastest
    return row
