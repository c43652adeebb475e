"""Training runs that cannot end "completed" on garbage, and `--out` folders nothing destroys (issue 23).

Each case builds its own data, params and MLflow store, runs `cnnrepro train` through the command's own
entry point (cnnrepro.cli.main: exit code and the one stderr line) and checks what is left on disk and
in MLflow.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytest

from cnnrepro.report.collect import ReportSettings, collect_runs
from cnnrepro.report.table import FAILED, build_row
from cnnrepro.run_outputs import load_run
from cnnrepro.tracking.store import client as store_client
from cnnrepro.train.cli import TAG_DIVERGED_AT
from cnnrepro.train.engine import checkpoint as ckpt

from .helpers_train import make_npz, needs_tf, shared_store, tiny_overrides, write_params

VARIANT = "lenet"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return shared_store(tmp_path_factory)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prepared")
    make_npz(root / "fashion_mnist.npz", n_train=64, n_test=16)
    return root


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def train_argv(params: Path, framework: str, data: Path, out: Path, seed: int = 0) -> list[str]:
    return [
        "train", "--params", str(params), "--framework", framework, "--variant", VARIANT, "--seed", str(seed),
        "--data", str(data), "--out", str(out), "--checkpoints", str(out.parent / "checkpoints"),
    ]  # fmt: skip


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], float]:
    """(exit code, stderr lines, seconds) of `cnnrepro <argv>` in this process."""
    import torch

    from cnnrepro.cli import main

    threads = torch.get_num_threads()
    capsys.readouterr()
    started = time.perf_counter()
    try:
        code = main(argv)
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - started
    # MLflow's and alembic's INFO logging (creating a new store's tables) is theirs, not the command's.
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip() and " INFO " not in line]
    return code, lines, seconds


def mlflow_run(store: str, out: Path) -> Any:
    run_id = json.loads((out / "run_info.json").read_text())["mlflow"]["run_id"]
    return store_client(store).get_run(run_id)


# --- a loss that turns non-finite stops the run as diverged -------------------------------------------------

# The schema refuses rates that cannot train (non-finite, above 10), so the test hands each backend's own
# optimizer factory the rate the issue saw pass the old schema, `.inf`: SGD's first update makes the weights
# inf/nan and the first epoch's loss (its second batch on) is nan: a real divergence, in the real loop.
TINY = tiny_overrides(**{VARIANT: {"epochs": 3, "batch_size": 8}})
OPTIMIZER_FACTORY = {
    "torch": "cnnrepro.train.backends.torch.trainer.make_optimizer",
    "keras": "cnnrepro.train.backends.keras.optimizers.make_optimizer",
}


def explode_optimizer(monkeypatch: pytest.MonkeyPatch, framework: str) -> None:
    import importlib

    module, name = OPTIMIZER_FACTORY[framework].rsplit(".", 1)
    real = getattr(importlib.import_module(module), name)
    if framework == "torch":
        monkeypatch.setattr(module + "." + name, lambda kind, params, lr: real(kind, params, lr * math.inf))
    else:
        monkeypatch.setattr(module + "." + name, lambda kind, lr: real(kind, lr * math.inf))


@pytest.mark.parametrize("framework", ["torch", pytest.param("keras", marks=needs_tf)])
def test_a_non_finite_loss_stops_the_run_as_diverged(
    framework: str,
    store: str,
    prepared: Path,
    work: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    explode_optimizer(monkeypatch, framework)
    params = write_params(work / "params.yaml", tracking_uri=store, overrides=TINY, frameworks=["torch", "keras"])
    out = work / "runs" / framework / VARIANT / "seed0"
    code, err, seconds = run_cli(train_argv(params, framework, prepared, out), capsys)

    assert code == 1
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith(f"cnnrepro train: error: {framework}/{VARIANT}/seed0: diverged at epoch 1: loss ")
    record = load_run(out)  # the run contract holds for a diverged run too
    assert record.metrics.status == "diverged" and record.metrics.reason.startswith("diverged at epoch 1: loss ")
    assert record.metrics.epochs_run == len(record.history) == 1 and not math.isfinite(record.history[0]["loss"])
    assert record.info["status"] == "diverged" and record.info["diverged_epoch"] == 1
    assert not (out / "artifacts" / "model.safetensors").exists() and not (out / "artifacts" / "model.keras").exists()
    # The diverged epoch was never checkpointed: the checkpoint, if any, is an earlier finite epoch.
    assert not ckpt.checkpoint_path(out.parent / "checkpoints", framework, VARIANT, 0).exists()
    run = mlflow_run(store, out)
    assert run.info.status == "FAILED"
    assert run.data.tags["status"] == "diverged" and run.data.tags[TAG_DIVERGED_AT] == "1"

    # The report counts it as failed, with the reason.
    settings = ReportSettings(seeds=(0,), frameworks=(framework,), variants=(VARIANT,))
    slots = collect_runs(work / "runs", settings)
    row = build_row(VARIANT, framework, slots, settings)
    assert row.seeds_failed == [0] and row.seeds_completed == []
    assert row.verdict == FAILED and "diverged at epoch 1: loss" in row.verdict_detail
    left = sorted(p.name for p in out.iterdir())
    print(f"TABLE diverged/{framework} | {code} | {err[0]} | {seconds:.1f} s | - | {left}")
