"""The real Snakemake and DVC run the pipeline on tiny fixture data; rerunning with nothing changed does nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .pipeline_project import make_mirror, make_project, run, tiny_params

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


def test_a_stage_dvc_reran_is_not_redone_by_snakemake(tmp_path: Path) -> None:
    """Snakemake trains, `dvc repro --force` reruns the data stage below it (same bytes, new mtime), and
    `snakemake -n` has nothing to do: the profile's checksum limit covers the prepared npz. The fixture's
    npz is over Snakemake's default 1 MB limit, and the control run with that default shows the rerun."""
    project = make_project(tmp_path, tiny_params(make_mirror(tmp_path, n_mnist_train=1500)))
    run_file = "runs/torch/mnist_dense/seed0/metrics.json"
    run(["snakemake", "--cores", "2", run_file], project)
    assert (project / "data/prepared/mnist.npz").stat().st_size > 1_000_000
    before = (project / "data/prepared/mnist.npz").stat().st_mtime_ns
    # Snakemake's onsuccess recorded what it made in dvc.lock: nothing for DVC to do, so force the rerun.
    assert "up to date" in run(["dvc", "status", "prepare_mnist@mnist"], project).stdout
    dvc = run(["dvc", "repro", "--force", "--single-item", "prepare_mnist@mnist"], project)
    assert "Running stage 'prepare_mnist@mnist'" in dvc.stdout
    assert (project / "data/prepared/mnist.npz").stat().st_mtime_ns > before
    dry = run(["snakemake", "-n", run_file], project)
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout + dry.stderr
    control = run(["snakemake", "-n", "--max-checksum-file-size", "1MB", run_file], project)
    assert "updated input files" in control.stdout + control.stderr
