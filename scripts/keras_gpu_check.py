"""On a CUDA machine: does `cnnrepro train --framework keras` train on the GPU (Keras 3's torch backend)?

    python scripts/keras_gpu_check.py [--variant baseline] [--epochs 2] [--data data/split/book]
    python scripts/keras_gpu_check.py --tiny       # on a CPU: the same path on the torch backend's CPU

Trains the variant with its documented settings but `--epochs` epochs, once in Keras and once in PyTorch
(each `cnnrepro train` in its own process, as the pipeline runs them, train.device auto), into a scratch
folder with its own MLflow store. Then checks that the Keras run chose the torch backend and a CUDA device
(run_info.json prepared.keras_backend, device; its ledger names keras_torch_backend) and prints, per
framework, a `RESULT` line for gpu-check.sh's table: backend, device, training seconds per epoch
(train_duration_s / epochs), the last epoch's val_accuracy, and the PyTorch run's fast-step decision.
Exit 1 when the Keras run did not train on CUDA. Without CUDA (and without --tiny): "skipped: no CUDA";
without Keras installed (the default pack carries the mirror instead: KERAS=1 make gpu-pack): skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

SCRATCH = Path(".gpu/keras-check")


def _train(framework: str, variant: str, data: Path, params: Path, env: dict[str, str]) -> dict:
    out = SCRATCH / "runs" / framework / variant / "seed0"
    argv = [sys.executable, "-m", "cnnrepro.cli", "train", "--params", str(params), "--framework", framework]
    argv += ["--variant", variant, "--seed", "0", "--data", str(data), "--out", str(out)]
    argv += ["--checkpoints", str(SCRATCH / "checkpoints")]
    print("$", " ".join(argv[1:]), flush=True)
    done = subprocess.run(argv, env=env, check=False)
    if done.returncode != 0:
        return {"error": f"cnnrepro train exited {done.returncode}"}
    info = json.loads((out / "run_info.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    return {"info": info, "metrics": metrics}


def _line(framework: str, variant: str, run: dict, label: str) -> str:
    if "error" in run:
        return f"RESULT {framework} {variant}{label}: FAIL ({run['error']})"
    info, metrics = run["info"], run["metrics"]
    epochs = metrics["epochs_run"] or 1
    backend = info["prepared"].get("keras_backend") or "-"
    fast = (info.get("decisions") or {}).get("fast_step", {}).get("state", "-")
    return (
        f"RESULT {framework} {variant}{label}: backend {backend}, device {info['device']}, "
        f"{info['train_duration_s'] / epochs:.2f} s/epoch over {epochs} epochs, val_accuracy "
        f"{metrics['val_accuracy']:.4f}, fast step {fast}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="baseline")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--data", type=Path, default=Path("data/split/book"))
    parser.add_argument("--tiny", action="store_true", help="on a CPU: mnist_convnet, tiny, Keras on torch's CPU")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        print("RESULT keras on CUDA: skipped: no CUDA")
        return 0
    if importlib.util.find_spec("keras") is None:
        print("RESULT keras on CUDA: skipped: Keras is not installed here (KERAS=1 make gpu-pack carries it)")
        return 0
    env = dict(os.environ)
    variant, data = args.variant, args.data
    label = " (SYNTHETIC images: timing only)" if (data / "SYNTHETIC").exists() else ""
    params = yaml.safe_load(Path("params.yaml").read_text())
    overrides = {"epochs": args.epochs}
    if not cuda:  # the dry run: what the GPU path does, on the torch backend's CPU, tiny
        variant, data, label = "mnist_convnet", Path("data/prepared"), " (CPU dry run)"
        overrides |= {"steps_per_epoch": 2, "validation_steps": 1, "max_train_images": 64}
        env["KERAS_BACKEND"] = "torch"  # on a CPU choose_backend would pick TensorFlow
    SCRATCH.mkdir(parents=True, exist_ok=True)
    params["train"]["overrides"] = {variant: overrides}
    params["train"]["frameworks"] = ["torch", "keras"]
    params["tracking"] = {"uri": f"sqlite:///{(SCRATCH / 'mlflow.db').resolve()}", "experiment": "keras-gpu-check"}
    path = SCRATCH / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    runs = {framework: _train(framework, variant, data, path, env) for framework in ("keras", "torch")}
    for framework, run in runs.items():
        print(_line(framework, variant, run, label))
    keras = runs["keras"]
    if "error" in keras:
        return 1
    on_torch = keras["info"]["prepared"].get("keras_backend") == "torch"
    ledger = {e["id"] for e in keras["info"]["fidelity"]}
    want_device = "cuda" if cuda else "cpu"
    ok = on_torch and keras["info"]["device"].startswith(want_device) and "keras_torch_backend" in ledger
    print(f"keras: backend {keras['info']['prepared'].get('keras_backend')}, device {keras['info']['device']}, ledger")
    print(f"  {'has' if 'keras_torch_backend' in ledger else 'LACKS'} keras_torch_backend: {'PASS' if ok else 'FAIL'}")
    if not cuda:
        print("RESULT keras on CUDA: skipped: no CUDA")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
