"""Keras trains on the GPU where there is one: Keras 3's torch backend on the project's CUDA torch.

Which backend a run gets is decided before Keras is imported (cnnrepro.train.backends.keras.choose_backend):
torch where the run will be on CUDA, TensorFlow on a CPU, $KERAS_BACKEND when set. There is no CUDA
here, so the Keras code is run on the torch backend on the CPU (KERAS_BACKEND=torch, in a subprocess:
a process has one Keras backend) and must write the same run contract, the backend in run_info and in
the ledger. Keras-on-torch on CUDA itself is for `scripts/gpu-check.sh` (its `keras` part).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnrepro.run_outputs import load_run
from cnnrepro.train.backends.keras import BACKEND_ENV, TORCH_DEVICE_ENV

from .conftest import PROJECT_ROOT
from .helpers_train import make_npz, tiny_overrides, write_params

HAVE_KERAS = subprocess.run([sys.executable, "-c", "import keras"], capture_output=True, check=False).returncode == 0


def _choose(env: dict[str, str], *args: str) -> dict[str, str]:
    """choose_backend(*args) in a fresh process (Keras not yet imported); the two variables it leaves."""
    names = (BACKEND_ENV, TORCH_DEVICE_ENV)
    code = (
        "import json, os; from cnnrepro.train.backends.keras import choose_backend as c; "
        f"c(*{list(args)!r}); print(json.dumps({{k: os.environ.get(k) for k in {names!r}}}))"
    )
    clean = {k: v for k, v in os.environ.items() if k not in (BACKEND_ENV, TORCH_DEVICE_ENV)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=clean | env, capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(out.stdout)


def test_the_backend_follows_the_device_unless_the_user_chose_one() -> None:
    import torch

    auto = "torch" if torch.cuda.is_available() else "tensorflow"
    assert _choose({}, "auto")[BACKEND_ENV] == auto
    assert _choose({}, "cpu") == {BACKEND_ENV: "tensorflow", TORCH_DEVICE_ENV: None}
    assert _choose({}, "cuda:1") == {BACKEND_ENV: "torch", TORCH_DEVICE_ENV: "cuda:1"}
    assert _choose({BACKEND_ENV: "torch"}, "cpu") == {BACKEND_ENV: "torch", TORCH_DEVICE_ENV: "cpu"}
    assert _choose({BACKEND_ENV: "tensorflow"}, "cuda")[BACKEND_ENV] == "tensorflow"  # the user's choice wins
    assert _choose({}, "cpu", "torch")[BACKEND_ENV] == "torch"  # a finished run's own backend (evaluate)


@pytest.mark.slow  # two subprocesses importing Keras, torch and MLflow: 30-50 s on a busy 2-core machine
@pytest.mark.skipif(not HAVE_KERAS, reason="Keras is not installed (pip install -e .[keras])")
def test_a_keras_run_on_the_torch_backend_writes_the_contract_and_records_its_backend(tmp_path: Path) -> None:
    store = "sqlite:///" + str(tmp_path / "mlflow.db")
    data = make_npz(tmp_path / "prepared" / "mnist.npz", n_train=24, n_test=8).parent
    overrides = tiny_overrides(mnist_convnet={"batch_size": 8, "epochs": 2})
    params = write_params(tmp_path / "params.yaml", tracking_uri=store, overrides=overrides, frameworks=["keras"])
    out = tmp_path / "runs" / "keras" / "mnist_convnet" / "seed0"
    argv = ["train", "--params", str(params), "--framework", "keras", "--variant", "mnist_convnet", "--seed", "0"]
    argv += ["--data", str(data), "--out", str(out), "--checkpoints", str(tmp_path / "checkpoints")]
    env = os.environ | {BACKEND_ENV: "torch", "PYTHONPATH": str(PROJECT_ROOT / "src"), "KERAS_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "cnnrepro.cli", *argv], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    record = load_run(out)
    assert record.metrics.status == "completed" and record.metrics.epochs_run == 2
    assert record.info["prepared"]["keras_backend"] == "torch" and record.info["packages"]["keras_backend"] == "torch"
    assert record.info["device"] == "cpu"
    ids = {e["id"] for e in record.info["fidelity"]}
    assert "keras_torch_backend" in ids and "keras3_crossentropy_logits" not in ids
    assert (out / "artifacts" / "model.keras").is_file()
    # Trained: the loss moved (a backend that silently dropped the update would leave it flat).
    assert record.history[0]["loss"] != record.history[1]["loss"]
    evaluate_args = ["--prepared", str(data), "--batch-size", "8", "--device", "cpu"]
    evaluated = subprocess.run(
        [sys.executable, "-m", "cnnrepro.cli", "evaluate", "--run", str(out), "--data", "mnist", *evaluate_args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.loads(evaluated.stdout.splitlines()[-1])["accuracy"] == pytest.approx(record.metrics.test_accuracy)
