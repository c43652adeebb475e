"""The fast step checks itself against the eager step before a run uses it, and falls back to the eager loop
when its capture fails or disagrees: one printed line, the decision in run_info.json and MLflow, and training
that goes on exactly as the eager loop trains.

There is no CUDA here: the fast step runs uncaptured (train.fast_step on, on a CPU), and the capture is made
to fail on purpose (FitSettings.fast_step_fault, $CNNREPRO_FAST_STEP_FAULT): "raise" raises where a CUDA-graph
capture would, "disagree" replays every update twice. Whether a real capture passes its check on a GPU is
for `scripts/gpu-check.sh` (its `check` part).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnrepro.run_outputs import load_run
from cnnrepro.tracking.store import client as store_client
from cnnrepro.train.backends.torch.fast_step_guard import FAULT_ENV, check_batches, start
from cnnrepro.train.backends.torch.optimizers import make_optimizer

from .helpers_train import make_npz, tiny_overrides, write_params
from .test_fast_step import _fit, _inputs, _net, _splits


@pytest.mark.parametrize("fault", ["raise", "disagree"])
def test_a_failing_capture_falls_back_to_the_eager_loop_in_one_line(fault: str, capsys: pytest.CaptureFixture) -> None:
    eager_history, eager_model, _ = _fit("binary_crossentropy", "rmsprop_keras2", fast=False)
    capsys.readouterr()
    decisions: dict[str, dict[str, str]] = {}
    history, model, _ = _fit(
        "binary_crossentropy",
        "rmsprop_keras2",
        fast=True,
        fast_step_fault=fault,
        on_decision=lambda name, record: decisions.__setitem__(name, record),
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("fast step")]
    expected = "capture failed (RuntimeError: capture failed on purpose" if fault == "raise" else "disagrees with"
    assert len(lines) == 1 and lines[0].startswith(f"fast step fell back: {expected}"), lines
    assert lines[0].endswith("training eagerly")
    assert decisions == {"fast_step": {"state": "fell back", "reason": lines[0].removeprefix("fast step fell back: ")}}
    # The check's steps left no trace: the eager loop trains exactly as it does without the fast step.
    assert history == eager_history
    for name, value in eager_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_a_fast_step_that_agrees_stays_on_and_says_what_it_checked(capsys: pytest.CaptureFixture) -> None:
    decisions: dict[str, dict[str, str]] = {}
    _fit("categorical_crossentropy", "sgd", fast=True, on_decision=lambda n, r: decisions.__setitem__(n, r))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("fast step")]
    assert lines == [f"fast step on: {decisions['fast_step']['reason']}"]
    # 17 training images in batches of 5: three full check steps and the pass's short batch of 2.
    assert decisions["fast_step"]["reason"].startswith("uncaptured; checked: 4 steps, batch sizes [2, 5]")


def test_a_replay_that_drops_the_update_is_caught_by_the_weights(capsys: pytest.CaptureFixture) -> None:
    """Same losses on the first step (the forward pass is right), but the weights never move: the loss bound
    alone could let later steps pass; the weight bound (half the update's norm) cannot."""
    model = _net(1)
    optimizer = make_optimizer("rmsprop_keras2", model.parameters(), 1e-3)
    train, validation = _splits()

    def capture(body: Callable[[], None]) -> Callable[[], None]:
        def without_update() -> None:
            before = [p.detach().clone() for p in model.parameters()]
            body()
            with torch.no_grad():
                for p, b in zip(model.parameters(), before, strict=True):
                    p.copy_(b)

        return without_update

    fast, decision = start(
        model,
        optimizer,
        train,
        validation,
        _inputs(),
        loss="binary_crossentropy",
        batch_size=5,
        mixed_precision=False,
        capture_with=capture,
    )
    assert fast is None and decision.state == "fell back"
    assert "disagrees with the eager step (0.weight: |fast - eager|" in decision.reason, decision.reason
    assert capsys.readouterr().out.strip() == decision.line()


def test_the_check_covers_every_batch_size_a_pass_ends_in() -> None:
    assert [len(b) for b in check_batches(17, 5, 3)] == [5, 5, 5, 2]
    assert [len(b) for b in check_batches(15, 5, 3)] == [5, 5, 5]
    assert [len(b) for b in check_batches(3, 5, 2)] == [3, 3]  # a split smaller than a batch: one size
    assert np.array_equal(check_batches(17, 5, 3)[-2], [10, 11, 12, 13, 14])


def test_the_train_command_records_the_fallback_in_run_info_and_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`cnnrepro train` with train.fast_step on and a capture that raises: the one line, run_info.json
    `decisions.fast_step`, the MLflow tags, and the same history as the eager run of the same seed."""
    from cnnrepro.cli import main

    store = "sqlite:///" + str(tmp_path / "mlflow.db")
    data = make_npz(tmp_path / "prepared" / "mnist.npz", n_train=40, n_test=12).parent
    overrides = tiny_overrides(mnist_dense={"batch_size": 16})

    def train(fast_step: str, name: str) -> tuple[Path, str]:
        params = write_params(tmp_path / f"{name}.yaml", tracking_uri=store, overrides=overrides, fast_step=fast_step)
        out = tmp_path / name / "seed0"
        argv = ["train", "--params", str(params), "--framework", "torch", "--variant", "mnist_dense", "--seed", "0"]
        argv += ["--data", str(data), "--out", str(out), "--checkpoints", str(tmp_path / name / "checkpoints")]
        assert main(argv) == 0
        return out, capsys.readouterr().out

    eager, _ = train("off", "eager")
    monkeypatch.setenv(FAULT_ENV, "raise")
    fallen, printed = train("on", "fallen")
    lines = [line for line in printed.splitlines() if line.startswith("fast step")]
    assert len(lines) == 1 and lines[0].startswith("fast step fell back: capture failed (RuntimeError"), lines
    record = load_run(fallen)
    decision = record.info["decisions"]["fast_step"]
    assert decision == {"state": "fell back", "reason": lines[0].removeprefix("fast step fell back: ")}
    assert load_run(eager).info["decisions"]["fast_step"]["state"] == "off"
    assert record.history == load_run(eager).history  # trained eagerly, exactly
    run = store_client(store).get_run(record.info["mlflow"]["run_id"])
    assert run.data.tags["cnnrepro.fast_step"] == "fell back"
    assert run.data.tags["cnnrepro.fast_step.reason"] == decision["reason"]
    assert run.data.params["fast_step"] == "True"  # what was asked; the tags say what ran
