"""`cnnrepro evaluate`: score a trained run (PyTorch or Keras) on a folder of class subfolders or the MNIST test set.

Prints {"accuracy": ..., "loss": ..., "n": ...} as one JSON line. The run's own resolved config
(run_info.json) says how to rebuild the network and how its inputs were resized and scaled; the run's
backend (cnnrepro.train.backends) loads its model and scores it as the run scored its own test split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cnnrepro.errors import CnnreproError
from cnnrepro.train.engine.backend import TrainedModel
from cnnrepro.train.engine.images import Split
from cnnrepro.train.engine.run_config import RunConfig

IDX_DATASETS = ("mnist", "fashion_mnist")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, type=Path, help="a completed run directory")
    parser.add_argument("--data", required=True, help="a folder with one subfolder per class, or mnist | fashion_mnist")
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"), help="where mnist.npz lives")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")


def load_run_config(run: str | Path) -> RunConfig:
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
    return RunConfig.from_record(RunInfo.read(run).config, f"{run / 'run_info.json'}: config")


def load_trained(run: str | Path, device: str = "auto") -> tuple[TrainedModel, RunConfig]:
    """(the run's TrainedModel, its resolved config), loaded by the run's own backend; one-line errors."""
    from cnnrepro.run_outputs import RunInfo
    from cnnrepro.train.backends import load_backend

    config = load_run_config(run)
    # A Keras run is loaded on the Keras backend it trained on (run_info.json prepared.keras_backend).
    backend = load_backend(config.framework, device, RunInfo.read(run).prepared.get("keras_backend"))
    return backend.load_trained(Path(run), config, device), config


def load_eval_split(data: str, config: RunConfig, prepared: Path) -> Split:
    from cnnrepro.train.engine.splits import load_image_split, load_npz

    classes = tuple(config.data.classes)
    if data in IDX_DATASETS:
        if config.data.dataset != data:
            raise CnnreproError(f"--data {data}: the run was trained on {config.data.dataset}")
        return load_npz(prepared / f"{data}.npz", classes)["test"]
    size = tuple(config.data.input_shape[1:])
    if config.data.input_shape[0] != 3:
        raise CnnreproError(f"--data {data}: {config.variant} reads {data!r} only as mnist/fashion_mnist arrays")
    return load_image_split(data, size, config.data.resize_filter or "bilinear", classes)


def main(args: argparse.Namespace) -> int:
    trained, config = load_trained(args.run, args.device)
    split = load_eval_split(args.data, config, args.prepared)
    result = trained.evaluate(split, args.batch_size)
    print(json.dumps({"accuracy": result["accuracy"], "loss": result["loss"], "n": result["n"]}))
    return 0
