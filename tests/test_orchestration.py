"""The real Snakemake and DVC run the pipeline on tiny fixture data; rerunning with nothing changed does nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .pipeline_project import make_project, run

DATA_TARGETS = [
    "data/clean/summary.json",
    "data/split/book",
    "data/split/keras_example",
    "data/prepared/mnist.npz",
    "data/prepared/fashion_mnist.npz",
]


def check_data_outputs(project: Path) -> None:
    summary = json.loads((project / "data/clean/summary.json").read_text())
    assert summary["dropped"] > 0 and summary["kept"] > 0
    for split, n in (("train", 6), ("validation", 3), ("test", 3)):
        for cls in ("cats", "dogs"):
            assert len(list((project / "data/split/book" / split / cls).iterdir())) == n, (split, cls)
    with np.load(project / "data/prepared/mnist.npz") as arrays:
        assert arrays["x_train"].shape == (120, 28, 28)
        assert arrays["x_test"].shape == (40, 28, 28)


def test_data_stages_under_snakemake(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    run(["snakemake", "--cores", "2", *DATA_TARGETS], project)
    check_data_outputs(project)
    for log in ("logs/clean.log", "logs/split.log", "logs/download/petimages.log"):
        assert (project / log).exists(), log
    again = run(["snakemake", "--cores", "2", *DATA_TARGETS], project)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_data_stages_under_dvc(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    run(["dvc", "repro", "split", "prepare_mnist"], project)
    check_data_outputs(project)
    again = run(["dvc", "repro", "split", "prepare_mnist"], project)
    assert "Running stage" not in again.stdout
    assert "up to date" in again.stdout
