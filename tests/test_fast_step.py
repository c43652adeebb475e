"""The fast step (train.fast_step) computes what the eager loop computes, and checkpoints off the hot path
resume exactly.

There is no CUDA here: the fast step runs its own step functions on its static buffers without the
capture (FastSteps(capture=False), what fit() uses when fast_step is set on a CPU split) and must match
the eager reference, epoch after epoch, on identical batches (same iterators, same augmentation and
dropout draws). Whether the CUDA graph replay equals its uncaptured run is for `scripts/gpu-check.sh`.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cnnrepro.errors import CnnreproError
from cnnrepro.train.backends.torch.checkpoint_writer import CheckpointWriter
from cnnrepro.train.backends.torch.fast_step import FastSteps, supported
from cnnrepro.train.backends.torch.loop import FitSettings, fit
from cnnrepro.train.backends.torch.optimizers import make_optimizer
from cnnrepro.train.backends.torch.steps import DeviceSplit, train_step
from cnnrepro.train.engine import checkpoint as ckpt
from cnnrepro.train.engine.augmentation_spec import book_augmentation
from cnnrepro.train.engine.run_config import resolve_fast_step
from cnnrepro.train.inputs.pipeline import InputPipeline

SIZE = 20


def _net(outputs: int) -> nn.Module:
    torch.manual_seed(7)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.5),  # draws from the default generator: the same draws on both paths
        nn.Linear(4 * 9 * 9, outputs),
    )


def _splits(n_train: int = 17, n_val: int = 7) -> tuple[DeviceSplit, DeviceSplit]:
    rng = np.random.default_rng(3)

    def split(n: int) -> DeviceSplit:
        images = torch.from_numpy(rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8))
        return DeviceSplit(images, torch.from_numpy(rng.integers(0, 2, n)))

    return split(n_train), split(n_val)


def _inputs() -> InputPipeline:
    generator = torch.Generator()
    generator.manual_seed(11)
    return InputPipeline("images", augmentation=book_augmentation(), generator=generator)


def _fit(loss: str, optimizer_name: str, *, fast: bool, tmp: Path | None = None, **settings) -> tuple:
    outputs = 1 if loss == "binary_crossentropy" else 2
    model = _net(outputs)
    optimizer = make_optimizer(optimizer_name, model.parameters(), 1e-3)
    train, validation = _splits()
    torch.manual_seed(0)  # dropout
    fit_settings = FitSettings(
        loss=loss,
        epochs=settings.pop("epochs", 3),
        batch_size=5,  # 17 images: a short batch of 2 at the end of each pass
        steps_per_epoch=settings.pop("steps_per_epoch", 4),
        validation_steps=None,  # the whole validation split in batches of 5 and 2
        seed=0,
        progress=False,
        fast_step=fast,
        **settings,
    )
    history = fit(model, optimizer, train, validation, _inputs(), fit_settings)
    return history, model, optimizer


@pytest.mark.parametrize(
    ("loss", "optimizer_name"),
    [
        ("binary_crossentropy", "rmsprop_keras2"),
        ("categorical_crossentropy", "rmsprop_keras3"),
        ("categorical_crossentropy", "sgd"),
    ],
)
def test_fast_step_computes_what_the_eager_loop_computes(loss: str, optimizer_name: str) -> None:
    eager_history, eager_model, eager_opt = _fit(loss, optimizer_name, fast=False)
    fast_history, fast_model, fast_opt = _fit(loss, optimizer_name, fast=True)
    assert len(fast_history) == len(eager_history) == 3
    for eager_row, fast_row in zip(eager_history, fast_history, strict=True):
        assert fast_row.keys() == eager_row.keys()
        for key in eager_row:
            assert fast_row[key] == pytest.approx(eager_row[key], rel=1e-5, abs=1e-6), key
    for (name, eager_p), fast_p in zip(eager_model.state_dict().items(), fast_model.state_dict().values(), strict=True):
        torch.testing.assert_close(fast_p, eager_p, rtol=1e-5, atol=1e-6, msg=name)
    eager_state, fast_state = eager_opt.state_dict()["state"], fast_opt.state_dict()["state"]
    for key in eager_state:
        for name, value in eager_state[key].items():
            if torch.is_tensor(value):
                torch.testing.assert_close(fast_state[key][name].float(), value.float(), rtol=1e-5, atol=1e-7)
    # The weights moved: the comparison is not between two untrained networks.
    assert not torch.equal(fast_model[0].weight, _net(1)[0].weight)


def test_warm_up_leaves_no_trace() -> None:
    """A capture first runs the step a few times; weights, optimizer state (none yet: created by the
    warm-up, then zeroed) and every generator are put back, so training goes on as if it never ran."""
    model = _net(1)
    reference = copy.deepcopy(model)
    optimizer = make_optimizer("rmsprop_keras2", model.parameters(), 1e-3)
    reference_opt = make_optimizer("rmsprop_keras2", reference.parameters(), 1e-3)
    train, validation = _splits()
    inputs, reference_inputs = _inputs(), _inputs()
    steps = FastSteps(
        model, optimizer, train, validation, inputs, "binary_crossentropy", 5, autocast_dtype=None, capture=False
    )
    index = np.array([0, 3, 5, 8, 13])
    torch.manual_seed(1)
    steps.start_epoch()
    steps.warm_up("train", index)
    steps.warm_up("validation", index[:2])
    for _ in range(2):
        steps.train(index)
    after = copy.deepcopy(model.state_dict())

    torch.manual_seed(1)
    reference.train()
    for _ in range(2):
        x, y = train.batch(index)
        train_step(reference, reference_opt, reference_inputs(x, train=True), y, "binary_crossentropy")
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(after[name], value, rtol=1e-6, atol=1e-7, msg=name)
    total, correct = steps.train_totals()
    assert steps.seen["train"] == 10 and 0 <= int(correct) <= 10 and float(total) > 0


def test_fast_step_rejects_optimizers_whose_state_does_not_start_at_zero() -> None:
    momentum = torch.optim.SGD(_net(1).parameters(), lr=0.1, momentum=0.9)
    assert supported(momentum) is not None
    assert supported(make_optimizer("rmsprop_keras2", _net(1).parameters(), 1e-3)) is None


def test_fast_step_setting() -> None:
    assert resolve_fast_step("auto", "cuda", "torch", compiled=False) is True
    assert resolve_fast_step("auto", "cuda:1", "torch", compiled=False) is True
    assert resolve_fast_step("auto", "cuda", "torch", compiled=True) is False  # torch.compile brings its own graphs
    assert resolve_fast_step("auto", "cpu", "torch", compiled=False) is False
    assert resolve_fast_step(False, "cuda", "torch", compiled=False) is False  # YAML's bare `off`
    assert resolve_fast_step("auto", "gpu:0", "keras", compiled=False) is False  # Keras runs
    assert resolve_fast_step(True, "cpu", "torch", compiled=False) is True  # uncaptured: the self-check's CPU path
    with pytest.raises(CnnreproError, match=r"train\.fast_step is 'on' but the device is mps"):
        resolve_fast_step(True, "mps", "torch", compiled=False)
    with pytest.raises(CnnreproError, match=r"train\.fast_step 'sometimes' is not one of auto, on, off"):
        resolve_fast_step("sometimes", "cpu", "torch", compiled=False)


def test_speed_settings_keep_the_checkpoint_hash() -> None:
    """On the CPU the new keys resolve to what was always done, so checkpoints written before they
    existed still resume; how often a checkpoint is written never changes the hash."""
    base = {"variant": "baseline", "seed": 0, "compile": False}
    same = base | {"fast_step": False, "checkpoint_every": 5, "checkpoint_in_background": True}
    assert ckpt.config_hash(same) == ckpt.config_hash(base)
    assert ckpt.config_hash(base | {"fast_step": True}) != ckpt.config_hash(base)


@pytest.mark.parametrize("background", [False, True])
def test_checkpoint_every_n_epochs_resumes_exactly(tmp_path: Path, background: bool) -> None:
    """Epochs 1-2 with checkpoint_every=2 (only epoch 2 is written), then epochs 3-4 from it, equal four
    epochs straight; with every=2 a one-epoch run writes nothing."""
    path = tmp_path / "last.safetensors"
    common = {"checkpoint": path, "config_hash": "h", "checkpoint_every": 2, "checkpoint_in_background": background}
    _fit("binary_crossentropy", "rmsprop_keras2", fast=False, epochs=1, **common)
    assert not path.exists()
    _fit("binary_crossentropy", "rmsprop_keras2", fast=False, epochs=2, **common)
    assert ckpt.decode(path.read_bytes())["epoch"] == 2
    resumed, resumed_model, _ = _fit("binary_crossentropy", "rmsprop_keras2", fast=False, epochs=4, **common)
    straight, straight_model, _ = _fit("binary_crossentropy", "rmsprop_keras2", fast=False, epochs=4)
    assert resumed == straight
    for name, value in straight_model.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[name], value), name


def test_background_writer_copies_the_state_before_returning(tmp_path: Path) -> None:
    writer = CheckpointWriter(tmp_path / "last.safetensors", every=1, background=True)
    weights = torch.ones(3)
    history = [{"epoch": 1}]
    writer.save({"epoch": 1, "weights": weights, "history": history})
    weights.add_(1)  # training goes on while the thread writes
    history.append({"epoch": 2})
    writer.close()
    saved = ckpt.decode((tmp_path / "last.safetensors").read_bytes())
    assert np.array_equal(saved["weights"], np.ones(3, np.float32)) and saved["history"] == [{"epoch": 1}]
    with pytest.raises(ValueError, match="checkpoint_every"):
        CheckpointWriter(tmp_path / "x.pt", every=0)
