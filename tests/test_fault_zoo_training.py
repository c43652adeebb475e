"""The second fault zoo, training side: a run that cannot start opens no MLflow run; a failed write is one
line naming the file and the cause, with nothing half-written; a failure after the last epoch is
finished by the rerun, which writes the outputs without training again.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from cnnrepro.cli import main as cli_main
from cnnrepro.errors import CnnreproError
from cnnrepro.tracking.store import ensure_experiment
from cnnrepro.train.engine import checkpoint as ckpt

from .helpers_train import make_npz, shared_store, tiny_overrides, train, write_params

VARIANT = "mnist_dense"
EPOCHS = 2
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    make_npz(tmp_path / "prepared" / "mnist.npz", n_train=64, n_test=32)
    return tmp_path


def _params(project: Path, store: str) -> Path:
    overrides = tiny_overrides(**{VARIANT: {"epochs": EPOCHS}})
    return write_params(project / "params.yaml", tracking_uri=store, overrides=overrides)


def _train_argv(params: Path, *, seed: str = "0", data: str = "prepared", out: str = "run") -> list[str]:
    return [
        "train", "--params", str(params), "--framework", "torch", "--variant", VARIANT, "--seed", seed,
        "--data", data, "--out", out, "--checkpoints", "ck",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seed": "-1"}, "--seed -1: out of range (0 to 4294967295)"),
        ({"seed": str(2**32)}, f"--seed {2**32}: out of range (0 to 4294967295)"),
        ({"data": "missing"}, "--data missing: no such folder"),
        ({"data": "."}, "--data .: mnist.npz missing (no file mnist.npz for mnist)"),
        ({"out": "/proc/run"}, "--out /proc/run: cannot create files in /proc (No such file or directory)"),
    ],
)
def test_run_that_cannot_start_opens_no_mlflow_run(
    project: Path, capsys: pytest.CaptureFixture[str], change: dict[str, str], message: str
) -> None:
    store = project / "store" / "mlflow.db"
    store.parent.mkdir()
    params = _params(project, f"sqlite:///{store}")
    assert cli_main(_train_argv(params, **change)) == 1
    captured = capsys.readouterr()
    assert captured.err == f"cnnrepro train: error: {message}\n" and captured.out == ""
    assert not store.exists()  # no store opened, so no run, FAILED or otherwise
    assert sorted(p.name for p in project.iterdir()) == ["params.yaml", "prepared", "store"]


def _no_larger_files() -> None:
    """In the child: files over 2 MB cannot be written (the checkpoint is ~3 MB, the store stays under);
    SIGXFSZ ignored, so the write fails with EFBIG as a full disk fails with ENOSPC, instead of a kill."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))


def test_failed_checkpoint_write_is_one_line_and_leaves_nothing_half_written(project: Path) -> None:
    store = f"sqlite:///{project / 'mlflow.db'}"
    params = _params(project, store)
    ensure_experiment(store, "train-tests")  # the store exists before the size limit applies
    result = subprocess.run(
        ["cnnrepro", *_train_argv(params)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_no_larger_files,
        env=os.environ | ONE_THREAD,
    )
    assert result.returncode == 1
    last_pt = ckpt.checkpoint_path("ck", "torch", VARIANT, 0)
    assert result.stderr.strip() == f"cnnrepro train: error: {last_pt}: cannot write (File too large)"
    assert not last_pt.exists() and not list(last_pt.parent.glob("*.part"))
    assert not (project / "run" / "metrics.json").exists()
    # The run did start: MLflow records it FAILED.
    client = MlflowClient(tracking_uri=store)
    (run,) = client.search_runs([client.get_experiment_by_name("train-tests").experiment_id])
    assert run.info.status == "FAILED"


def test_failure_after_the_last_epoch_is_finished_without_training_again(
    project: Path, capsys: pytest.CaptureFixture[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    params = _params(project, shared_store(tmp_path_factory))
    out = project / "run"
    out.mkdir()

    def block_outputs(row: dict[str, float]) -> None:
        # After the last epoch's checkpoint: the run folder becomes a file, so no output can be written.
        if row["epoch"] == EPOCHS:
            shutil.rmtree(out)
            out.write_text("in the way\n")

    # run_info.json is the first output written (it marks the folder as this run's), so it names the failure.
    with pytest.raises(CnnreproError, match=r"^run/run_info.json: cannot write \(File exists\)$"):
        train(VARIANT, 0, Path("prepared"), Path("run"), params=params, checkpoints=Path("ck"), hooks=[block_outputs])
    last_pt = ckpt.checkpoint_path("ck", "torch", VARIANT, 0)
    final = ckpt.decode(Path(last_pt).read_bytes())
    assert final["epoch"] == EPOCHS
    capsys.readouterr()

    out.unlink()
    assert train(VARIANT, 0, Path("prepared"), Path("run"), params=params, checkpoints=Path("ck")) == 0
    printed = capsys.readouterr().out
    assert f"resuming from {last_pt} after epoch {EPOCHS}" in printed
    assert "epoch 1/" not in printed and f"epoch {EPOCHS}/" not in printed  # no epoch trained again
    weights = load_file(out / "artifacts" / "model.safetensors")
    assert weights.keys() == final["model"].keys()
    assert all(torch.equal(weights[k], torch.from_numpy(final["model"][k])) for k in weights)
    assert (out / "history.csv").read_text().count("\n") == EPOCHS + 1
    assert not last_pt.exists()  # removed once the outputs are written


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="TensorFlow is not installed")
def test_keras_failure_after_the_last_epoch_is_finished_without_training_again(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # In subprocesses, as a user runs it (and so this process never imports TensorFlow). What is in the way
    # this time: a file where the run's artifacts/ folder goes, found only when the outputs are written.
    params = _params(project, shared_store(tmp_path_factory))
    argv = _train_argv(params)
    argv[argv.index("torch")] = "keras"
    (project / "run").mkdir()
    # The folder is this run's (an earlier run of it left its run_info.json), so the training starts; the
    # file where artifacts/ goes is met only when the outputs are written.
    earlier = {"framework": "keras", "variant": VARIANT, "seed": 0}
    (project / "run" / "run_info.json").write_text(json.dumps(earlier))
    (project / "run" / "artifacts").write_text("in the way\n")

    def train_keras() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["cnnrepro", *argv], cwd=project, capture_output=True, text=True, timeout=600, env=os.environ | ONE_THREAD
        )

    failed = train_keras()
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert (
        failed.stderr.strip().splitlines()[-1]
        == "cnnrepro train: error: run/artifacts/fidelity.json: cannot write (File exists)"
    )
    assert f"epoch {EPOCHS}/{EPOCHS}" in failed.stdout
    last_pt = ckpt.checkpoint_path("ck", "keras", VARIANT, 0)
    final = ckpt.decode(Path(last_pt).read_bytes())
    assert final["epoch"] == EPOCHS and not (project / "run" / "metrics.json").exists()

    (project / "run" / "artifacts").unlink()
    done = train_keras()
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming from {last_pt} after epoch {EPOCHS}" in done.stdout
    assert "epoch 1/" not in done.stdout and f"epoch {EPOCHS}/" not in done.stdout  # no epoch trained again
    history = (project / "run" / "history.csv").read_text().splitlines()
    assert len(history) == EPOCHS + 1 and (project / "run" / "artifacts" / "model.keras").is_file()
    assert [float(line.split(",")[4]) for line in history[1:]] == [row["val_accuracy"] for row in final["history"]]
    assert not last_pt.exists()
