"""Fixtures for the training tests: tiny image folders and npz files, a Keras-layout VGG16 h5
with known random weights, params files pointed at a test MLflow store, and in-process training runs.

The random-weight h5 stands in for the Keras ImageNet file ONLY so the real loading path runs in
tests; runs trained on it are test runs, never feature extraction results.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from cnnrepro.params import PROJECT_ROOT, validate_params
from cnnrepro.train.vgg16_weights import BLOCKS

CLASSES = ("cats", "dogs")
UNREACHABLE_URL = "http://127.0.0.1:9/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


def make_image_folder(
    root: Path, counts: dict[str, int], *, size: tuple[int, int] = (40, 50), seed: int = 0, fmt: str = "jpg"
) -> Path:
    """root/<split>/<cats|dogs>/<i>.jpg; dogs are redder than cats, so a model can learn something."""
    rng = np.random.default_rng(seed)
    for split, n in counts.items():
        for label, cls in enumerate(CLASSES):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                array = rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)
                array[:, :, 0] = 220 if label else 30
                Image.fromarray(array).save(folder / f"{i}.{fmt}")
    return root


def make_npz(path: Path, *, n_train: int = 200, n_test: int = 60, seed: int = 0) -> Path:
    """An mnist.npz-like file: uint8 28x28 images whose brightest row encodes the label (learnable)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
        x[np.arange(n), 2 + 2 * y.astype(int), :] = 255
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def keras_vgg16_weights(seed: int = 0, scale: float = 0.02) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random (kernel (kh, kw, in, out), bias) per Keras layer name, in Keras' own layout."""
    rng = np.random.default_rng(seed)
    weights: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    in_channels = 3
    for b, (n, channels) in enumerate(BLOCKS, start=1):
        for i in range(1, n + 1):
            kernel = (rng.standard_normal((3, 3, in_channels, channels), dtype=np.float32) * scale).astype(np.float32)
            bias = (rng.standard_normal(channels, dtype=np.float32) * 0.01).astype(np.float32)
            weights[f"block{b}_conv{i}"] = (kernel, bias)
            in_channels = channels
    return weights


def write_keras_h5(path: Path, weights: dict[str, tuple[np.ndarray, np.ndarray]], *, style: str = "keras2") -> Path:
    """An h5 laid out as Keras' save_weights writes it: layer_names / weight_names attributes.

    style "keras2": 'block1_conv1/kernel:0' (nested groups); "keras1": 'block1_conv1_W_1:0' (the
    naming of the file the book downloaded). Pool and input layers are listed with no weights.
    """
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    layer_names = ["input_1"]
    for b, (n, _) in enumerate(BLOCKS, start=1):
        layer_names += [f"block{b}_conv{i}" for i in range(1, n + 1)] + [f"block{b}_pool"]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name in layer_names]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.0.8"
        for name in layer_names:
            group = f.create_group(name)
            if name not in weights:
                group.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            kernel, bias = weights[name]
            keras2 = [f"{name}/kernel:0", f"{name}/bias:0"]
            names = keras2 if style == "keras2" else [f"{name}_W_1:0", f"{name}_b_1:0"]
            group.attrs["weight_names"] = [n.encode() for n in names]
            group.create_dataset(names[0], data=kernel)
            group.create_dataset(names[1], data=bias)
    return path


def write_params(
    target: Path,
    *,
    tracking_uri: str,
    overrides: dict[str, Any] | None = None,
    log_models: bool = False,
    **train: Any,
) -> Path:
    """The project's params.yaml with a test MLflow store, no mirror, and the given train settings.

    No MLflow logged models unless asked (`log_models`): writing one costs a second or two per run.

    One torch thread: tiny models gain nothing from more, and on a busy 2-core machine OpenMP
    threads spinning against other jobs make small steps 10x slower.
    """
    params = copy.deepcopy(yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text()))
    params["data"]["mirror"] = None
    params["tracking"] = {"uri": tracking_uri, "experiment": "train-tests", "log_models": log_models}
    params["train"]["overrides"] = overrides or {}
    params["train"]["num_threads"] = 1
    # The decode-once cache stays beside the test's own files, never in the repository's data/.
    params["train"]["image_cache_dir"] = str(target.parent / "image_cache")
    for key, value in train.items():
        if isinstance(value, dict) and isinstance(params["train"].get(key), dict):
            params["train"][key] = params["train"][key] | value
        else:
            params["train"][key] = value
    validate_params(params, source=str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(params))
    return target


def train_args(
    variant: str,
    seed: int,
    data: Path,
    out: Path,
    *,
    params: Path,
    checkpoints: Path,
    init_from: Path | None = None,
    ablation: str | None = None,
) -> argparse.Namespace:
    return argparse.Namespace(
        ablation=ablation,
        params=str(params),
        framework="torch",
        variant=variant,
        seed=seed,
        data=data,
        out=out,
        init_from=init_from,
        checkpoints=checkpoints,
    )


def train(
    variant: str,
    seed: int,
    data: Path,
    out: Path,
    *,
    params: Path,
    checkpoints: Path,
    init_from: Path | None = None,
    hooks: Sequence[Callable[[dict[str, float]], None]] = (),
    ablation: str | None = None,
) -> int:
    """`cnnrepro train` in this process (the same code path as the command, minus argument parsing)."""
    import torch

    from cnnrepro.params import load_params
    from cnnrepro.train import cli

    args = train_args(
        variant, seed, data, out, params=params, checkpoints=checkpoints, init_from=init_from, ablation=ablation
    )
    threads = torch.get_num_threads()
    try:
        return cli.run(load_params(params), args, hooks=tuple(hooks))
    finally:
        torch.set_num_threads(threads)  # train.num_threads is process-wide; leave other tests as they were


_STORES: dict[str, str] = {}


def shared_store(tmp_path_factory: Any) -> str:
    """One MLflow store per test session for every training test module (creating one costs seconds)."""
    key = str(tmp_path_factory.getbasetemp())
    if key not in _STORES:
        _STORES[key] = "sqlite:///" + str(tmp_path_factory.mktemp("mlflow") / "mlflow.db")
    return _STORES[key]


def read_run(out: Path) -> dict[str, Any]:
    return {
        "metrics": json.loads((out / "metrics.json").read_text()),
        "info": json.loads((out / "run_info.json").read_text()),
        "history": (out / "history.csv").read_text().splitlines(),
    }


def tiny_overrides(**per_variant: dict[str, Any]) -> dict[str, Any]:
    """Override blocks for few-step runs; anything given per variant replaces the defaults."""
    defaults = {"epochs": 2, "steps_per_epoch": 2, "validation_steps": 1, "batch_size": 2}
    return {name: defaults | values for name, values in per_variant.items()}


# The Keras backend's tests need the optional `keras` extra.
HAVE_TF = importlib.util.find_spec("tensorflow") is not None
needs_tf = pytest.mark.skipif(not HAVE_TF, reason="TensorFlow is not installed (pip install -e .[keras])")
