"""The training engine: Keras generator semantics, config resolution, the fidelity ledger, every
variant training a few steps on tiny data, resume == uninterrupted, and not_run runs."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from cnnrepro.errors import CnnreproError
from cnnrepro.params import load_params
from cnnrepro.run_outputs import HISTORY_COLUMNS, load_run
from cnnrepro.train.backends.torch import ledger as torch_ledger
from cnnrepro.train.backends.torch.loop import InputPipeline
from cnnrepro.train.backends.torch.models.vgg16 import convert_keras_vgg16
from cnnrepro.train.backends.torch.steps import DeviceSplit, evaluate
from cnnrepro.train.configure import configure_run
from cnnrepro.train.engine import checkpoint as ckpt
from cnnrepro.train.engine.epochs import KerasIterator
from cnnrepro.train.engine.splits import load_image_split, load_npz
from cnnrepro.train.inputs.pipeline import scale_input

from .helpers_train import (
    UNREACHABLE_URL,
    keras_vgg16_weights,
    make_image_folder,
    make_npz,
    read_run,
    shared_store,
    tiny_overrides,
    train,
    write_keras_h5,
    write_params,
)

RUN_INFO_KEYS = {
    "framework",
    "variant",
    "seed",
    "status",
    "device",
    "started_at",
    "finished_at",
    "duration_s",
    "train_duration_s",
    "packages",
    "git_commit",
    "data_manifest_sha256",
    "mlflow",
    "config",
    "fidelity",
    "overrides",
}


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return shared_store(tmp_path_factory)


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("book"), {"train": 4, "validation": 2, "test": 2})


@pytest.fixture(scope="module")
def small_book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """For the VGG16 variants, whose 150x150 forward pass costs ~15 GFLOP per image."""
    return make_image_folder(tmp_path_factory.mktemp("small_book"), {"train": 2, "validation": 1, "test": 1}, seed=2)


@pytest.fixture(scope="module")
def keras_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("keras_example"), {"train": 3, "validation": 2}, seed=1)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prepared")
    make_npz(root / "mnist.npz")
    make_npz(root / "fashion_mnist.npz", seed=1)
    return root


def _mlflow_run(store: str, run_id: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    return client, client.get_run(run_id)


# --- Keras generator semantics ---------------------------------------------------------------------


def test_iterator_cycles_like_flow_from_directory() -> None:
    it = KerasIterator(2000, 32, shuffle=True, seed=0)
    first_pass = [next(it) for _ in range(63)]
    assert [len(b) for b in first_pass] == [32] * 62 + [16]
    assert sorted(np.concatenate(first_pass).tolist()) == list(range(2000))
    second = next(it)  # a new pass: a fresh permutation
    assert len(second) == 32
    assert not np.array_equal(second, first_pass[0])
    assert it.total_batches_seen == 64
    # Divisible: 100 full batches of 20, then a reshuffle.
    it = KerasIterator(2000, 20, shuffle=True, seed=0)
    sizes = [len(next(it)) for _ in range(100)]
    assert sizes == [20] * 100 and it.batch_index == 0
    it = KerasIterator(5, 2, shuffle=False)
    assert [next(it).tolist() for _ in range(4)] == [[0, 1], [2, 3], [4], [0, 1]]


def test_iterator_samples_per_epoch_and_state_round_trip() -> None:
    it = KerasIterator(2000, 32, shuffle=True, seed=1)
    epoch1 = [next(it) for _ in range(100)]
    assert sum(map(len, epoch1)) == 62 * 32 + 16 + 37 * 32  # 1.6 passes, the short batch inside
    state = it.state_dict()
    expected = [next(it) for _ in range(70)]
    other = KerasIterator(2000, 32, shuffle=True, seed=99)
    other.load_state_dict(state)
    assert all(np.array_equal(a, b) for a, b in zip(expected, (next(other) for _ in range(70)), strict=True))


def test_iterators_are_seeded_by_the_run_seed() -> None:
    a, b, c = (KerasIterator(100, 10, shuffle=True, seed=[s, 1]) for s in (0, 0, 1))
    assert np.array_equal(next(a), next(b))
    assert not np.array_equal(next(a), next(c))


def test_validation_is_the_batch_size_weighted_mean() -> None:
    class Fixed(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:, :1] * 0 + torch.arange(len(x), dtype=torch.float32)[:, None] - 2.5

    x = torch.zeros(5, 1, 1, 1)
    y = torch.tensor([0, 1, 1, 0, 1])
    split = DeviceSplit(x, y)
    batches = [np.array([0, 1, 2]), np.array([3, 4])]
    result = evaluate(Fixed(), split, iter(batches), InputPipeline("features"), "binary_crossentropy")
    # logits per batch: [-2.5, -1.5, -0.5] and [-2.5, -1.5]: correct = 1, 0, 0, 1, 0 -> 2 / 5 (not (1/3 + 1/2) / 2)
    assert result["accuracy"] == pytest.approx(2 / 5)
    logits = torch.tensor([-2.5, -1.5, -0.5, -2.5, -1.5])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())
    assert result["loss"] == pytest.approx(float(bce), rel=1e-6) and result["n"] == 5


# --- data --------------------------------------------------------------------------------------------


def test_image_folder_decodes_once_resized_with_the_chosen_filter(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "d", {"train": 3}, size=(37, 53))
    gray = tmp_path / "d" / "train" / "dogs" / "gray.png"
    Image.fromarray(np.full((20, 20), 128, dtype=np.uint8), mode="L").save(gray)
    near = load_image_split(root / "train", (150, 150), "nearest", ("cats", "dogs"))
    bil = load_image_split(root / "train", (150, 150), "bilinear")
    assert near.images.shape == (7, 150, 150, 3) and near.images.dtype == np.uint8
    assert near.labels.tolist() == [0, 0, 0, 1, 1, 1, 1] and near.classes == ("cats", "dogs")
    assert not np.array_equal(near.images, bil.images)
    # Nearest only copies source pixels: every value of a resized image occurs in its source.
    source = np.asarray(Image.open(root / "train" / "cats" / "0.jpg").convert("RGB"))
    assert set(np.unique(near.images[0])) <= set(np.unique(source))
    assert (near.images[6] == 128).all()  # grayscale -> 3 equal channels


def test_bad_data_is_named_in_one_line(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "d", {"train": 1})
    with pytest.raises(CnnreproError, match=r"class folders \['cats', 'dogs'\], expected \['a', 'b'\]"):
        load_image_split(root / "train", (8, 8), "nearest", ("a", "b"))
    (root / "train" / "cats" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(CnnreproError, match=r"broken\.jpg: cannot decode image") as info:
        load_image_split(root / "train", (8, 8), "nearest")
    assert "\n" not in str(info.value)
    np.savez(tmp_path / "m.npz", x_train=np.zeros((2, 28, 28), np.uint8), y_train=np.zeros(2, np.uint8))
    with pytest.raises(CnnreproError, match=r"m\.npz: missing arrays x_test, y_test"):
        load_npz(tmp_path / "m.npz", tuple("0123456789"))
    with pytest.raises(CnnreproError, match="run the prepare_mnist stage"):
        load_npz(tmp_path / "none.npz", tuple("0123456789"))


def test_caffe_preprocessing_is_bgr_minus_mean() -> None:
    x = torch.tensor([10.0, 20.0, 30.0]).view(1, 3, 1, 1)
    assert scale_input(x, "caffe", 1.0).flatten().tolist() == pytest.approx([30 - 103.939, 20 - 116.779, 10 - 123.68])
    assert scale_input(x, "scale", 1 / 255).flatten().tolist() == pytest.approx([10 / 255, 20 / 255, 30 / 255])


# --- config and ledger -------------------------------------------------------------------------------


def _params(tmp_path: Path, **kw: object) -> dict:
    return load_params(write_params(tmp_path / "params.yaml", tracking_uri="sqlite:///x.db", **kw))


def test_config_applies_overrides_and_records_them_as_departures(tmp_path: Path) -> None:
    params = _params(tmp_path, overrides={"baseline": {"epochs": 3, "learning_rate": 0.01}})
    config = configure_run(params, framework="torch", variant="baseline", seed=1, data_dir="d", out_dir="o")
    resolved = (
        config.training.epochs,
        config.training.learning_rate,
        config.training.batch_size,
        config.training.steps_per_epoch,
    )
    assert resolved == (3, 0.01, 20, 100)
    assert config.runtime.device == "cpu" and config.mixed_precision is False
    assert config.data.resize_filter == "nearest" and config.inputs.input_scale == pytest.approx(1 / 255)
    entries = {e["id"]: e for e in torch_ledger.entries_for(config)}
    assert entries["override_epochs"]["source"] == "30" and entries["override_epochs"]["port"] == "3"
    assert entries["override_learning_rate"]["source"] == "0.0001"
    assert {"layout_nchw", "bce_with_logits", "random_draws"} <= set(entries)
    assert "mnist_monitoring" not in entries and "resize_filter_2_1_3" not in entries
    plain = configure_run(_params(tmp_path), framework="torch", variant="baseline", seed=1, data_dir="d", out_dir="o")
    assert not [e for e in torch_ledger.entries_for(plain) if e["id"].startswith("override_")]


def test_config_follows_semantics_and_vgg_options(tmp_path: Path) -> None:
    params = _params(tmp_path, augmentation_semantics="2.1.3", vgg16={"preprocessing": "caffe"}, precision="bf16")
    aug = configure_run(params, framework="torch", variant="augmentation", seed=0, data_dir="d", out_dir="o")
    assert aug.inputs.augmentation["semantics"] == "2.1.3" and aug.data.resize_filter == "bilinear"
    assert aug.mixed_precision is False  # bf16 autocast on CUDA only
    ids = {e["id"] for e in torch_ledger.entries_for(aug)}
    assert {"augmentation_2_1_3", "resize_filter_2_1_3", "augmentation_engine"} <= ids
    fe = configure_run(params, framework="torch", variant="feature_extraction", seed=0, data_dir="d", out_dir="o")
    assert fe.inputs.preprocessing == "caffe" and "vgg16_caffe_input" in {e["id"] for e in torch_ledger.entries_for(fe)}
    cam = configure_run(params, framework="torch", variant="cam_convnet", seed=0, data_dir="d", out_dir="o")
    assert cam.inputs.augmentation["semantics"] == "2.1.3" and cam.inputs.input_scale == 1.0
    mnist = configure_run(params, framework="torch", variant="mnist_dense", seed=0, data_dir="d", out_dir="o")
    assert "mnist_monitoring" in {e["id"] for e in torch_ledger.entries_for(mnist)}
    on_cuda = replace(mnist, runtime=replace(mnist.runtime, device="cuda"))
    assert "cuda_nondeterminism" in {e["id"] for e in torch_ledger.entries_for(on_cuda)}


def test_init_from_is_required_exactly_for_fine_tuning(tmp_path: Path) -> None:
    params = _params(tmp_path)
    with pytest.raises(CnnreproError, match="pass --init-from"):
        configure_run(params, framework="torch", variant="fine_tuning", seed=0, data_dir="d", out_dir="o")
    with pytest.raises(CnnreproError, match="--init-from is not allowed"):
        configure_run(params, framework="torch", variant="lenet", seed=0, data_dir="d", out_dir="o", init_from="r")


# --- every variant trains a few steps -----------------------------------------------------------


def _check_completed_run(out: Path, store: str, variant: str, epochs: int, n_scored: int, split: str = "test") -> dict:
    record = load_run(out)  # the report's own reader accepts it
    m = record.metrics
    assert m.status == "completed" and m.variant == variant and m.epochs_run == epochs
    assert len(record.history) == epochs and [r["epoch"] for r in record.history] == list(range(1, epochs + 1))
    assert m.val_accuracy == record.history[-1]["val_accuracy"]
    assert 1 <= m.best_epoch <= epochs
    info = record.info
    assert set(info) >= RUN_INFO_KEYS
    assert info["status"] == "completed" and info["train_duration_s"] > 0
    assert info["packages"]["torch"] == torch.__version__.split("+")[0] or info["packages"]["torch"]
    assert len(info["data_manifest_sha256"]) == 64
    ids = [e["id"] for e in info["fidelity"]]
    assert "override_epochs" in ids and "random_draws" in ids
    confusion = record.confusion
    assert confusion["split"] == split and np.sum(confusion["matrix"]) == n_scored
    assert len(confusion["labels"]) == len(confusion["matrix"])
    assert (out / "artifacts" / "model.safetensors").is_file() and (out / "artifacts" / "fidelity.json").is_file()
    client, run = _mlflow_run(store, info["mlflow"]["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["status"] == "completed" and run.data.tags["variant"] == variant
    assert run.data.params["learning_rate"] == str(info["config"]["learning_rate"])
    steps = [h.step for h in client.get_metric_history(run.info.run_id, "val_accuracy")]
    assert steps == list(range(1, epochs + 1))
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "history.csv", "artifacts"} <= artifacts
    return read_run(out)


FAST_VARIANTS = {
    # variant: (data fixture, overrides, images scored at the end)
    "baseline": ("book", {}, 4),
    "mnist_convnet": ("prepared", {"batch_size": 16}, 60),
    "mnist_dense": ("prepared", {"batch_size": 16, "steps_per_epoch": None}, 60),
    "lenet": ("prepared", {"batch_size": 32, "steps_per_epoch": None, "max_train_images": 64}, 60),
}


@pytest.mark.parametrize("variant", list(FAST_VARIANTS))
def test_variant_trains_a_few_steps(variant: str, request: pytest.FixtureRequest, store: str, work: Path) -> None:
    fixture, extra, n_scored = FAST_VARIANTS[variant]
    overrides = tiny_overrides(**{variant: extra})
    overrides[variant] = {k: v for k, v in overrides[variant].items() if v is not None}
    params = write_params(work / "params.yaml", tracking_uri=store, overrides=overrides)
    out = work / "runs" / "torch" / variant / "seed0"
    assert train(variant, 0, request.getfixturevalue(fixture), out, params=params, checkpoints=work / "ck") == 0
    run = _check_completed_run(out, store, variant, 2, n_scored)
    assert not ckpt.checkpoint_path(work / "ck", "torch", variant, 0).exists()  # removed after success
    if variant == "lenet":
        assert run["info"]["config"]["max_train_images"] == 64


@pytest.mark.parametrize("variant", ["augmentation", "cam_convnet"])
def test_augmented_variant_trains_a_few_steps(
    variant: str, request: pytest.FixtureRequest, store: str, work: Path
) -> None:
    data = request.getfixturevalue("book" if variant == "augmentation" else "keras_example")
    params = write_params(work / "params.yaml", tracking_uri=store, overrides=tiny_overrides(**{variant: {}}))
    out = work / "runs" / "torch" / variant / "seed0"
    assert train(variant, 0, data, out, params=params, checkpoints=work / "ck") == 0
    _check_completed_run(out, store, variant, 2, 4, split="test" if variant == "augmentation" else "validation")


@pytest.fixture(scope="module")
def test_only_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights in the Keras file layout (the book's old naming): the real loading path, not ImageNet."""
    path = tmp_path_factory.mktemp("vgg") / "test_only_random_vgg16.h5"
    return write_keras_h5(path, keras_vgg16_weights(seed=1), style="keras1")


def test_feature_extraction_trains_the_head_on_cached_features(
    small_book: Path, store: str, work: Path, test_only_h5: Path
) -> None:
    book = small_book
    overrides = tiny_overrides(feature_extraction={"steps_per_epoch": 3, "validation_steps": 1})
    params = write_params(
        work / "params.yaml",
        tracking_uri=store,
        overrides=overrides,
        vgg16={"path": str(test_only_h5), "url": UNREACHABLE_URL},
    )
    out = work / "runs" / "torch" / "feature_extraction" / "seed0"
    assert train("feature_extraction", 0, book, out, params=params, checkpoints=work / "ck") == 0
    run = _check_completed_run(out, store, "feature_extraction", 2, 2)
    prepared = run["info"]["prepared"]  # what the backend found, beside the config it does not change
    assert prepared["vgg16_weights_file"] == str(test_only_h5) and len(prepared["vgg16_weights_sha256"]) == 64
    assert "weights_file" not in run["info"]["config"]["vgg16"]
    model = load_file(out / "artifacts" / "model.safetensors")
    for key, tensor in convert_keras_vgg16(test_only_h5).items():
        assert torch.equal(model[f"conv_base.{key}"], tensor), key
    # validation_steps 1 x batch 2: each epoch scores one shuffled batch of 2 images, so 0, 0.5 or 1.
    assert {r["val_accuracy"] for r in load_run(out).history} <= {0.0, 0.5, 1.0}


@pytest.mark.slow  # three VGG16 runs through the command, one with a backward pass through the whole base
def test_the_vgg16_chain_moves_what_keras_2_0_8_trained(
    small_book: Path, store: str, work: Path, test_only_h5: Path
) -> None:
    """feature_extraction_augmented as it ran moves all 13 base kernels; under frozen_base none;
    fine_tuning after the faithful run moves block5's three only (and continues from the run's weights)."""
    book = small_book
    one_step = {"epochs": 1, "steps_per_epoch": 1}
    overrides = tiny_overrides(feature_extraction_augmented=one_step, fine_tuning=one_step)
    params = write_params(
        work / "params.yaml",
        tracking_uri=store,
        overrides=overrides,
        vgg16={"path": str(test_only_h5), "url": UNREACHABLE_URL},
    )
    runs = work / "runs" / "torch"
    fea_out, ft_out = runs / "feature_extraction_augmented" / "seed0", runs / "fine_tuning" / "seed0"
    frozen_out = runs / "feature_extraction_augmented" / "ablation-frozen_base" / "seed0"
    assert train("feature_extraction_augmented", 0, book, fea_out, params=params, checkpoints=work / "ck") == 0
    _check_completed_run(fea_out, store, "feature_extraction_augmented", 1, 2)
    assert (
        train(
            "feature_extraction_augmented",
            0,
            book,
            frozen_out,
            params=params,
            checkpoints=work / "ck",
            ablation="frozen_base",
        )
        == 0
    )
    assert train("fine_tuning", 0, book, ft_out, params=params, checkpoints=work / "ck", init_from=fea_out) == 0
    ft_run = _check_completed_run(ft_out, store, "fine_tuning", 1, 2)
    assert len(ft_run["info"]["prepared"]["init_model_sha256"]) == 64  # what preparing added, beside the config
    converted = convert_keras_vgg16(test_only_h5)
    kernels = [k for k in converted if k.endswith(".weight")]
    assert len(kernels) == 13
    fea = load_file(fea_out / "artifacts" / "model.safetensors")
    frozen = load_file(frozen_out / "artifacts" / "model.safetensors")
    ft = load_file(ft_out / "artifacts" / "model.safetensors")
    for key in kernels:
        assert not torch.equal(fea[f"conv_base.{key}"], converted[key]), f"{key}: the base did not train"
        assert torch.equal(frozen[f"conv_base.{key}"], converted[key]), f"{key}: moved under frozen_base"
        assert torch.equal(ft[f"conv_base.{key}"], fea[f"conv_base.{key}"]) != key.startswith("block5_conv"), key
    assert not torch.equal(ft["head.dense_1.weight"], fea["head.dense_1.weight"])


def test_fine_tuning_refuses_a_run_of_another_variant(book: Path, store: str, work: Path, prepared: Path) -> None:
    params = write_params(work / "params.yaml", tracking_uri=store, overrides=tiny_overrides(lenet={}))
    lenet = work / "lenet"
    assert train("lenet", 0, prepared, lenet, params=params, checkpoints=work / "ck") == 0
    with pytest.raises(CnnreproError, match="--init-from is a lenet run; fine_tuning continues from"):
        train("fine_tuning", 0, book, work / "ft", params=params, checkpoints=work / "ck", init_from=lenet)


# --- resume --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["mnist_convnet", "augmentation"])
def test_a_killed_run_resumes_to_the_uninterrupted_result(
    variant: str, request: pytest.FixtureRequest, store: str, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = request.getfixturevalue("book" if variant == "augmentation" else "prepared")
    small = {"batch_size": 8} if variant == "mnist_convnet" else {"batch_size": 2, "steps_per_epoch": 1}
    overrides = tiny_overrides(**{variant: {"epochs": 4, **small}})
    params = write_params(work / "params.yaml", tracking_uri=store, overrides=overrides)
    straight = work / "straight"
    assert train(variant, 3, data, straight, params=params, checkpoints=work / "ck_straight") == 0

    def killed_after_epoch_2(row: dict[str, float]) -> None:
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    resumed = work / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train(variant, 3, data, resumed, params=params, checkpoints=work / "ck", hooks=[killed_after_epoch_2])
    checkpoint = ckpt.checkpoint_path(work / "ck", "torch", variant, 3)
    assert ckpt.decode(Path(checkpoint).read_bytes())["epoch"] == 2
    assert not (resumed / "metrics.json").exists()
    capsys.readouterr()
    assert train(variant, 3, data, resumed, params=params, checkpoints=work / "ck") == 0
    assert f"resuming from {checkpoint} after epoch 2" in capsys.readouterr().out
    a = load_file(straight / "artifacts" / "model.safetensors")
    b = load_file(resumed / "artifacts" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (straight / "history.csv").read_text() == (resumed / "history.csv").read_text()
    assert not checkpoint.exists()
    # The resumed MLflow run carries the whole curve, restored epochs included.
    client, run = _mlflow_run(store, json.loads((resumed / "run_info.json").read_text())["mlflow"]["run_id"])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [1, 2, 3, 4]


def test_a_checkpoint_of_another_config_is_not_resumed(
    prepared: Path, store: str, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides = tiny_overrides(mnist_dense={"epochs": 3, "batch_size": 16})

    def stop(row: dict[str, float]) -> None:
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    params = write_params(work / "p1.yaml", tracking_uri=store, overrides=overrides)
    with pytest.raises(KeyboardInterrupt):
        train("mnist_dense", 0, prepared, work / "run", params=params, checkpoints=work / "ck", hooks=[stop])
    overrides["mnist_dense"]["learning_rate"] = 0.01
    other = write_params(work / "p2.yaml", tracking_uri=store, overrides=overrides)
    assert train("mnist_dense", 0, prepared, work / "run", params=other, checkpoints=work / "ck") == 0
    out = capsys.readouterr().out
    assert "was written for another config of this run; starting over" in out and "resuming" not in out


# --- runs that cannot happen here ---------------------------------------------------------------------


def test_missing_vgg16_weights_give_not_run_runs(book: Path, store: str, work: Path) -> None:
    from cnnrepro.cli import main

    params = write_params(work / "params.yaml", tracking_uri=store, vgg16={"url": UNREACHABLE_URL})
    out = work / "runs" / "torch" / "feature_extraction_augmented" / "seed0"
    argv = [
        "train",
        "--params",
        str(params),
        "--framework",
        "torch",
        "--variant",
        "feature_extraction_augmented",
        "--seed",
        "0",
        "--data",
        str(book),
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    record = load_run(out)
    assert record.metrics.status == "not_run" and record.history == []
    assert record.metrics.reason.startswith("ImageNet weights unavailable: tried train.vgg16.path (unset)")
    assert UNREACHABLE_URL in record.metrics.reason
    assert record.info["status"] == "not_run" and record.info["reason"] == record.metrics.reason
    assert (out / "artifacts" / "fidelity.json").is_file()
    assert not (out / "artifacts" / "model.safetensors").exists()
    assert (out / "history.csv").read_text().strip() == ",".join(HISTORY_COLUMNS)
    _, run = _mlflow_run(store, record.info["mlflow"]["run_id"])
    assert run.data.tags["status"] == "not_run" and run.info.status == "FINISHED"
    assert run.data.tags["reason"].startswith("ImageNet weights unavailable")

    ft = work / "runs" / "torch" / "fine_tuning" / "seed0"
    assert main([*argv[:6], "fine_tuning", *argv[7:-1], str(ft), "--init-from", str(out)]) == 0
    ft_record = load_run(ft)
    assert ft_record.metrics.status == "not_run"
    assert ft_record.metrics.reason.startswith(f"continues from {out}, which is not_run: ImageNet weights unavailable")


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed here")
def test_torchvision_source_without_torchvision_is_not_run(book: Path, store: str, work: Path) -> None:
    params = write_params(work / "params.yaml", tracking_uri=store, vgg16={"source": "torchvision"})
    out = work / "fe"
    assert train("feature_extraction", 0, book, out, params=params, checkpoints=work / "ck") == 0
    metrics = load_run(out).metrics
    assert metrics.status == "not_run" and "torchvision is not importable" in metrics.reason
