"""The typed run config: resolved once, frozen, an ablation a replace of it, and the runs written before it
was typed still read back (tests/data/runs_before_typed_config: two runs written by the code of 45df891,
the last commit with the config as a dict, with the config hash their checkpoints carried)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from cnnrepro.errors import CnnreproError
from cnnrepro.params import PROJECT_ROOT, load_params
from cnnrepro.run_outputs import RunInfo, load_run
from cnnrepro.train.configure import configure_run
from cnnrepro.train.engine import checkpoint as ckpt
from cnnrepro.train.engine.run_config import Prepared, RunConfig, legacy_record
from cnnrepro.variants.registry import get_variant, list_variants

OLD_RUNS = Path(__file__).parent / "data" / "runs_before_typed_config"
SHIPPED = load_params(PROJECT_ROOT / "params.yaml")


def _resolve(variant: str, ablation: str | None = None, device: str = "cpu", framework: str = "torch") -> RunConfig:
    init_from = "runs/torch/feature_extraction_augmented/seed0" if get_variant(variant).continues_from else None
    return configure_run(
        SHIPPED,
        framework=framework,
        variant=variant,
        seed=0,
        data_dir="d",
        out_dir="o",
        init_from=init_from,
        ablation=ablation,
        device=device,
    )


@pytest.mark.parametrize("run", sorted(p.name for p in OLD_RUNS.iterdir()))
def test_a_run_written_before_the_config_was_typed_reads_back_whole(run: str) -> None:
    old = RunInfo.read(OLD_RUNS / run)
    config = RunConfig.from_record(old.config)
    prepared = Prepared.from_record(old.config)  # older runs kept what prepare() found inside the config
    assert legacy_record(config, prepared) == old.config
    # ... so a checkpoint written before resumes after: its config hash is the same.
    expected = (OLD_RUNS / run / "checkpoint_config_hash.txt").read_text().strip()
    assert ckpt.config_hash(legacy_record(config, prepared)) == expected
    assert load_run(OLD_RUNS / run).metrics.status == "completed"  # and the report's reader takes it


def test_old_runs_cover_an_ablation_and_a_keras_backend() -> None:
    configs = {p.name: RunConfig.from_record(RunInfo.read(p).config) for p in OLD_RUNS.iterdir()}
    ablated = configs["torch_mnist_convnet_keras3_rmsprop"]
    assert ablated.ablation is not None and ablated.ablation.changes["optimizer"].ablation == "rmsprop_keras3"
    keras = RunInfo.read(OLD_RUNS / "keras_lenet").config
    assert Prepared.from_record(keras).keras_backend == "tensorflow"


@pytest.mark.parametrize("variant", list_variants())
@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_every_config_round_trips_through_its_record(variant: str, framework: str) -> None:
    config = _resolve(variant, framework=framework)
    assert RunConfig.from_record(config.as_record()) == config
    prepared = Prepared(vgg16_weights_file="w.h5", vgg16_weights_sha256="0" * 64, keras_backend="tensorflow")
    record = legacy_record(config, prepared)
    assert RunConfig.from_record(record) == config
    assert Prepared.from_record(record) == (
        prepared if config.vgg16 else dataclasses.replace(prepared, vgg16_weights_file=None, vgg16_weights_sha256=None)
    )


def test_the_config_is_frozen_and_an_ablation_is_a_replace_of_it() -> None:
    faithful = _resolve("augmentation", device="cuda")
    with pytest.raises(dataclasses.FrozenInstanceError):
        faithful.seed = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        faithful.inputs.augmentation["semantics"] = "2.1.3"  # type: ignore[index]
    semantics = _resolve("augmentation", "keras_2_1_3_augmentation", device="cuda")
    assert (
        semantics.inputs.augmentation["semantics"] == "2.1.3" and faithful.inputs.augmentation["semantics"] == "2.0.8"
    )
    assert dataclasses.replace(semantics, inputs=faithful.inputs, ablation=None) == faithful
    bf16 = faithful.with_settings(precision="bf16")
    assert bf16.mixed_precision and not faithful.mixed_precision  # derived, never stored
    assert not dataclasses.replace(bf16, framework="keras").mixed_precision  # the Keras trainer runs float32


def test_allowed_values_are_declared_on_the_config() -> None:
    config = _resolve("mnist_convnet")
    with pytest.raises(CnnreproError, match="precision 'fp16' is not one of fp32, tf32, bf16"):
        config.with_settings(precision="fp16")
    with pytest.raises(CnnreproError, match="'epochs' is not an ablatable run-config key"):
        config.with_settings(epochs=3)
    with pytest.raises(CnnreproError, match="framework 'jax' is not one of torch, keras"):
        dataclasses.replace(config, framework="jax")
    with pytest.raises(CnnreproError, match="checkpoint_every 0 must be >= 1"):
        dataclasses.replace(config.runtime, checkpoint_every=0)


def test_a_bad_record_is_one_line_naming_the_key() -> None:
    record = _resolve("lenet").as_record()
    del record["loss"]
    with pytest.raises(CnnreproError, match=r"^run_info.json: config: missing key 'loss'$"):
        RunConfig.from_record(record, "run_info.json: config")
    with pytest.raises(CnnreproError, match="expected a mapping, got list"):
        RunConfig.from_record([], "run_info.json: config")  # type: ignore[arg-type]


def _string_key_reads(file: Path) -> list[str]:
    """`config["key"]`, `config.get("key")` and `config["key"] = ...` on a name or attribute called config."""
    found = []
    for node in ast.walk(ast.parse(file.read_text())):
        target = None
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            target = node.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            target = node.func.value
        name = target.id if isinstance(target, ast.Name) else getattr(target, "attr", None)
        if name == "config":
            found.append(f"{file.relative_to(PROJECT_ROOT)}:{node.lineno}")
    return found


def test_no_backend_or_engine_reads_the_config_by_string_key() -> None:
    package = PROJECT_ROOT / "src" / "cnnrepro"
    places = [package / "train", package / "inference", package / "bench", package / "visualize"]
    found = [hit for place in places for file in place.rglob("*.py") for hit in _string_key_reads(file)]
    assert not found, found
