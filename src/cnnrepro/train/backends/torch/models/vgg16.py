"""The Keras VGG16 conv base (include_top=False) in PyTorch, its ImageNet weights converted, and the book's
classifiers on it.

Weights: the book's Keras file (cnnrepro.train.vgg16_weights finds it), converted here from its HDF5
layout (kernels (kh, kw, in, out) -> PyTorch (out, in, kh, kw); TensorFlow and PyTorch both compute
cross-correlation, so no kernel flip).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnrepro.errors import CnnreproError
from cnnrepro.train.backends.torch.models.layers import Conv2d, Dense, KerasSequential, keras_init_
from cnnrepro.train.vgg16_weights import BLOCKS, CONV_NAMES, FINE_TUNED_LAYERS, WeightsUnavailable


class VGG16Base(KerasSequential):
    """block1_conv1 ... block5_pool, named as Keras names them; 14,714,688 parameters.

    No AdaptiveAvgPool: at 150x150 the output is the 4x4x512 map (8,192 features) the book used.
    """

    def __init__(self) -> None:
        layers: list[tuple[str, nn.Module]] = []
        in_channels = 3
        for b, (n, channels) in enumerate(BLOCKS, start=1):
            for i in range(1, n + 1):
                layers.append((f"block{b}_conv{i}", Conv2d(in_channels, channels, 3, padding="same")))
                in_channels = channels
            layers.append((f"block{b}_pool", nn.MaxPool2d(2)))
        super().__init__(OrderedDict(layers))


class VGG16Classifier(nn.Module):
    """conv_base + Flatten-Dense256(ReLU)-[Dropout]-Dense1, as the book stacks them.

    dropout=0.5 is the feature_extraction head (trained on the cached conv_base outputs);
    dropout=0 is the end-to-end model of feature_extraction_augmented and fine_tuning.
    """

    def __init__(self, *, dropout: float = 0.0, features: int = 4 * 4 * 512) -> None:
        super().__init__()
        self.conv_base = VGG16Base()
        head: list[tuple[str, nn.Module]] = [
            ("flatten_1", nn.Flatten()),
            ("dense_1", Dense(features, 256, activation="relu")),
        ]
        if dropout:
            head.append(("dropout_1", nn.Dropout(dropout)))
        head.append(("dense_2", Dense(256, 1)))
        self.head = nn.Sequential(OrderedDict(head))
        keras_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv_base(x))


def vgg16_conv_base() -> VGG16Base:
    return keras_init_(VGG16Base())


def feature_extraction() -> VGG16Classifier:
    return VGG16Classifier(dropout=0.5)


def feature_extraction_augmented() -> VGG16Classifier:
    return VGG16Classifier()


def fine_tuning() -> VGG16Classifier:
    return VGG16Classifier()


def freeze_conv_base(model: VGG16Classifier, trainable: tuple[str, ...] = ()) -> None:
    """requires_grad=False on the whole base except the named layers (block5_conv1..3 when fine-tuning).

    Really frozen: the optimizer only ever receives parameters that require grad, so nothing else moves.
    """
    for name, module in model.conv_base.named_children():
        for p in module.parameters():
            p.requires_grad_(name in trainable)


def set_trainable(model: nn.Module, trainable: str) -> None:
    """Freeze what the run config's `trainable` names: "all" nothing, "head" the whole VGG16 base,
    "head+block5" the base except block5_conv1..3 (the one place the three values mean something)."""
    if trainable == "head":
        freeze_conv_base(model)
    elif trainable == "head+block5":
        freeze_conv_base(model, FINE_TUNED_LAYERS)
    elif trainable != "all":
        raise CnnreproError(f"unknown trainable setting {trainable!r} (known: all, head, head+block5)")


# --- Keras HDF5 -> PyTorch -------------------------------------------------------------------------


def _layer_weights(group: Any, path: Path, layer: str) -> tuple[np.ndarray, np.ndarray]:
    """(kernel, bias) of one layer group, whichever naming the file uses.

    Keras 2 names them 'block1_conv1/kernel:0' and 'block1_conv1/bias:0'; the file the book
    downloaded was converted from Keras 1 and names them 'block1_conv1_W_1:0' and
    'block1_conv1_b_1:0'. Both list the kernel first; the kernel is the 4-D one either way.
    """
    import h5py

    names = group.attrs.get("weight_names")
    if names is not None:
        arrays = [np.asarray(group[n.decode() if isinstance(n, bytes) else str(n)]) for n in names]
    else:
        arrays = []
        group.visititems(lambda _, obj: arrays.append(np.asarray(obj)) if isinstance(obj, h5py.Dataset) else None)
    if not arrays:
        raise CnnreproError(f"{path}: layer {layer} has no weights")
    kernels = [a for a in arrays if a.ndim == 4]
    biases = [a for a in arrays if a.ndim == 1]
    if len(kernels) != 1 or len(biases) != 1:
        raise CnnreproError(
            f"{path}: layer {layer}: expected one 4-D kernel and one bias, got shapes {[a.shape for a in arrays]}"
        )
    return kernels[0], biases[0]


def convert_keras_vgg16(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the Keras notop h5 and return a VGG16Base state dict (float32)."""
    import h5py

    path = Path(path)
    base = VGG16Base()
    expected = base.state_dict()
    state: dict[str, torch.Tensor] = {}
    try:
        with h5py.File(path, "r") as f:
            # A whole-model save nests the layers under model_weights; save_weights puts them at the top.
            root = f.get("model_weights", f)
            for layer in CONV_NAMES:
                if layer not in root:
                    raise CnnreproError(f"{path}: no layer {layer!r} (found: {', '.join(sorted(root))})")
                kernel, bias = _layer_weights(root[layer], path, layer)
                weight = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), dtype=np.float32))
                for key, tensor in (
                    (f"{layer}.weight", weight),
                    (f"{layer}.bias", torch.from_numpy(bias.astype(np.float32))),
                ):
                    if tuple(tensor.shape) != tuple(expected[key].shape):
                        raise CnnreproError(
                            f"{path}: {key}: shape {tuple(tensor.shape)} (after conversion), "
                            f"expected {tuple(expected[key].shape)}"
                        )
                    state[key] = tensor
    except OSError as exc:
        raise CnnreproError(f"{path}: not a readable HDF5 file ({exc})") from None
    return state


def load_keras_vgg16_(base: VGG16Base, path: str | Path) -> None:
    base.load_state_dict(convert_keras_vgg16(path))


def load_torchvision_vgg16_(base: VGG16Base) -> str:
    """Copy torchvision's ImageNet VGG16 conv weights into `base` (a different network from Keras')."""
    try:
        import torchvision
    except ImportError as exc:
        raise WeightsUnavailable(
            f"train.vgg16.source is torchvision, but torchvision is not importable ({exc})"
        ) from None
    try:
        tv = torchvision.models.vgg16(weights="IMAGENET1K_V1")
    except Exception as exc:  # any failure to fetch the weights means the run cannot happen
        raise WeightsUnavailable(
            f"torchvision VGG16 ImageNet weights unavailable ({type(exc).__name__}: {exc})"
        ) from None
    convs = [m for m in tv.features if isinstance(m, nn.Conv2d)]
    state = {}
    for name, conv in zip(CONV_NAMES, convs, strict=True):
        state[f"{name}.weight"] = conv.weight.detach().clone()
        state[f"{name}.bias"] = conv.bias.detach().clone()
    base.load_state_dict(state)
    return torchvision_weights_name(torchvision.__version__)


def torchvision_weights_name(version: str) -> str:
    """How a run records torchvision's weights (run_info.json `prepared`): there is no file of ours."""
    return f"torchvision {version} VGG16_Weights.IMAGENET1K_V1"


# --- finding the Keras file ------------------------------------------------------------------------
