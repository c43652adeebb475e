"""`cnnrepro evaluate`: score a trained run (PyTorch or Keras) on a folder of class subfolders or the MNIST test set.

Prints {"accuracy": ..., "loss": ..., "n": ...} as one JSON line. The run's own resolved config
(run_info.json) says how to rebuild the network and how its inputs were resized and scaled; the run's
backend (cnnrepro.train.backends) loads its model and scores it as the run scored its own test split.

Everything it reads is bounded as the clean stage bounds it: every image decoded within params
clean.max_pixels and converted by the clean stage's own conversions (cnnrepro.data.pixels.model_image),
the run's saved input shape checked against its variant's before a network or an array is built, and
every flag checked first, each failure one line naming the flag or the file.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from cnnrepro.errors import CnnreproError
from cnnrepro.mappings import Params
from cnnrepro.train.engine.backend import TrainedModel
from cnnrepro.train.engine.images import Split
from cnnrepro.train.engine.run_config import RunConfig

IDX_DATASETS = ("mnist", "fashion_mnist")
# What both backends accept for a device (torch.device's own syntax is wider: 'cuda:0;x' is not for a shell).
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d{1,3})?")


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
    config = RunConfig.from_record(RunInfo.read(run).config, f"{run / 'run_info.json'}: config")
    check_input_shape(config, run / "run_info.json")
    return config


def check_input_shape(config: RunConfig, where: Path) -> None:
    """The network and every input array are sized by the saved input shape: one that is not the variant's
    (every run takes its variant's, cnnrepro.variants.registry) is an edited file, refused before either
    is built (8000x8000 would allocate gigabytes)."""
    from cnnrepro.variants.registry import get_variant

    expected = tuple(get_variant(config.variant).input_shape)
    if tuple(config.data.input_shape) != expected:
        raise CnnreproError(
            f"{where}: config.input_shape: {list(config.data.input_shape)}, but {config.variant} takes "
            f"{list(expected)}; not building it"
        )


def check_device(device: str) -> str:
    """--device as both backends read it (auto, cpu, cuda[:N], mps), else one line naming the flag."""
    if not DEVICE.fullmatch(device):
        raise CnnreproError(f"--device {device!r}: not a device (auto, cpu, cuda[:N], mps)")
    return device


def check_batch_size(batch_size: int) -> int:
    if batch_size < 1:
        raise CnnreproError(f"--batch-size {batch_size}: must be a positive number of images")
    return batch_size


def max_pixels(params_path: str | Path) -> int:
    """params clean.max_pixels: the limit the clean stage decodes within, and so does inference. Run outside
    the project folder with the default --params, the installed project's params.yaml gives it."""
    from cnnrepro.params import PROJECT_ROOT, load_params

    path = Path(params_path)
    if not path.exists() and str(params_path) == "params.yaml":
        path = PROJECT_ROOT / "params.yaml"
    params: Params = load_params(path)
    return int(params["clean"]["max_pixels"])


def load_trained(run: str | Path, device: str = "auto") -> tuple[TrainedModel, RunConfig]:
    """(the run's TrainedModel, its resolved config), loaded by the run's own backend; one-line errors."""
    from cnnrepro.run_outputs import RunInfo
    from cnnrepro.train.backends import load_backend

    config = load_run_config(run)
    # A Keras run is loaded on the Keras backend it trained on (run_info.json prepared.keras_backend).
    backend = load_backend(config.framework, device, RunInfo.read(run).prepared.get("keras_backend"))
    return backend.load_trained(Path(run), config, device), config


def load_eval_split(data: str, config: RunConfig, prepared: Path, pixel_limit: int) -> Split:
    from cnnrepro.train.engine.splits import load_image_split, load_npz

    classes = tuple(config.data.classes)
    if data in IDX_DATASETS:
        if config.data.dataset != data:
            raise CnnreproError(f"--data {data}: the run was trained on {config.data.dataset}")
        return load_npz(prepared / f"{data}.npz", classes)["test"]
    size = tuple(config.data.input_shape[1:])
    if config.data.input_shape[0] != 3:
        raise CnnreproError(f"--data {data}: {config.variant} reads {data!r} only as mnist/fashion_mnist arrays")
    return load_image_split(data, size, config.data.resize_filter or "bilinear", classes, max_pixels=pixel_limit)


def main(args: argparse.Namespace) -> int:
    batch_size, device = check_batch_size(args.batch_size), check_device(args.device)
    pixel_limit = max_pixels(args.params)
    trained, config = load_trained(args.run, device)  # its config checked (input shape included) first
    split = load_eval_split(args.data, config, args.prepared, pixel_limit)
    result = trained.evaluate(split, batch_size)
    print(json.dumps({"accuracy": result["accuracy"], "loss": result["loss"], "n": result["n"]}))
    return 0
