"""`cnnrepro evaluate`: score a trained run (PyTorch or Keras) on a folder of class subfolders or the MNIST test set.

Prints {"accuracy": ..., "loss": ..., "n": ...} as one JSON line. The run's own resolved config
(run_info.json) says how to rebuild the network and how its inputs were resized and scaled.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cnnrepro.errors import CnnreproError

IDX_DATASETS = ("mnist", "fashion_mnist")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, type=Path, help="a completed run directory")
    parser.add_argument("--data", required=True, help="a folder with one subfolder per class, or mnist | fashion_mnist")
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"), help="where mnist.npz lives")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")


def load_run_config(run: str | Path) -> dict[str, Any]:
    """The resolved config (run_info.json) of a completed run, in either framework; one-line errors."""
    from cnnrepro.fsutil import read_json
    from cnnrepro.run_outputs import RunInfo

    run = Path(run)
    if not run.is_dir():
        raise CnnreproError(f"{run}: run directory missing")
    metrics = read_json(run / "metrics.json")
    if not isinstance(metrics, dict):
        raise CnnreproError(f"{run / 'metrics.json'}: expected a JSON object")
    if metrics.get("status") != "completed":
        status = metrics.get("status") or "not a run"
        raise CnnreproError(f"{run}: run is {status}, no trained model ({metrics.get('reason') or 'no reason given'})")
    config = RunInfo.read(run).config
    if not isinstance(config, dict) or "variant" not in config:
        raise CnnreproError(f"{run / 'run_info.json'}: no resolved config")
    return config


def load_trained(run: str | Path, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """(model in eval mode on `device`, the run's resolved config) of a completed PyTorch run; one-line errors."""
    from safetensors.torch import load_file

    from cnnrepro.train.engine.run_config import resolve_device
    from cnnrepro.variants.registry import create_model

    config = load_run_config(run)
    if config.get("framework", "torch") != "torch":
        raise CnnreproError(f"{run}: a {config['framework']} run; this reads PyTorch runs (model.safetensors)")
    model_path = Path(run) / "artifacts" / "model.safetensors"
    if not model_path.is_file():
        raise CnnreproError(f"{model_path}: missing")
    model = create_model(config["variant"])
    try:
        model.load_state_dict(load_file(str(model_path)))
    except Exception as exc:  # corrupt file or wrong tensors: name the file
        raise CnnreproError(f"{model_path}: cannot load ({str(exc).splitlines()[0][:200]})") from None
    torch_device = resolve_device(device)
    return model.to(torch_device).eval(), config


def class_probabilities(
    run: str | Path, device: str = "auto"
) -> tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any]]:
    """(uint8 (N, H, W, C) images -> (N, classes) probabilities, the run's config), for a run of either framework."""
    import torch

    config = load_run_config(run)
    if is_keras(config):
        from cnnrepro.train.backends.keras import inference

        return inference.class_probabilities(inference.load_model(run, config, device), config), config
    model, config = load_trained(run, device)
    model_device = next(model.parameters()).device
    inputs = input_pipeline(config)

    def probabilities(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(images)).to(model_device)
            logits = model(inputs(x, train=False)).float()
        if config["loss"] == "binary_crossentropy":
            p = torch.sigmoid(logits[:, :1])
            return torch.cat([1 - p, p], dim=1).double().cpu().numpy()
        return torch.softmax(logits, 1).double().cpu().numpy()

    return probabilities, config


def is_keras(config: dict[str, Any]) -> bool:
    return config.get("framework") == "keras"


def input_pipeline(config: dict[str, Any]) -> Any:
    from cnnrepro.train.backends.torch.loop import InputPipeline

    return InputPipeline("images", config["preprocessing"], config["input_scale"])


def load_eval_split(data: str, config: dict[str, Any], prepared: Path) -> Any:
    from cnnrepro.train.engine.splits import load_image_split, load_npz

    classes = tuple(config["classes"])
    if data in IDX_DATASETS:
        if config["dataset"] != data:
            raise CnnreproError(f"--data {data}: the run was trained on {config['dataset']}")
        return load_npz(prepared / f"{data}.npz", classes)["test"]
    size = tuple(config["input_shape"][1:])
    if config["input_shape"][0] != 3:
        raise CnnreproError(f"--data {data}: {config['variant']} reads {data!r} only as mnist/fashion_mnist arrays")
    return load_image_split(data, size, config["resize_filter"] or "bilinear", classes)


def main(args: argparse.Namespace) -> int:
    config = load_run_config(args.run)
    split = load_eval_split(args.data, config, args.prepared)
    if is_keras(config):
        from cnnrepro.train.backends.keras import inference

        model = inference.load_model(args.run, config, args.device)
        result = inference.evaluate(model, split, config, args.batch_size)
    else:
        result = _evaluate_torch(args.run, split, args.batch_size, args.device)
    print(json.dumps({"accuracy": result["accuracy"], "loss": result["loss"], "n": result["n"]}))
    return 0


def _evaluate_torch(run: Path, split: Any, batch_size: int, device: str) -> dict[str, Any]:
    import torch

    from cnnrepro.train.backends.torch.loop import sequential_batches
    from cnnrepro.train.backends.torch.steps import DeviceSplit, evaluate

    model, config = load_trained(run, device)
    model_device = next(model.parameters()).device
    data = DeviceSplit(torch.from_numpy(split.images).to(model_device), torch.from_numpy(split.labels).to(model_device))
    return evaluate(model, data, sequential_batches(len(data), batch_size), input_pipeline(config), config["loss"])
