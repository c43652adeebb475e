"""Ablations: declared once in params, applied to the resolved run config, run by `cnnrepro train --ablation`."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cnnrepro.errors import CnnreproError
from cnnrepro.params import PROJECT_ROOT, load_params, load_schema
from cnnrepro.run_outputs import load_run
from cnnrepro.train import ablations, vgg16_weights
from cnnrepro.train.backends.keras import ledger as keras_ledger
from cnnrepro.train.backends.torch import ledger as torch_ledger
from cnnrepro.train.backends.torch import trainer as runner
from cnnrepro.train.backends.torch.optimizers import make_optimizer
from cnnrepro.train.backends.torch.steps import train_step
from cnnrepro.train.configure import configure_run
from cnnrepro.train.engine.augmentation_spec import AugmentationSpec
from cnnrepro.train.engine.run_config import ABLATABLE, Prepared, RunConfig
from cnnrepro.train.inputs.augment import augment_batch

from .helpers_train import (
    keras_vgg16_weights,
    make_npz,
    needs_tf,
    shared_store,
    tiny_overrides,
    train,
    write_keras_h5,
    write_params,
)

SHIPPED = load_params(PROJECT_ROOT / "params.yaml")
# The fields run_info.json always has, for a run directory a test writes by hand.
RUN_INFO_FIELDS = {"framework": "torch", "variant": "x", "seed": 0, "status": "completed", "device": "cpu"}
RUN_INFO_FIELDS |= {"started_at": "2026-01-01T00:00:00+00:00"}


def _resolve(
    variant: str, ablation: str | None, framework: str = "torch", params: dict | None = None, device: str = "cpu"
) -> RunConfig:
    init_from = "runs/x/feature_extraction_augmented/seed0" if variant == "fine_tuning" else None
    return configure_run(
        params or SHIPPED,
        framework=framework,
        variant=variant,
        seed=0,
        data_dir="d",
        out_dir="o",
        init_from=init_from,
        ablation=ablation,
        device=device,
    )


# --- declaration -------------------------------------------------------------------------------------


def test_the_schema_allows_exactly_the_ablatable_keys_and_values() -> None:
    schema = load_schema()["$defs"]["ablation_settings"]["properties"]
    assert {key: tuple(spec["enum"]) for key, spec in schema.items()} == {k: tuple(v) for k, v in ABLATABLE.items()}


def test_every_shipped_ablation_changes_every_variant_it_names() -> None:
    names = ablations.definitions(SHIPPED)
    assert {"frozen_base", "keras_2_1_3_augmentation", "bilinear_resize", "keras3_rmsprop"} <= set(names)
    assert {"naive_torch_port", "caffe_preprocessing", "tf32", "bf16"} <= set(names)
    for name, ablation in names.items():
        for variant in ablation.variants:
            config = _resolve(variant, name)
            assert config.ablation is not None and config.ablation.name == name
            if variant != "fine_tuning" or name != "frozen_base":
                assert config.ablation.changes, (variant, name)
            for key, change in config.ablation.changes.items():
                assert config.setting(key) == change.ablation != change.faithful


def test_unknown_or_inapplicable_ablations_are_one_line_errors() -> None:
    with pytest.raises(CnnreproError, match=r"unknown ablation 'nope' \(known: .*frozen_base.*\)"):
        _resolve("mnist_convnet", "nope")
    with pytest.raises(CnnreproError, match="ablation keras3_rmsprop does not apply to lenet"):
        _resolve("lenet", "keras3_rmsprop")
    bad = copy.deepcopy(SHIPPED)
    # MNIST images are never resized (resize_filter None): the setting does not apply, nothing changes.
    bad["ablations"]["definitions"]["bilinear_resize"]["variants"] = ["baseline", "mnist_convnet"]
    with pytest.raises(CnnreproError, match="ablation bilinear_resize changes nothing for mnist_convnet"):
        _resolve("mnist_convnet", "bilinear_resize", params=bad)


def test_settings_change_only_what_they_name_and_keep_derived_keys_in_step() -> None:
    faithful = _resolve("augmentation", None)
    semantics = _resolve("augmentation", "keras_2_1_3_augmentation")
    assert semantics.inputs.augmentation["semantics"] == "2.1.3"
    assert faithful.inputs.augmentation["semantics"] == "2.0.8"
    assert semantics.data.resize_filter == faithful.data.resize_filter == "nearest"  # bilinear_resize is its own
    assert _resolve("augmentation", "bilinear_resize").data.resize_filter == "bilinear"
    # cam_convnet keeps its own (2.1.3) augmentation semantics under an ablation that does not touch them.
    cam = _resolve("cam_convnet", "naive_torch_port")
    assert cam.inputs.augmentation["semantics"] == "2.1.3" and cam.inputs.augmentation["draws"] == "per_batch"
    assert cam.training.optimizer == "rmsprop_torch" and cam.training.weight_init == "torch_default"
    lenet = _resolve("lenet", "naive_torch_port")
    assert lenet.training.optimizer == "sgd" and set(lenet.ablation.changes) == {"weight_init"}
    caffe = _resolve("feature_extraction", "caffe_preprocessing")
    assert caffe.inputs.preprocessing == "caffe" and caffe.inputs.input_scale == 1.0
    assert faithful.runtime.precision == "fp32" and faithful.ablation is None
    # An ablation is a replace: the faithful config is untouched, derived values follow the new settings.
    bf16 = _resolve("mnist_convnet", "bf16", device="cuda")
    assert bf16.mixed_precision and not _resolve("mnist_convnet", None, device="cuda").mixed_precision
    ids = [e["id"] for e in torch_ledger.entries_for(semantics)]
    assert "ablation_keras_2_1_3_augmentation_augmentation_semantics" in ids


def test_what_a_framework_or_device_cannot_express_is_not_run_with_the_reason() -> None:
    naive = _resolve("mnist_convnet", "naive_torch_port")
    assert ablations.not_runnable_reason(naive) is None
    assert "no Keras meaning" in ablations.not_runnable_reason(replace(naive, framework="keras"))
    tf32 = _resolve("mnist_convnet", "tf32")
    assert "CUDA GPUs only" in ablations.not_runnable_reason(tf32)
    assert ablations.not_runnable_reason(_resolve("mnist_convnet", "tf32", device="cuda")) is None
    assert ablations.not_runnable_reason(_resolve("mnist_convnet", "keras3_rmsprop", "keras")) is None


def test_planned_runs_are_checked_against_the_definitions_and_the_chain() -> None:
    planned = ablations.planned_runs(SHIPPED)
    assert ("pets_fine_tuning", "fine_tuning", "frozen_base") in planned
    assert ("pets", "feature_extraction_augmented", "frozen_base") in planned
    for run, message in [
        ({"idx": [{"variant": "lenet", "ablation": "keras3_rmsprop"}]}, "does not apply to lenet"),
        ({"pets": [{"variant": "mnist_convnet", "ablation": "keras3_rmsprop"}]}, "trained by the idx stage"),
        ({"pets_fine_tuning": [{"variant": "fine_tuning", "ablation": "frozen_base"}]}, "which is not planned"),
    ]:
        params = copy.deepcopy(SHIPPED)
        params["ablations"]["run"] = {"pets": [], "pets_fine_tuning": [], "idx": [], "keras_example": []} | run
        with pytest.raises(CnnreproError, match=message):
            ablations.planned_runs(params)


def test_fine_tuning_continues_only_from_the_same_ablation(tmp_path: Path) -> None:
    previous = tmp_path / "fea"
    previous.mkdir()
    faithful_record = replace(_resolve("feature_extraction_augmented", None), out_dir=str(previous)).as_record()
    (previous / "run_info.json").write_text(json.dumps({**RUN_INFO_FIELDS, "config": faithful_record}))
    config = replace(_resolve("fine_tuning", "frozen_base"), init_from=str(previous))
    with pytest.raises(CnnreproError, match=re.escape("under ablation none (faithful); this run is under frozen_base")):
        ablations.check_continues_from(config)
    ablations.check_continues_from(replace(config, ablation=None))


def test_run_directories_and_checkpoints_of_an_ablation_are_its_own() -> None:
    assert ablations.run_dir("runs", "torch", "lenet", 2, "naive_torch_port") == Path(
        "runs/torch/lenet/ablation-naive_torch_port/seed2"
    )
    assert ablations.run_dir("runs", "torch", "lenet", 2) == Path("runs/torch/lenet/seed2")
    assert ablations.checkpoint_root("ck", "tf32") == Path("ck/ablation-tf32")


# --- what the settings do ----------------------------------------------------------------------------


def test_per_batch_augmentation_draws_one_transform_for_the_batch() -> None:
    image = torch.rand(1, 3, 16, 16) * 255
    batch = image.repeat(4, 1, 1, 1)
    book = dict(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2, zoom_range=0.2)
    per_batch = augment_batch(batch, AugmentationSpec(**book, draws="per_batch"), torch.Generator().manual_seed(0))
    per_image = augment_batch(batch, AugmentationSpec(**book), torch.Generator().manual_seed(0))
    assert all(torch.equal(per_batch[0], per_batch[i]) for i in range(1, 4))
    assert not torch.equal(per_image[0], per_image[1])


def test_naive_port_initialization_and_optimizer_are_pytorchs_defaults() -> None:
    torch.manual_seed(0)
    faithful = runner.build_model(_resolve("mnist_convnet", None), Prepared())
    torch.manual_seed(0)
    naive = runner.build_model(_resolve("mnist_convnet", "naive_torch_port"), Prepared())
    first = next(m for m in faithful.modules() if isinstance(m, torch.nn.Conv2d))
    naive_first = next(m for m in naive.modules() if isinstance(m, torch.nn.Conv2d))
    assert torch.count_nonzero(first.bias) == 0 and torch.count_nonzero(naive_first.bias) > 0  # Keras: zero biases
    optimizer = make_optimizer("rmsprop_torch", naive.parameters(), 1e-3)
    assert isinstance(optimizer, torch.optim.RMSprop) and optimizer.defaults["alpha"] == 0.99


# --- the VGG16 chain: what trains --------------------------------------------------------------------


@pytest.fixture(scope="module")
def vgg_params(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("vgg_chain")
    h5 = write_keras_h5(root / "random_vgg16.h5", keras_vgg16_weights(seed=5))
    path = write_params(root / "params.yaml", tracking_uri="sqlite:///x.db", vgg16={"path": str(h5)})
    return load_params(path)


def _chain_config(params: dict, variant: str, ablation: str | None, framework: str = "torch") -> RunConfig:
    return replace(_resolve(variant, ablation, framework, params), init_from=None)


def _weights(params: dict) -> Prepared:
    return Prepared(vgg16_weights_file=params["train"]["vgg16"]["path"])


def _moved_torch_kernels(config: RunConfig, prepared: Prepared) -> set[str]:
    model = runner.build_model(config, prepared)
    before = {n: p.detach().clone() for n, p in model.conv_base.named_parameters() if n.endswith(".weight")}
    optimizer = make_optimizer(config.training.optimizer, [p for p in model.parameters() if p.requires_grad], 1e-3)
    x = torch.rand(1, 3, 150, 150)
    train_step(model, optimizer, x, torch.ones(1, dtype=torch.long), config.training.loss)
    return {
        n.split(".")[0] for n, p in model.conv_base.named_parameters() if n in before and not torch.equal(p, before[n])
    }


def test_torch_one_step_moves_the_base_as_keras_2_0_8_did(vgg_params: dict) -> None:
    all_convs = set(vgg16_weights.CONV_NAMES)
    assert len(all_convs) == 13
    weights = _weights(vgg_params)
    assert _moved_torch_kernels(_chain_config(vgg_params, "feature_extraction_augmented", None), weights) == all_convs
    frozen = _chain_config(vgg_params, "feature_extraction_augmented", "frozen_base")
    assert _moved_torch_kernels(frozen, weights) == set()
    # fine_tuning's freezing (its own run continues from a saved model; the weights do not matter here).
    fine_tuning = _chain_config(vgg_params, "fine_tuning", None)
    assert _moved_torch_kernels(fine_tuning, weights) == set(vgg16_weights.FINE_TUNED_LAYERS)


@needs_tf
def test_keras_one_step_moves_the_base_as_keras_2_0_8_did(vgg_params: dict) -> None:
    from cnnrepro.train.backends.keras import models
    from cnnrepro.train.backends.keras import optimizers as optim
    from cnnrepro.train.backends.keras import trainer as keras_train

    def moved(config: RunConfig) -> set[str]:
        model = keras_train.build_model(config, _weights(vgg_params))
        base = model.layers[0]
        before = {layer.name: np.array(layer.get_weights()[0]) for layer in base.layers if layer.weights}
        model.compile(optimizer=optim.make_optimizer(config.training.optimizer, 1e-3), loss=config.training.loss)
        model.train_on_batch(np.random.default_rng(0).random((1, 150, 150, 3), dtype=np.float32), np.ones((1, 1)))
        return {n for n, w in before.items() if not np.array_equal(base.get_layer(n).get_weights()[0], w)}

    assert models.FINE_TUNING_FIRST_LAYER == "block5_conv1"
    faithful = _chain_config(vgg_params, "feature_extraction_augmented", None, "keras")
    assert moved(faithful) == set(vgg16_weights.CONV_NAMES)
    assert moved(_chain_config(vgg_params, "feature_extraction_augmented", "frozen_base", "keras")) == set()
    assert moved(_chain_config(vgg_params, "fine_tuning", None, "keras")) == set(vgg16_weights.FINE_TUNED_LAYERS)
    assert "keras3_trainable_base" in {e["id"] for e in keras_ledger.entries_for(faithful, Prepared(keras_backend="x"))}


# --- the command -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prepared")
    make_npz(root / "mnist.npz")
    make_npz(root / "fashion_mnist.npz", seed=1)
    return root


def test_train_with_an_ablation_writes_its_own_run_tagged_in_mlflow(
    prepared: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    store = shared_store(tmp_path_factory)
    params = write_params(tmp_path / "params.yaml", tracking_uri=store, overrides=tiny_overrides(mnist_convnet={}))
    out = ablations.run_dir(tmp_path / "runs", "torch", "mnist_convnet", 0, "keras3_rmsprop")
    hooks_seen: list[int] = []
    assert (
        train(
            "mnist_convnet",
            0,
            prepared,
            out,
            params=params,
            checkpoints=tmp_path / "ck",
            ablation="keras3_rmsprop",
            hooks=[lambda row: hooks_seen.append(int(row["epoch"]))],
        )
        == 0
    )
    record = load_run(out)
    assert record.metrics.status == "completed" and hooks_seen == [1, 2]
    config = RunConfig.from_record(record.info["config"])
    assert config.training.optimizer == "rmsprop_keras3" and config.ablation.name == "keras3_rmsprop"
    assert "ablation_keras3_rmsprop_optimizer" in {e["id"] for e in record.info["fidelity"]}
    run = MlflowClient(tracking_uri=store).get_run(record.info["mlflow"]["run_id"])
    assert run.data.tags["ablation"] == "keras3_rmsprop"
    assert run.info.run_name == "torch/mnist_convnet/ablation-keras3_rmsprop/seed0"
    assert not (tmp_path / "ck" / "torch").exists()  # its checkpoints lived under ck/ablation-keras3_rmsprop


def test_an_unknown_ablation_is_one_line_naming_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cnnrepro.cli import main

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())))
    argv = ["train", "--params", str(params), "--framework", "torch", "--variant", "lenet", "--seed", "0"]
    argv += ["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--ablation", "keras3_rmsprop"]
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not apply to lenet" in err[0] and "Traceback" not in err[0]
    assert main([*argv[:-1], "nope"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown ablation 'nope' (known: " in err[0]
    assert not (tmp_path / "o").exists()


def test_the_preflight_checks_the_ablations_own_checkpoint_folder(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cnnrepro.cli import main

    params = write_params(tmp_path / "params.yaml", tracking_uri=f"sqlite:///{tmp_path / 'unused.db'}")
    checkpoints = tmp_path / "ck"
    checkpoints.mkdir()
    (checkpoints / "ablation-keras3_rmsprop").write_text("a file where the ablation's checkpoints go")
    argv = ["train", "--params", str(params), "--framework", "torch", "--variant", "mnist_convnet", "--seed", "0"]
    argv += ["--data", str(prepared), "--out", str(tmp_path / "o"), "--checkpoints", str(checkpoints)]
    assert main([*argv, "--ablation", "keras3_rmsprop"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--checkpoints" in err[0] and "ablation-keras3_rmsprop" in err[0], err
    assert not (tmp_path / "o").exists() and not (tmp_path / "unused.db").exists()  # no MLflow run opened


def test_the_ledger_says_why_the_base_trains_and_frozen_base_does_not_claim_it() -> None:
    faithful = _resolve("feature_extraction_augmented", None)
    assert faithful.training.trainable == "all" and _resolve("fine_tuning", None).training.trainable == "head+block5"
    entry = next(e for e in torch_ledger.entries_for(faithful) if e["id"] == "vgg16_base_trained_as_2_0_8_ran")
    for evidence in ("c25fa38", "71-74 s", "32-33 s", "#21, #75, #93", "keras-team/keras #8792"):
        assert evidence in entry["source"] + entry["reason"], evidence
    frozen = _resolve("feature_extraction_augmented", "frozen_base")
    ids = {e["id"] for e in torch_ledger.entries_for(frozen)}
    assert "vgg16_base_trained_as_2_0_8_ran" not in ids and "ablation_frozen_base_trainable" in ids
    keras_ids = {e["id"] for e in keras_ledger.entries_for(replace(faithful, framework="keras"))}
    assert "keras3_trainable_base" in keras_ids and "vgg16_base_trained_as_2_0_8_ran" not in keras_ids


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda a: a["definitions"]["tf32"]["settings"].update(epochs=3), "ablations.definitions.tf32.settings.epochs"),
        (
            lambda a: a["definitions"]["tf32"]["settings"].update(precision="fp16"),
            "ablations.definitions.tf32.settings",
        ),
        (lambda a: a["run"]["idx"].append({"variant": "resnet", "ablation": "tf32"}), "ablations.run.idx"),
        (lambda a: a.pop("run"), "ablations.run: missing key"),
    ],
)
def test_bad_ablation_params_name_the_key(tmp_path: Path, mutate, expected: str) -> None:
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    mutate(raw["ablations"])
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(CnnreproError, match=re.escape(expected)):
        load_params(path)
