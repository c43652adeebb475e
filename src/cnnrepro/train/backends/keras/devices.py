"""The device a Keras run uses, from params train.device, as its backend sees the machine: TensorFlow's
devices ("cpu", "gpu:N"), or on Keras' torch backend torch's ("cpu", "cuda[:N]", as the PyTorch runs name
them; cnnrepro.train.backends.keras.choose_backend set $KERAS_TORCH_DEVICE from the same setting)."""

from __future__ import annotations

import contextlib
from typing import Any

from cnnrepro.errors import CnnreproError
from cnnrepro.train.backends.keras import import_keras

keras = import_keras()


def resolve_device(requested: str, num_threads: int = 0, source: str = "params.yaml: train.device") -> str:
    """The device Keras will use, from params train.device; TensorFlow's view of the machine, not torch's.
    `source` is what an error names (the params key, or the command's flag).

    Must run before TensorFlow executes anything: thread counts and visible devices are fixed at its start.
    """
    backend = keras.backend.backend()
    if backend == "torch":
        return _torch_device(requested, num_threads)
    if backend != "tensorflow":
        return f"{backend}:{requested}"  # the other backends place work themselves
    import tensorflow as tf

    try:
        if num_threads > 0:
            tf.config.threading.set_intra_op_parallelism_threads(num_threads)
            tf.config.threading.set_inter_op_parallelism_threads(num_threads)
    except RuntimeError:
        pass  # TensorFlow already started in this process (several runs in one process: tests)
    gpus = tf.config.list_physical_devices("GPU")
    if requested in ("cpu", "auto") and (requested == "cpu" or not gpus):
        if gpus:
            _set_visible_gpus(tf, [])
        return "cpu"
    if requested == "auto":
        return "gpu:0"
    if requested.startswith("cuda"):
        suffix = requested.split(":", 1)[1] if ":" in requested else "0"
        if requested not in ("cuda", f"cuda:{suffix}") or not suffix.isdigit():
            raise CnnreproError(f"{source} {requested!r} is not a device (auto, cpu, cuda[:N])")
        index = int(suffix)
        if index >= len(gpus):
            raise CnnreproError(f"{source} is {requested!r} but TensorFlow sees {len(gpus)} GPU(s) here")
        _set_visible_gpus(tf, [gpus[index]])
        return f"gpu:{index}"
    raise CnnreproError(f"{source} {requested!r} is not supported by the Keras trainer (auto, cpu, cuda[:N])")


def _set_visible_gpus(tf: Any, gpus: list[Any]) -> None:
    try:
        tf.config.set_visible_devices(gpus, "GPU")
    except RuntimeError as exc:
        raise CnnreproError(f"params.yaml: train.device: TensorFlow has started, devices are fixed ({exc})") from None


def _torch_device(requested: str, num_threads: int) -> str:
    """cpu or cuda[:N] for Keras' torch backend. With several GPUs a Keras run uses torch's current one
    (the PyTorch runs' GPU slot claim is theirs: cnnrepro.train.backends.torch.devices)."""
    import torch

    if num_threads > 0:
        torch.set_num_threads(num_threads)
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return "cpu"
    if requested.startswith("cuda"):
        index = int(requested.split(":", 1)[1]) if ":" in requested else 0
        if index >= torch.cuda.device_count():
            raise CnnreproError(
                f"params.yaml: train.device is {requested!r} but torch sees {torch.cuda.device_count()} GPU(s) here"
            )
        return requested
    raise CnnreproError(
        f"params.yaml: train.device {requested!r} is not supported by the Keras trainer (auto, cpu, cuda[:N])"
    )


def device_scope(device: str) -> contextlib.AbstractContextManager[Any]:
    """Where the run's tensors live: keras.device(device) on the torch backend (so a run's device holds
    even when Keras was imported for another one in the same process); TensorFlow places by itself."""
    if keras.backend.backend() == "torch":
        return keras.device(device)
    return contextlib.nullcontext()
