"""Resolve one run's settings ONCE: the variant's documented spec, params overrides, device, options.

The result is a plain JSON-able dict: printed at the start, logged to MLflow as params, stored in
run_info.json, hashed for checkpoints, and read back by evaluate/predict to rebuild the inputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from cnnrepro.errors import CnnreproError
from cnnrepro.train.engine.images import SEMANTICS_RESIZE
from cnnrepro.variants.registry import VariantSpec, get_variant

# train.image_cache_dir when not set; relative to the working directory (the project root under both orchestrators).
DEFAULT_CACHE_DIR = "data/cache"
OVERRIDABLE = ("epochs", "steps_per_epoch", "validation_steps", "batch_size", "learning_rate", "max_train_images")


def resolve_device(name: str, runs_per_gpu: int = 1) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CnnreproError(f"params.yaml: train.device is {name!r} but CUDA is not available here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CnnreproError(f"params.yaml: train.device is {name!r} but MPS is not available here")
    if device.type == "cuda" and device.index is None:
        # Several GPUs and parallel jobs: each takes a free one as its current device ("cuda" stays "cuda").
        from cnnrepro.train.engine.gpu_claim import claim_cuda_device

        claim_cuda_device(runs_per_gpu)
    return device


def resolve_fast_step(choice: str | bool, device: torch.device | None, compiled: bool) -> bool:
    """train.fast_step: auto = on for CUDA (unless train.compile, which brings its own graphs), off
    elsewhere; on = required (CUDA only); off = the eager loop. Keras runs (device None) never use it."""
    if isinstance(choice, bool):  # YAML's bare on/off
        choice = "on" if choice else "off"
    if device is None or choice == "off":
        return False
    if choice == "on":
        if device.type != "cuda":
            raise CnnreproError(
                f"params.yaml: train.fast_step is 'on' but the device is {device} (CUDA graphs need CUDA)"
            )
        return True
    return device.type == "cuda" and not compiled


def documented_settings(spec: VariantSpec) -> dict[str, Any]:
    return {
        "epochs": spec.epochs,
        "steps_per_epoch": spec.steps_per_epoch,
        "validation_steps": spec.validation_steps,
        "batch_size": spec.batch_size,
        "learning_rate": spec.learning_rate,
        "max_train_images": None,
    }


def resolve_run_config(
    params: dict[str, Any],
    *,
    framework: str,
    variant: str,
    seed: int,
    data_dir: str | Path,
    out_dir: str | Path,
    init_from: str | Path | None = None,
    ablation: str | None = None,
) -> dict[str, Any]:
    """Everything the run does, documented values replaced by train.overrides.<variant> where set,
    then, when named, an ablation's settings (params ablations.definitions; cnnrepro.train.ablations)."""
    if framework not in ("torch", "keras"):
        raise CnnreproError(f"--framework {framework!r}: not one of torch, keras (params train.frameworks)")
    spec = get_variant(variant)
    train = params["train"]
    overrides = dict((train.get("overrides") or {}).get(variant) or {})
    settings = documented_settings(spec) | overrides
    if spec.continues_from and init_from is None:
        raise CnnreproError(f"variant {variant} continues from {spec.continues_from}: pass --init-from RUN_DIR")
    if not spec.continues_from and init_from is not None:
        raise CnnreproError(f"variant {variant} trains from its own initialization: --init-from is not allowed")
    semantics = train["augmentation_semantics"]
    augmentation = None
    if spec.augmentation is not None:
        augmentation = {"semantics": semantics} | dict(spec.augmentation)
    vgg = dict(train["vgg16"]) if spec.needs_vgg16 else None
    caffe = vgg is not None and vgg["preprocessing"] == "caffe"
    # The Keras trainer resolves the device from TensorFlow's view (cnnrepro.train.backends.keras.trainer.prepare).
    runs_per_gpu = int(train.get("runs_per_gpu", 1))
    device = resolve_device(train["device"], runs_per_gpu) if framework == "torch" else None
    images = spec.dataset in ("dogs_vs_cats", "petimages_80_20")
    cache_images = images and bool(train.get("image_cache", False))
    precision = train.get("precision", "fp32")
    config = {
        "framework": framework,
        "variant": variant,
        "seed": int(seed),
        "dataset": spec.dataset,
        "data_dir": str(data_dir),
        "out_dir": str(out_dir),
        "init_from": str(init_from) if init_from is not None else None,
        "input_shape": list(spec.input_shape),
        "classes": list(spec.classes),
        "loss": spec.loss,
        "optimizer": spec.optimizer,
        "learning_rate": float(settings["learning_rate"]),
        "epochs": int(settings["epochs"]),
        "batch_size": int(settings["batch_size"]),
        "steps_per_epoch": settings["steps_per_epoch"],
        "validation_steps": settings["validation_steps"],
        "validation_split": spec.validation_split,
        "max_train_images": settings["max_train_images"],
        "augmentation": augmentation,
        "augmentation_semantics": semantics,
        # One random transform per image, as ImageDataGenerator drew them (None: no augmentation).
        "augmentation_draws": "per_image" if augmentation else None,
        "resize_filter": (spec.resize_filter or SEMANTICS_RESIZE[semantics]) if images else None,
        "preprocessing": "caffe" if caffe else "scale",
        "input_scale": 1.0 if caffe else spec.input_scale,
        "training_data": spec.training_data,
        "trainable": spec.trainable,
        "init": spec.init,
        # "source": the initialization the source used (spec.init); "torch_default": PyTorch's layer defaults.
        "weight_init": "source",
        "vgg16": vgg,
        "device": str(device) if device is not None else train["device"],
        # fp32 = strict float32: the book's K80 had no TF32, so TF32 is switched off explicitly (PyTorch's
        # cuDNN and TensorFlow enable it by default on Ampere and later); tf32; bf16 = bf16 autocast on CUDA.
        "precision": precision,
        "mixed_precision": device is not None and precision == "bf16" and device.type == "cuda",
        "channels_last": bool(train.get("channels_last", False)),
        "compile": bool(train.get("compile", False)),
        # Speed: CUDA-graph steps (cnnrepro.train.backends.torch.fast_step) and checkpoints off the hot path.
        "fast_step": resolve_fast_step(train.get("fast_step", "auto"), device, bool(train.get("compile", False))),
        "checkpoint_every": int(train.get("checkpoint_every", 1)),
        "checkpoint_in_background": device is not None and device.type == "cuda",
        # Where decoded images are cached (None: decode in every process); never changes a result.
        "image_cache": str(train.get("image_cache_dir") or DEFAULT_CACHE_DIR) if cache_images else None,
        "num_threads": int(train["num_threads"]),
        "overrides": overrides,
        "documented_settings": documented_settings(spec),
        "documented": {
            "metric": spec.metric,
            "figure": spec.documented.documented,
            "text": spec.documented.documented_text,
            "source": spec.source,
        },
        "ablation": None,
    }
    if ablation is not None:
        from cnnrepro.train.ablations import apply_ablation, get_ablation

        config = apply_ablation(config, get_ablation(params, ablation))
    return config


def format_config(config: dict[str, Any]) -> str:
    """The resolved config, one `key: value` per line (printed once at the start of a run)."""
    width = max(len(k) for k in config)
    return "\n".join(f"  {k:<{width}} : {json.dumps(v, default=str)}" for k, v in config.items())
