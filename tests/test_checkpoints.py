"""Checkpoints that cannot run code and cannot pass off damage as progress (cnnrepro.train.engine.checkpoint):
each case builds its hostile file itself, then runs the real command and checks the exit, the one line, what
is left on disk and that nothing ran."""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from cnnrepro.cli import main
from cnnrepro.train.engine import checkpoint as ckpt

from .helpers_train import make_npz, write_params

VARIANT = "mnist_dense"


def test_a_state_tree_comes_back_exactly() -> None:
    state = {
        "framework": "torch",
        "epoch": 3,
        "model": {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros((), np.float64)},
        "optimizer": {"state": {0: {"step": np.array(3.0, np.float32)}}, "param_groups": [{"lr": 1e-3, "params": [0]}]},
        "rng": {
            "python": (3, tuple(range(625)), None),
            "numpy": ("MT19937", np.arange(624, dtype=np.uint32), 1, 0, 0.0),
        },
        "iterator": {"rng": {"state": {"state": 2**127 + 5, "inc": 7}}, "index": np.array([], np.int64)},
        "history": [{"epoch": 1, "loss": float("nan"), "val_accuracy": 0.5}],
        "owner": {"mlflow_run_id": "abc"},
    }
    back = ckpt.decode(ckpt.encode(state))
    assert back["optimizer"]["state"][0]["step"].shape == () and list(back["optimizer"]["state"]) == [0]
    assert back["rng"]["python"] == state["rng"]["python"] and isinstance(back["rng"]["numpy"], tuple)
    assert back["iterator"]["rng"]["state"]["state"] == 2**127 + 5 and back["iterator"]["index"].dtype == np.int64
    assert math.isnan(back["history"][0]["loss"])
    for key in ("w", "b"):
        assert back["model"][key].dtype == state["model"][key].dtype
        assert np.array_equal(back["model"][key], state["model"][key])
    with pytest.raises(ckpt.CnnreproError, match="a object at /x is not storable"):
        ckpt.encode({"x": object()})


class _RunsCode:
    """What an attacker leaves in a shared checkpoint folder: unpickling it calls os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    make_npz(tmp_path / "prepared" / "mnist.npz")
    write_params(
        tmp_path / "params.yaml",
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        overrides={VARIANT: {"epochs": 2, "batch_size": 16, "max_train_images": 64}},
    )
    return tmp_path


def _train(project: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    argv = ["train", "--params", str(project / "params.yaml"), "--framework", "torch", "--variant", VARIANT]
    argv += ["--seed", "0", "--data", str(project / "prepared"), "--out", str(project / "run")]
    argv += ["--checkpoints", str(project / "ck")]
    code = main(argv)
    captured = capsys.readouterr()
    return code, [line for line in captured.err.splitlines() if line.strip()], captured.out


def _checkpoint(project: Path) -> Path:
    return ckpt.checkpoint_path(project / "ck", "torch", VARIANT, 0)


def _a_real_checkpoint(project: Path) -> bytes:
    """The checkpoint a real run leaves after epoch 1 (the run is stopped there)."""
    from .helpers_train import train

    def stop(row: dict[str, float]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(
            VARIANT,
            0,
            project / "prepared",
            project / "run",
            params=project / "params.yaml",
            checkpoints=project / "ck",
            hooks=[stop],
        )
    return _checkpoint(project).read_bytes()


@pytest.mark.parametrize("where", [ckpt.FILE_NAME, ckpt.LEGACY_FILE_NAME])
def test_a_pickle_in_the_checkpoint_folder_never_runs(
    where: str, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = project / "pwned"
    planted = _checkpoint(project).with_name(where)
    planted.parent.mkdir(parents=True)
    planted.write_bytes(pickle.dumps({"epoch": 40, "model": _RunsCode(marker)}))
    code, err, out = _train(project, capsys)
    assert not marker.exists()  # nothing was unpickled
    if where == ckpt.LEGACY_FILE_NAME:  # the old format is never read: the run starts over and says so
        assert code == 0 and "old pickle format, never loaded" in out and planted.exists()
    else:
        assert code == 1 and len(err) == 1 and "not a readable checkpoint" in err[0] and str(planted) in err[0]
        assert planted.read_bytes().startswith(b"\x80")  # refused, not overwritten
        assert not (project / "run").exists() and not (project / "mlflow.db").exists()  # before any MLflow run


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda data: data[: len(data) // 2], "not a readable checkpoint"),
        (lambda data: data[:-256] + bytes(256), "do not match their sha256"),
    ],
    ids=["truncated", "256 bytes overwritten"],
)
def test_a_damaged_checkpoint_is_refused_in_one_line_and_kept(
    damage, reason: str, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _a_real_checkpoint(project)
    assert ckpt.decode(data)["epoch"] == 1  # the real one is fine
    _checkpoint(project).write_bytes(damage(data))
    capsys.readouterr()
    code, err, _ = _train(project, capsys)
    assert code == 1 and len(err) == 1 and reason in err[0] and str(_checkpoint(project)) in err[0], err
    assert "Traceback" not in err[0]
    assert _checkpoint(project).read_bytes() == damage(data)  # left as it was, for the person to look at
    assert not (project / "run" / "metrics.json").exists()


def test_a_checkpoint_of_another_framework_is_refused(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _checkpoint(project)
    path.parent.mkdir(parents=True)
    ckpt.save_checkpoint(path, {"framework": "keras", "epoch": 1, "config_hash": "x"})
    code, err, _ = _train(project, capsys)
    assert code == 1 and len(err) == 1 and "written by a keras run, not a torch one" in err[0]
