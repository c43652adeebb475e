"""Shared test setup: the project root, and the environment's bin on PATH for subprocess tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ISOLATED_VARIABLES = (
    "CNNREPRO_DATA_MIRROR",
    "CNNREPRO_TRACKING_URI",
    "MLFLOW_TRACKING_URI",
    "CNNREPRO_PARENT_RUN_ID",
    "CNNREPRO_IDX_PINS",
    "DVC_EXP_NAME",  # set by `dvc exp run`: names MLflow runs after the experiment
)

# Subprocess tests call `cnnrepro`, `snakemake` and `dvc` by name, as the pipeline does.
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test inherits a developer's mirror, tracking server or parent run by accident."""
    for name in ISOLATED_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory (project cache, checkpoints) and no Keras cache."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path
