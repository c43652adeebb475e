"""The Keras implementation against the PyTorch port: same architectures (parameter counts, layer output
shapes), same first batch (data order and augmentation), same first step (loss and weights after one
optimizer step from copied weights), the same run outputs through `cnnrepro train --framework keras`, and
the same resume after a kill.

Everything that needs TensorFlow is skipped when it is not importable (the `keras` extra); the missing-
install message and the DAG check run everywhere.
"""

from __future__ import annotations

import copy
import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnnrepro.errors import CnnreproError
from cnnrepro.params import load_params
from cnnrepro.run_outputs import HISTORY_COLUMNS, load_run
from cnnrepro.tracking.store import client as store_client
from cnnrepro.train import vgg16_weights
from cnnrepro.train.backends.torch.models import create_model as create_torch_model
from cnnrepro.train.backends.torch.models import vgg16 as torch_vgg16
from cnnrepro.train.backends.torch.models.layers import count_parameters as torch_count
from cnnrepro.train.backends.torch.optimizers import make_optimizer as make_torch_optimizer
from cnnrepro.train.backends.torch.steps import loss_sum_and_correct
from cnnrepro.train.cli import TAG_RESUMED_AFTER
from cnnrepro.train.configure import configure_run
from cnnrepro.train.engine import checkpoint as ckpt
from cnnrepro.train.engine.epochs import make_iterators
from cnnrepro.train.engine.lifecycle import load_splits
from cnnrepro.train.engine.run_config import RunConfig
from cnnrepro.train.inputs.pipeline import InputPipeline, augmentation
from cnnrepro.variants.registry import get_variant, list_variants

from . import tolerances
from .dag import snakemake_jobs
from .helpers_faults import wait_for
from .helpers_parity import GradientRounding, forward_rounding_bound
from .helpers_train import (
    UNREACHABLE_URL,
    keras_vgg16_weights,
    make_image_folder,
    make_npz,
    needs_tf,
    tiny_overrides,
    write_keras_h5,
    write_params,
)
from .pipeline_project import SHIPPED_PARAMS, make_mirror, make_project, tiny_params
from .test_dag_parity import assert_same_dag

KERAS_MODULES = (
    "cnnrepro.train.backends.keras.trainer",
    "cnnrepro.train.backends.keras.optimizers",
    "cnnrepro.train.backends.keras.models",
)


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return "sqlite:///" + str(tmp_path_factory.mktemp("mlflow") / "mlflow.db")


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("book"), {"train": 3, "validation": 2, "test": 2})


@pytest.fixture(scope="module")
def keras_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("keras_example"), {"train": 2, "validation": 1}, seed=1)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prepared")
    make_npz(root / "mnist.npz", n_train=64, n_test=20)
    make_npz(root / "fashion_mnist.npz", n_train=64, n_test=20, seed=1)
    return root


@pytest.fixture(scope="module")
def vgg_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_keras_h5(tmp_path_factory.mktemp("weights") / "vgg16_notop.h5", keras_vgg16_weights(seed=3))


def _data(variant: str, request: pytest.FixtureRequest) -> Path:
    dataset = get_variant(variant).dataset
    name = {"dogs_vs_cats": "book", "petimages_80_20": "keras_example"}.get(dataset, "prepared")
    return request.getfixturevalue(name)


def _train_argv(params: Path, framework: str, variant: str, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--params",
        str(params),
        "--framework",
        framework,
        "--variant",
        variant,
        "--seed",
        "0",
        "--data",
        str(data),
        "--out",
        str(out),
        "--checkpoints",
        str(out.parent / "checkpoints"),
        *extra,
    ]


# --- without TensorFlow ------------------------------------------------------------------------------


def test_missing_tensorflow_is_one_line_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], prepared: Path, store: str, work: Path
) -> None:
    from cnnrepro.cli import main
    from cnnrepro.train.backends.keras import INSTALL_HINT, import_keras

    monkeypatch.setitem(sys.modules, "keras", None)  # `import keras` now raises ImportError
    for name in KERAS_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
        # `from cnnrepro.train.backends.keras import train` returns the package's attribute when an earlier test set it.
        package, _, attribute = name.rpartition(".")
        monkeypatch.delattr(sys.modules[package], attribute, raising=False)
    with pytest.raises(CnnreproError, match=r"install the extra: pip install -e \.\[keras\]"):
        import_keras()
    params = write_params(work / "params.yaml", tracking_uri=store, frameworks=["torch", "keras"])
    out = work / "runs" / "keras" / "mnist_dense" / "seed0"
    assert main(_train_argv(params, "keras", "mnist_dense", prepared, out)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cnnrepro train: error: --framework keras needs Keras 3") and INSTALL_HINT in err
    assert "\n" not in err
    assert not (out / "metrics.json").exists()


def test_keras_in_params_puts_keras_jobs_in_both_dags(tmp_path: Path) -> None:
    assert SHIPPED_PARAMS["train"]["frameworks"] == ["torch"]  # the extra stays optional by default
    params = tiny_params(make_mirror(tmp_path))
    params["train"]["frameworks"] = ["torch", "keras"]
    params["train"]["variants"] = {
        "pets": ["feature_extraction_augmented"],
        "pets_fine_tuning": ["fine_tuning"],
        "idx": ["lenet"],
        "keras_example": [],
    }
    project = make_project(tmp_path, params)
    jobs = snakemake_jobs(project)
    keras_cmds = [job.cmd for job in jobs if "--framework keras" in job.cmd and job.rule.startswith("train_")]
    assert len(keras_cmds) == 3
    # The test params' one ablation job exists for Keras too (it writes a not_run run: no Keras meaning).
    assert [j.rule for j in jobs if "--framework keras" in j.cmd and "--ablation" in j.cmd] == ["ablate_idx"]
    assert any("--init-from runs/keras/feature_extraction_augmented/seed0" in cmd for cmd in keras_cmds)
    assert assert_same_dag(project) > 0


# --- architectures -----------------------------------------------------------------------------------

TORCH_KINDS = (
    (nn.Conv2d, "conv"),
    (nn.MaxPool2d, "pool"),
    (nn.AvgPool2d, "pool"),
    (nn.Flatten, "flatten"),
    (nn.Dropout, "dropout"),
    (nn.Linear, "dense"),
)


def _torch_shapes(model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]]:
    """(kind, output shape) of every layer-like module in call order, 4-D outputs as channels-last."""
    shapes: list[tuple[str, tuple[int, ...]]] = []

    def hook(kind: str):
        def record(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            shape = tuple(output.shape[1:])
            shapes.append((kind, (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape))

        return record

    handles = []
    for module in model.modules():
        kind = next((kind for cls, kind in TORCH_KINDS if isinstance(module, cls)), None)
        if kind is not None:
            handles.append(module.register_forward_hook(hook(kind)))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    for handle in handles:
        handle.remove()
    return shapes


def _keras_shapes(model: Any) -> list[tuple[str, tuple[int, ...]]]:
    from cnnrepro.train.backends.keras.models import keras, output_shapes

    kinds = {
        keras.layers.Conv2D: "conv",
        keras.layers.MaxPooling2D: "pool",
        keras.layers.AveragePooling2D: "pool",
        keras.layers.Flatten: "flatten",
        keras.layers.Dropout: "dropout",
        keras.layers.Dense: "dense",
    }
    # GlobalAveragePooling2D is skipped: the PyTorch CAM model averages inline in forward(), not in a module.
    return [(kinds[type(layer)], shape) for layer, shape in output_shapes(model) if type(layer) in kinds]


def _freeze_torch(model: nn.Module, trainable: str) -> None:
    if trainable == "head":
        torch_vgg16.freeze_conv_base(model)
    elif trainable == "head+block5":
        torch_vgg16.freeze_conv_base(model, vgg16_weights.FINE_TUNED_LAYERS)


@needs_tf
def test_the_keras_builders_cover_the_registry_exactly() -> None:
    from cnnrepro.train.backends.keras import models

    assert sorted(models.BUILDERS) == sorted(list_variants())


@needs_tf
@pytest.mark.parametrize("variant", list_variants())
def test_keras_model_has_the_torch_parameter_counts_and_layer_shapes(variant: str) -> None:
    from cnnrepro.train.backends.keras import models

    spec = get_variant(variant)
    torch_model = create_torch_model(variant)
    keras_model = models.create_model(variant)
    assert models.count_parameters(keras_model) == torch_count(torch_model)
    _freeze_torch(torch_model, spec.trainable)
    models.set_trainable(keras_model, spec.trainable)
    assert models.count_parameters(keras_model, trainable_only=True) == torch_count(torch_model, trainable_only=True)
    assert _keras_shapes(keras_model) == _torch_shapes(torch_model, spec.input_shape)
    assert tuple(keras_model.inputs[0].shape[1:]) == models.nhwc(variant)


@needs_tf
@pytest.mark.parametrize("style", ["keras1", "keras2"])
def test_vgg16_base_loads_the_keras_h5_as_keras_applications_does(tmp_path: Path, style: str) -> None:
    from cnnrepro.train.backends.keras import models

    weights = keras_vgg16_weights(seed=5)
    base = models.vgg16_conv_base(write_keras_h5(tmp_path / "w.h5", weights, style=style))
    for name, (kernel, bias) in weights.items():
        loaded_kernel, loaded_bias = base.get_layer(name).get_weights()
        np.testing.assert_array_equal(loaded_kernel, kernel)
        np.testing.assert_array_equal(loaded_bias, bias)
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(CnnreproError, match=r"bad\.h5"):
        models.vgg16_conv_base(tmp_path / "bad.h5")


# --- the optimizers ------------------------------------------------------------------------------------


def _apply(keras_optimizer: Any, torch_name: str, lr: float, grads: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The same gradient sequence through a Keras optimizer and a PyTorch one, from the same start."""
    from cnnrepro.train.backends.keras.models import keras

    start = np.linspace(-1, 1, grads[0].size, dtype=np.float32).reshape(grads[0].shape)
    variable = keras.Variable(start)
    param = nn.Parameter(torch.from_numpy(start.copy()))
    torch_optimizer = make_torch_optimizer(torch_name, [param], lr)
    for g in grads:
        keras_optimizer.apply_gradients([(keras.ops.convert_to_tensor(g), variable)])
        param.grad = torch.from_numpy(g.copy())
        torch_optimizer.step()
    return np.asarray(variable.numpy()), param.detach().numpy()


def _assert_same_rule(a: np.ndarray, b: np.ndarray, optimizer: str, lr: float, grads: list[np.ndarray]) -> None:
    gradient_max = max(float(np.abs(g).max()) for g in grads)
    allowed = tolerances.same_rule_bound(optimizer, lr, gradient_max, b, len(grads))
    diff = np.abs(a.astype(np.float64) - b)
    worst = int(np.argmax(diff - allowed))
    assert diff[worst] <= allowed[worst], f"{optimizer}: {diff[worst]:.3g} apart, rounding allows {allowed[worst]:.3g}"


@needs_tf
def test_keras2_rmsprop_is_the_books_rule_and_keras3_rmsprop_is_not() -> None:
    from cnnrepro.train.backends.keras.models import keras
    from cnnrepro.train.backends.keras.optimizers import Keras2RMSprop, make_optimizer

    rng = np.random.default_rng(0)
    # Gradients from 1e-6 to 1e-2: where the two rules part (epsilon inside or outside the root).
    grads = [(rng.standard_normal(200) * 10.0 ** rng.uniform(-6, -2, 200)).astype(np.float32) for _ in range(3)]
    lr = 1e-3
    keras_side, torch_side = _apply(Keras2RMSprop(learning_rate=lr), "rmsprop_keras2", lr, grads)
    _assert_same_rule(keras_side, torch_side, "rmsprop_keras2", lr, grads)
    native, keras3_torch = _apply(make_optimizer("rmsprop_keras3", lr), "rmsprop_keras3", lr, grads)
    _assert_same_rule(native, keras3_torch, "rmsprop_keras3", lr, grads)
    # Keras 3's own RMSprop is not the book's: here its steps fall short by up to ~3x lr.
    assert np.abs(native - torch_side).max() > lr
    sgd, torch_sgd = _apply(keras.optimizers.SGD(learning_rate=0.9), "sgd", 0.9, grads)
    _assert_same_rule(sgd, torch_sgd, "sgd", 0.9, grads)


# --- the first batch and the first step ------------------------------------------------------------------


def _zero_dropout(keras_model: Any, torch_model: nn.Module) -> None:
    """Dropout masks are each framework's own draws; the step is compared without them."""
    from cnnrepro.train.backends.keras.models import keras, leaf_layers

    for layer in leaf_layers(keras_model):
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    for module in torch_model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def _in_keras_layout(
    keras_model: Any, torch_model: nn.Module, value: Callable[[nn.Parameter], torch.Tensor | None]
) -> list[np.ndarray]:
    """value(parameter) for each of the torch model's parameters (None: zeros), in the Keras model's
    get_weights() order and layout."""
    from cnnrepro.train.backends.keras.models import load_torch_weights

    view = copy.deepcopy(torch_model)
    with torch.no_grad():
        for source, target in zip(torch_model.parameters(), view.parameters(), strict=True):
            tensor = value(source)
            target.copy_(tensor if tensor is not None else torch.zeros_like(source))
    load_torch_weights(keras_model, view)
    return [np.asarray(w) for w in keras_model.get_weights()]


@needs_tf
@pytest.mark.parametrize("variant", list_variants())
def test_first_batch_and_first_step_match_the_pytorch_port(
    variant: str, request: pytest.FixtureRequest, store: str, work: Path, vgg_h5: Path
) -> None:
    from cnnrepro.train.backends.keras import models
    from cnnrepro.train.backends.keras import optimizers as optim
    from cnnrepro.train.backends.keras import streams as keras_streams

    spec = get_variant(variant)
    params = write_params(
        work / "params.yaml",
        tracking_uri=store,
        overrides=tiny_overrides(**{variant: {"batch_size": 2}}),
        frameworks=["torch", "keras"],
        vgg16={"path": str(vgg_h5)},
    )
    init_from = work / "init" if spec.continues_from else None
    config = configure_run(
        load_params(params),
        framework="keras",
        variant=variant,
        seed=3,
        data_dir=_data(variant, request),
        out_dir=work / "out",
        init_from=init_from,
        device="cpu",
    )
    config = replace(config, init_from=None)  # the step from copied weights; a continued run is tested below
    splits = load_splits(config)

    # The first training batch, as each framework's loop draws it from the same seed.
    streams = keras_streams.make_streams(
        config, splits["train"], splits["validation"], keras_streams.image_inputs(config)
    )
    x, y = next(streams.train)
    n_train, n_val = len(splits["train"]), len(splits["validation"])
    index = next(make_iterators(3, 2, config.training.validation_steps, n_train, n_val)["train"])
    augment, generator = augmentation(config, torch.device("cpu"))
    pipeline = InputPipeline("images", config.inputs.preprocessing, config.inputs.input_scale, augment, generator)
    x_torch = pipeline(torch.from_numpy(splits["train"].images[index]), train=True)
    # Both sides run the same PyTorch input pipeline from the same seed, so the batches agree bit for bit.
    np.testing.assert_array_equal(x, x_torch.permute(0, 2, 3, 1).numpy())
    labels = torch.from_numpy(splits["train"].labels[index])
    expected_y = keras_streams.targets(labels.numpy(), config.training.loss, len(config.data.classes))
    np.testing.assert_array_equal(y, expected_y)
    # Each epoch's validation batches: the next validation_steps of the same persistent iterator.
    torch_validation = make_iterators(3, 2, config.training.validation_steps, n_train, n_val)["validation"]
    for _ in range(2):
        expected = [next(torch_validation).tolist() for _ in range(config.training.validation_steps)]
        assert [b.tolist() for b in streams.next_validation_batches()] == expected

    torch.manual_seed(0)
    torch_model = create_torch_model(variant)
    keras_model = models.create_model(variant)
    models.load_torch_weights(keras_model, torch_model)
    _freeze_torch(torch_model, spec.trainable)
    models.set_trainable(keras_model, spec.trainable)
    _zero_dropout(keras_model, torch_model)
    torch_trained, keras_trained = torch_model, keras_model
    if spec.training_data == "vgg16_features":
        with torch.no_grad():
            x_torch = torch_model.conv_base(x_torch)
        feature_bound = forward_rounding_bound(torch_model.conv_base, torch.from_numpy(np.moveaxis(x, -1, 1).copy()))
        x = np.asarray(keras_model.layers[0].predict_on_batch(x))
        feature_diff = np.abs(x - x_torch.permute(0, 2, 3, 1).numpy()).max()
        assert feature_diff <= feature_bound, f"VGG16 features differ by {feature_diff:.3g} > {feature_bound:.3g}"
        torch_trained, keras_trained = torch_model.head, models.feature_head(keras_model)

    # The step from the same inputs: the batches' own agreement is checked above.
    same = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1))) if x.ndim == 4 else torch.from_numpy(x)
    assert same.shape == x_torch.shape
    x_torch = same
    logit_bound = forward_rounding_bound(torch_trained, x_torch)
    rounding = GradientRounding(torch_trained)
    torch_params = [p for p in torch_trained.parameters() if p.requires_grad]
    torch_optimizer = make_torch_optimizer(config.training.optimizer, torch_params, config.training.learning_rate)
    torch_trained.train()
    total, _ = loss_sum_and_correct(torch_trained(x_torch), labels, config.training.loss)
    torch_loss = total / len(labels)
    torch_optimizer.zero_grad()
    torch_loss.backward()
    torch_optimizer.step()

    before = [np.asarray(w) for w in keras_model.get_weights()]
    keras_trained.compile(
        optimizer=optim.make_optimizer(config.training.optimizer, config.training.learning_rate),
        loss=optim.make_loss(config.training.loss, variant),
        metrics=["accuracy"],
    )
    keras_loss = keras_trained.train_on_batch(x, y, return_dict=True)["loss"]
    allowed_loss = tolerances.loss_bound(logit_bound, torch_loss.item(), len(labels))
    assert abs(keras_loss - torch_loss.item()) <= allowed_loss, (keras_loss, torch_loss.item(), allowed_loss)

    after = [np.asarray(w) for w in keras_model.get_weights()]
    reference = models.create_model(variant)
    gradient_bounds = rounding.bounds()
    torch_after = _in_keras_layout(reference, torch_model, lambda p: p)
    grads = _in_keras_layout(reference, torch_model, lambda p: p.grad)
    bounds = _in_keras_layout(reference, torch_model, lambda p: torch.full_like(p, gradient_bounds.get(p, 0.0)))
    optimizer, lr = config.training.optimizer, config.training.learning_rate
    for k_before, k_after, t_after, g, d in zip(before, after, torch_after, grads, bounds, strict=True):
        # Frozen layers do not move in either framework; trained ones move in both.
        assert np.array_equal(k_before, k_after) == (not np.any(g)), "a frozen layer moved, or a trained one did not"
        if not np.any(g):
            continue
        diff = np.abs(k_after.astype(np.float64) - t_after)
        allowed = tolerances.first_step_weight_bound(optimizer, lr, g, float(d.flat[0]), t_after)
        worst = int(np.argmax(diff - allowed))
        assert diff.flat[worst] <= allowed.flat[worst], (
            f"{g.shape}: weights differ by {diff.flat[worst]:.3g} where the step allows {allowed.flat[worst]:.3g}"
            f" (gradient {g.flat[worst]:.3g}, its rounding bound {d.flat[0]:.3g}, one step at most"
            f" {tolerances.first_step_ceiling(optimizer, lr, float(np.abs(g).max())):.3g})"
        )


# --- runs through the command --------------------------------------------------------------------------


def _check_run(out: Path, framework: str, variant: str, store: str, epochs: int = 2) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    record = load_run(out)
    assert record.metrics.status == "completed", record.metrics.reason
    assert (record.metrics.framework, record.metrics.variant) == (framework, variant)
    assert len(record.history) == record.metrics.epochs_run == epochs
    assert set(record.history[0]) == set(HISTORY_COLUMNS)
    assert all(np.isfinite(row[k]) for row in record.history for k in HISTORY_COLUMNS)
    assert record.info["framework"] == framework and record.info["config"]["framework"] == framework
    confusion = record.confusion
    assert np.sum(confusion["matrix"]) > 0 and len(confusion["labels"]) == len(get_variant(variant).classes)
    fidelity = json.loads((out / "artifacts" / "fidelity.json").read_text())
    assert fidelity == record.info["fidelity"]
    run = MlflowClient(tracking_uri=store).get_run(record.info["mlflow"]["run_id"])
    assert run.data.tags["framework"] == framework and run.data.tags["status"] == "completed"
    assert run.info.status == "FINISHED"
    return record.info


@needs_tf
@pytest.mark.parametrize("variant", ["baseline", "mnist_convnet", "lenet"])
def test_tiny_runs_in_both_frameworks_write_the_same_contract(
    variant: str, request: pytest.FixtureRequest, store: str, work: Path, capsys: pytest.CaptureFixture
) -> None:
    from cnnrepro.cli import main

    full_validation = get_variant(variant).validation_steps is None
    overrides = tiny_overrides(**{variant: {"batch_size": 4}})
    if full_validation:  # keep the documented "every validation image once per epoch"
        del overrides[variant]["validation_steps"]
    params = write_params(work / "params.yaml", tracking_uri=store, overrides=overrides, frameworks=["torch", "keras"])
    data = _data(variant, request)
    infos = {}
    for framework in ("torch", "keras"):
        out = work / "runs" / framework / variant / "seed0"
        assert main(_train_argv(params, framework, variant, data, out)) == 0
        infos[framework] = _check_run(out, framework, variant, store)
    keras_dir, torch_dir = (work / "runs" / f / variant / "seed0" for f in ("keras", "torch"))
    assert {p.name for p in keras_dir.iterdir()} == {p.name for p in torch_dir.iterdir()}
    assert (keras_dir / "artifacts" / "model.keras").is_file()
    keras_info, torch_info = infos["keras"], infos["torch"]
    if full_validation and get_variant(variant).validation_split == "test":
        # Validation walks the whole test split once per epoch, so the last epoch's figures are the final ones.
        for framework in ("torch", "keras"):
            m = load_run(work / "runs" / framework / variant / "seed0").metrics
            assert m.val_accuracy == pytest.approx(m.test_accuracy, abs=1e-6)
            assert m.val_loss == pytest.approx(m.test_loss, rel=1e-5)
    assert keras_info["packages"]["keras"] and keras_info["prepared"]["keras_backend"] == "tensorflow"
    assert keras_info["device"] == "cpu"
    keras_ids = {e["id"] for e in keras_info["fidelity"]}
    assert {"keras3_framework", "keras_random_draws", "override_epochs"} <= keras_ids
    assert "layout_nchw" in {e["id"] for e in torch_info["fidelity"]} and "layout_nchw" not in keras_ids
    assert ("keras2_rmsprop_rule" in keras_ids) == (variant != "lenet")
    # The same resolved settings, apart from what names the framework and its device.
    differing = {k for k in torch_info["config"] if torch_info["config"][k] != keras_info["config"].get(k)}
    assert differing <= {"framework", "out_dir"}
    for framework in ("torch", "keras"):
        _check_evaluate_and_predict(work / "runs" / framework / variant / "seed0", data, work, capsys)


def _check_evaluate_and_predict(run: Path, data: Path, work: Path, capsys: pytest.CaptureFixture) -> None:
    """`cnnrepro evaluate` reproduces the run's own test figures and `cnnrepro predict`'s labels agree with it,
    whichever framework trained the run."""
    from cnnrepro.cli import main
    from cnnrepro.train.engine.splits import load_npz

    record = load_run(run)
    config = RunConfig.from_record(record.info["config"])
    batch = str(config.training.batch_size)
    if config.data.dataset in ("mnist", "fashion_mnist"):
        target = [config.data.dataset, "--prepared", str(data)]
        test = load_npz(data / f"{config.data.dataset}.npz", tuple(config.data.classes))["test"]
        images, truth = [], []
        for i, (pixels, label) in enumerate(zip(test.images[..., 0], test.labels, strict=True)):
            images.append(work / "digits" / f"{i}.png")
            images[-1].parent.mkdir(exist_ok=True)
            Image.fromarray(pixels, mode="L").save(images[-1])
            truth.append(config.data.classes[label])
    else:
        target = [str(data / "test")]
        images = sorted((data / "test").rglob("*.jpg"))
        truth = [path.parent.name for path in images]
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--data", *target, "--batch-size", batch, "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == len(images)
    assert result["accuracy"] == pytest.approx(record.metrics.test_accuracy, abs=1e-6)
    assert result["loss"] == pytest.approx(record.metrics.test_loss, rel=1e-5)
    assert main(["predict", "--run", str(run), "--device", "cpu", *map(str, images)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["image"] for line in lines] == [str(p) for p in images]
    for line in lines:
        assert sum(line["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert line["probability"] == max(line["probabilities"].values())
    correct = sum(line["label"] == label for line, label in zip(lines, truth, strict=True))
    assert correct / len(images) == pytest.approx(result["accuracy"])
    if record.metrics.framework == "keras":
        broken = work / "broken_run"
        shutil.copytree(run, broken)
        (broken / "artifacts" / "model.keras").write_bytes(b"garbage")
        assert main(["predict", "--run", str(broken), str(images[0])]) == 1
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and f"{broken / 'artifacts' / 'model.keras'}: cannot load" in err
        shutil.rmtree(broken)


@pytest.mark.slow  # three VGG16 runs through the command, one with a backward pass through the whole base
@needs_tf
def test_the_vgg16_chain_in_keras_moves_what_keras_2_0_8_trained(
    book: Path, store: str, work: Path, vgg_h5: Path
) -> None:
    """As it ran: feature_extraction_augmented moves all 13 base kernels (the base left trainable on purpose);
    --ablation frozen_base moves none; fine_tuning after the faithful run moves block5's three and the head."""
    from cnnrepro.cli import main
    from cnnrepro.train.backends.keras import models

    one_step = {"epochs": 1, "steps_per_epoch": 1, "validation_steps": 1, "batch_size": 2}
    overrides = {"feature_extraction_augmented": one_step, "fine_tuning": one_step}
    params = write_params(
        work / "params.yaml", tracking_uri=store, overrides=overrides, vgg16={"path": str(vgg_h5)}, frameworks=["keras"]
    )
    runs = work / "runs" / "keras"
    faithful = runs / "feature_extraction_augmented" / "seed0"
    frozen = runs / "feature_extraction_augmented" / "ablation-frozen_base" / "seed0"
    assert main(_train_argv(params, "keras", "feature_extraction_augmented", book, faithful)) == 0
    info = _check_run(faithful, "keras", "feature_extraction_augmented", store, epochs=1)
    assert info["config"]["vgg16"]["weights_file"] == str(vgg_h5)
    assert "keras3_trainable_base" in {e["id"] for e in info["fidelity"]}
    argv = _train_argv(params, "keras", "feature_extraction_augmented", book, frozen, "--ablation", "frozen_base")
    assert main(argv) == 0
    tuned = runs / "fine_tuning" / "seed0"
    assert main(_train_argv(params, "keras", "fine_tuning", book, tuned, "--init-from", str(faithful))) == 0
    _check_run(tuned, "keras", "fine_tuning", store, epochs=1)

    def weights(run: Path, variant: str) -> dict[str, list[np.ndarray]]:
        model = models.create_model(variant)
        model.load_weights(run / "artifacts" / "model.keras")
        return {layer.name: layer.get_weights() for layer in models.leaf_layers(model) if layer.weights}

    h5 = keras_vgg16_weights(seed=3)
    start, still, end = (
        weights(faithful, "feature_extraction_augmented"),
        weights(frozen, "feature_extraction_augmented"),
        weights(tuned, "fine_tuning"),
    )
    base = [name for name in start if name.startswith("block")]
    assert len(base) == 13
    for name in base:
        assert not np.array_equal(start[name][0], h5[name][0]), f"{name}: the base did not train"
        np.testing.assert_array_equal(still[name][0], h5[name][0])
    for name, arrays in start.items():
        moved = any(not np.array_equal(a, b) for a, b in zip(arrays, end[name], strict=True))
        assert moved == (name.startswith(("block5", "dense"))), name


@needs_tf
def test_vgg_runs_without_weights_are_not_run_and_init_from_must_be_keras(
    book: Path, store: str, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cnnrepro.cli import main

    no_weights = {"url": UNREACHABLE_URL}
    params = write_params(work / "params.yaml", tracking_uri=store, vgg16=no_weights, frameworks=["keras"])
    out = work / "runs" / "keras" / "feature_extraction" / "seed0"
    assert main(_train_argv(params, "keras", "feature_extraction", book, out)) == 0
    record = load_run(out)
    assert record.metrics.status == "not_run" and record.metrics.reason.startswith("ImageNet weights unavailable")
    assert record.info["framework"] == "keras" and not (out / "artifacts" / "model.keras").exists()
    assert "keras3_framework" in {e["id"] for e in record.info["fidelity"]}

    torchvision = write_params(work / "tv.yaml", tracking_uri=store, vgg16={"source": "torchvision"})
    assert main(_train_argv(torchvision, "keras", "feature_extraction", book, work / "tv")) == 0
    assert "Keras trainer loads only the Keras h5" in load_run(work / "tv").metrics.reason

    torch_run = work / "runs" / "torch" / "feature_extraction_augmented" / "seed0"
    torch_run.mkdir(parents=True)
    (torch_run / "metrics.json").write_text(
        json.dumps({"framework": "torch", "variant": "feature_extraction_augmented", "status": "completed"})
    )
    argv = _train_argv(params, "keras", "fine_tuning", book, work / "ft", "--init-from", str(torch_run))
    assert main(argv) == 1
    assert "a Keras run continues a Keras one" in capsys.readouterr().err


# --- killed and resumed --------------------------------------------------------------------------------

KILL_EPOCHS = 6


@needs_tf
def test_killed_keras_training_resumes_to_the_uninterrupted_result(work: Path, store: str) -> None:
    """`cnnrepro train --framework keras` SIGKILLed after an epoch's checkpoint; the rerun resumes from it
    (weights, optimizer, dropout seed state, replayed data and augmentation draws) and ends with the weights
    and history of an uninterrupted run. The augmentation variant: dropout and random augmentation, the
    states a resume is most likely to lose."""
    from cnnrepro.train.backends.keras import models

    variant = "augmentation"
    book = make_image_folder(work / "book", {"train": 8, "validation": 4, "test": 2}, size=(60, 60))
    overrides = {variant: {"epochs": KILL_EPOCHS, "steps_per_epoch": 6, "batch_size": 4, "validation_steps": 2}}
    params = write_params(work / "params.yaml", tracking_uri=store, overrides=overrides, frameworks=["keras"])

    def command(out: str, checkpoints: str) -> list[str]:
        argv = _train_argv(params, "keras", variant, book, work / out)
        argv[argv.index("--checkpoints") + 1] = str(work / checkpoints)
        return ["cnnrepro", *argv]

    log = work / "victim.log"
    checkpoint = ckpt.checkpoint_path(work / "ck", "keras", variant, 0)
    with log.open("w") as sink:
        victim = subprocess.Popen(command("resumed", "ck"), stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: checkpoint.exists() and "epoch 2/" in log.read_text(), 300, "epoch 2", 0.05, victim, log)
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=60) == -signal.SIGKILL
    finally:
        victim.kill()
    killed_after = int(ckpt.decode(Path(checkpoint).read_bytes())["epoch"])
    assert 1 <= killed_after < KILL_EPOCHS
    assert not (work / "resumed" / "metrics.json").exists()

    for out, checkpoints in (("straight", "ck-straight"), ("resumed", "ck")):
        done = subprocess.run(command(out, checkpoints), capture_output=True, text=True, check=False, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"resuming from {checkpoint} after epoch {killed_after}" in done.stdout
    assert not checkpoint.exists()  # removed once the outputs are written

    weights = {}
    for out in ("straight", "resumed"):
        model = models.create_model(variant)
        model.load_weights(work / out / "artifacts" / "model.keras")
        # weights, not variables: a saved model holds no seed-generator state, so a loaded one has a fresh draw.
        weights[out] = {v.path: np.asarray(v.numpy()) for v in model.weights}
    straight, resumed = weights.values()
    different = [name for name in straight if not np.array_equal(straight[name], resumed[name])]
    assert not different, f"weights differ from the uninterrupted run: {different}"
    assert (work / "straight" / "history.csv").read_text() == (work / "resumed" / "history.csv").read_text()
    # MLflow: the resumed run names the epoch it continued after and carries the whole curve.
    run_id = json.loads((work / "resumed" / "run_info.json").read_text())["mlflow"]["run_id"]
    client = store_client(store)
    assert client.get_run(run_id).data.tags[TAG_RESUMED_AFTER] == str(killed_after)
    steps = [m.step for m in client.get_metric_history(run_id, "val_accuracy")]
    assert sorted(steps) == list(range(1, KILL_EPOCHS + 1))
