"""`cnnrepro bench --pipeline` (make bench-gpu): the trainings Snakemake would run, counted and timed in a
scratch copy. The parts here; the whole command on a tiny project in the slow test. No wall-time assertions."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from cnnrepro import cli
from cnnrepro.bench import flops
from cnnrepro.bench.pipeline import (
    PipelineBench,
    VariantRow,
    images_per_epoch,
    pipeline_params,
    pipeline_table,
    train_macs_per_image,
    training_targets,
    write_random_vgg16,
)
from cnnrepro.orchestration.stages import training_rules
from cnnrepro.params import load_params
from cnnrepro.train.backends.torch.models import create_model
from cnnrepro.train.backends.torch.models.vgg16 import VGG16Base, convert_keras_vgg16
from cnnrepro.train.configure import configure_run
from cnnrepro.train.engine.run_config import RunConfig

from .conftest import PROJECT_ROOT
from .helpers_faults import project_with_profiles, set_params
from .helpers_train import make_image_folder, make_npz
from .pipeline_project import run


def test_targets_and_rules_are_the_workflows() -> None:
    params = load_params(PROJECT_ROOT / "params.yaml")
    assert training_rules() == ("train_pets", "train_pets_fine_tuning", "train_idx", "train_keras_example")
    train = params["train"]
    variants = [v for group in train["variants"].values() for v in group]
    targets = training_targets(params)
    assert len(targets) == len(train["frameworks"]) * len(variants) * len(train["seeds"])
    assert "runs/torch/fine_tuning/seed2/metrics.json" in targets


def test_pipeline_params_keep_the_chosen_variants_and_scale_epochs() -> None:
    params = load_params(PROJECT_ROOT / "params.yaml")
    local = pipeline_params(params, ["baseline", "lenet"], [0], 0.1)
    groups = local["train"]["variants"]
    assert groups == {"pets": ["baseline"], "pets_fine_tuning": [], "idx": ["lenet"], "keras_example": []}
    assert local["train"]["seeds"] == [0]
    assert local["train"]["overrides"] == {"baseline": {"epochs": 3}, "lenet": {"epochs": 1}}  # 30 and 10 x 0.1
    assert params["train"]["overrides"] == {}  # a copy


def test_random_vgg16_file_loads_as_the_keras_notop_weights(tmp_path: Path) -> None:
    state = convert_keras_vgg16(write_random_vgg16(tmp_path / "vgg.h5"))
    expected = VGG16Base().state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in expected.items()}


SHIPPED = load_params(PROJECT_ROOT / "params.yaml")


def _config(variant: str, data_dir: str = "d", **training: object) -> RunConfig:
    config = configure_run(
        SHIPPED, framework="torch", variant=variant, seed=0, data_dir=data_dir, out_dir="o", device="cpu"
    )
    return replace(config, training=replace(config.training, **training))


def test_images_per_epoch(tmp_path: Path) -> None:
    assert images_per_epoch(_config("baseline", steps_per_epoch=100, batch_size=20), tmp_path) == 2000
    make_npz(tmp_path / "prepared" / "mnist.npz", n_train=70, n_test=10)
    idx = _config("mnist_dense", "prepared", steps_per_epoch=None, batch_size=4)
    assert images_per_epoch(idx, tmp_path) == 70
    assert images_per_epoch(replace(idx, data=replace(idx.data, max_train_images=50)), tmp_path) == 50
    make_image_folder(tmp_path / "book", {"train": 3, "validation": 1})
    book = _config("baseline", str(tmp_path / "book"), steps_per_epoch=None, batch_size=4)
    assert images_per_epoch(book, tmp_path) == 6


def test_training_arithmetic_counts_only_what_trains() -> None:
    config = _config("baseline")
    with torch.device("meta"):
        costs = flops.layer_costs(create_model("baseline"), torch.zeros(1, 3, 150, 150))
    assert train_macs_per_image(config) == flops.train_macs(costs)
    features = _config("feature_extraction")
    assert features.training.trainable == "head" and features.training.training_data == "vgg16_features"
    assert train_macs_per_image(features) == 3 * (8192 * 256 + 256) - 8192 * 256  # two Dense layers, no dX first


def test_table_names_failures_and_shows_the_log() -> None:
    rows = [
        VariantRow("baseline", 2, 2, 10.0, 9.0, 1000.0, 0.5, 0.25),
        VariantRow("lenet", 1, 0, reasons=["seed0: no outputs"]),
    ]
    text = pipeline_table(PipelineBench(8, 4, 30.0, 1, "not needed", 2.0, "peak src", rows, "line1\nMissingInputError"))
    assert "2/2" in text and "0/1" in text and "25.0%" in text
    assert "2 of 3 trainings in 30.0 s wall (snakemake --cores 8, runs_per_gpu 4, exit 1)" in text
    assert "lenet seed0: no outputs" in text and "MissingInputError" in text


@pytest.mark.slow
def test_bench_pipeline_times_the_trainings_in_a_scratch_copy(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    project = project_with_profiles(tmp_path)
    set_params(project, lambda p: p["train"].update(seeds=[0, 1]))
    run(["snakemake", "--cores", "2", "data/prepared/mnist.npz", "data/prepared/fashion_mnist.npz"], project)
    store_written = (project / "mlflow.db").stat().st_mtime_ns  # by the data stages' pipeline hooks
    argv = ["bench", "--params", str(project / "params.yaml"), "--pipeline", "--variants", "mnist_dense"]
    code = cli.main([*argv, "--cores", "2", "--device", "cpu", "--out", str(tmp_path / "p.json")])
    out = capsys.readouterr().out
    assert code == 0, out
    (row,) = json.loads((tmp_path / "p.json").read_text())["rows"]
    assert row["variant"] == "mnist_dense" and row["completed"] == 2 and row["images_per_s"] > 0
    assert "2 of 2 trainings" in out and "VGG16 weights: not needed" in out
    # The project is untouched: no runs or checkpoints, its MLflow store not written.
    assert not (project / "runs").exists() and not (project / "checkpoints").exists()
    assert (project / "mlflow.db").stat().st_mtime_ns == store_written
    assert yaml.safe_load((project / "params.yaml").read_text())["train"]["seeds"] == [0, 1]
