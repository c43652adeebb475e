"""`cnnrepro evaluate`: score a trained run on a folder of class subfolders or the MNIST test set.

Prints {"accuracy": ..., "loss": ..., "n": ...} as one JSON line. The run's own resolved config
(run_info.json) says how to rebuild the network and how its inputs were resized and scaled.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cnnrepro.errors import CnnreproError

IDX_DATASETS = ("mnist", "fashion_mnist")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, type=Path, help="a completed run directory")
    parser.add_argument("--data", required=True, help="a folder with one subfolder per class, or mnist | fashion_mnist")
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"), help="where mnist.npz lives")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")


def load_trained(run: str | Path, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """(model in eval mode on `device`, the run's resolved config) of a completed run; one-line errors."""
    from safetensors.torch import load_file

    from cnnrepro.fsutil import read_json
    from cnnrepro.models.registry import create_model
    from cnnrepro.training.run_config import resolve_device

    run = Path(run)
    if not run.is_dir():
        raise CnnreproError(f"{run}: run directory missing")
    metrics = read_json(run / "metrics.json")
    if not isinstance(metrics, dict):
        raise CnnreproError(f"{run / 'metrics.json'}: expected a JSON object")
    if metrics.get("status") != "completed":
        status = metrics.get("status") or "not a run"
        raise CnnreproError(f"{run}: run is {status}, no trained model ({metrics.get('reason') or 'no reason given'})")
    info = read_json(run / "run_info.json")
    config = info.get("config") if isinstance(info, dict) else None
    if not isinstance(config, dict) or "variant" not in config:
        raise CnnreproError(f"{run / 'run_info.json'}: no resolved config")
    model_path = run / "artifacts" / "model.safetensors"
    if not model_path.is_file():
        raise CnnreproError(f"{model_path}: missing")
    model = create_model(config["variant"])
    try:
        model.load_state_dict(load_file(str(model_path)))
    except Exception as exc:  # corrupt file or wrong tensors: name the file
        raise CnnreproError(f"{model_path}: cannot load ({str(exc).splitlines()[0][:200]})") from None
    torch_device = resolve_device(device)
    return model.to(torch_device).eval(), config


def input_pipeline(config: dict[str, Any]) -> Any:
    from cnnrepro.training.loop import InputPipeline

    return InputPipeline("images", config["preprocessing"], config["input_scale"])


def load_eval_split(data: str, config: dict[str, Any], prepared: Path) -> Any:
    from cnnrepro.training.data import load_image_split, load_npz

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
    import torch

    from cnnrepro.training.loop import DeviceSplit, evaluate, sequential_batches

    model, config = load_trained(args.run, args.device)
    split = load_eval_split(args.data, config, args.prepared)
    device = next(model.parameters()).device
    data = DeviceSplit(torch.from_numpy(split.images).to(device), torch.from_numpy(split.labels).to(device))
    result = evaluate(
        model, data, sequential_batches(len(data), args.batch_size), input_pipeline(config), config["loss"]
    )
    print(json.dumps({"accuracy": result["accuracy"], "loss": result["loss"], "n": result["n"]}))
    return 0
