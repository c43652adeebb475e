"""Every variant as its source builds it, in Keras layers (channels-last, as the sources ran).

Layer names are the book's Keras 2 summary names (conv2d_1, max_pooling2d_1, ...), the same names
the PyTorch modules carry, so activations and weights can be matched by name across frameworks.
Keras' own defaults give the sources' initialization (glorot_uniform kernels, zero biases); only
LeNet, a PyTorch source, sets PyTorch's default bias draw explicitly.

The architecture, input shape and documented settings come from the shared registry
(cnnrepro.variants.registry); this module only builds the Keras network.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cnnrepro.errors import CnnreproError
from cnnrepro.train.backends.keras import import_keras
from cnnrepro.train.vgg16_weights import FINE_TUNED_LAYERS
from cnnrepro.variants.registry import get_variant

keras = import_keras()
layers = keras.layers

# Where the output layer has no activation and the loss takes logits: d2l's LeNet (CrossEntropyLoss).
LOGIT_OUTPUTS = ("lenet",)
# The first layer fine-tuning trains; listing 5.22 unfreezes from there on.
FINE_TUNING_FIRST_LAYER = FINE_TUNED_LAYERS[0]


def nhwc(variant: str) -> tuple[int, int, int]:
    channels, height, width = get_variant(variant).input_shape
    return height, width, channels


def _conv(filters: int, name: str, *, kernel: int = 3, padding: str = "valid") -> Any:
    return layers.Conv2D(filters, (kernel, kernel), activation="relu", padding=padding, name=name)


def small_convnet(name: str, *, dropout: float = 0.0) -> Any:
    """Listings 5.5 / 5.13: Conv32-Pool-Conv64-Pool-Conv128-Pool-Conv128-Pool-Flatten-[Dropout]-Dense512-Dense1."""
    stack: list[Any] = [keras.Input((150, 150, 3))]
    for i, filters in enumerate((32, 64, 128, 128), start=1):
        stack += [_conv(filters, f"conv2d_{i}"), layers.MaxPooling2D((2, 2), name=f"max_pooling2d_{i}")]
    stack.append(layers.Flatten(name="flatten_1"))
    if dropout:
        stack.append(layers.Dropout(dropout, name="dropout_1"))
    stack += [
        layers.Dense(512, activation="relu", name="dense_1"),
        layers.Dense(1, activation="sigmoid", name="dense_2"),
    ]
    return keras.Sequential(stack, name=name)


def mnist_convnet() -> Any:
    """Ch. 5.1: Conv32-Pool-Conv64-Pool-Conv64-Flatten-Dense64-Dense10 softmax on 28x28x1."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            _conv(32, "conv2d_1"),
            layers.MaxPooling2D((2, 2), name="max_pooling2d_1"),
            _conv(64, "conv2d_2"),
            layers.MaxPooling2D((2, 2), name="max_pooling2d_2"),
            _conv(64, "conv2d_3"),
            layers.Flatten(name="flatten_1"),
            layers.Dense(64, activation="relu", name="dense_1"),
            layers.Dense(10, activation="softmax", name="dense_2"),
        ],
        name="mnist_convnet",
    )


def mnist_dense() -> Any:
    """Ch. 2: Dense512-ReLU-Dense10 softmax on the 784 pixels (the book reshapes; Flatten does the same)."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Flatten(name="flatten"),
            layers.Dense(512, activation="relu", name="dense_1"),
            layers.Dense(10, activation="softmax", name="dense_2"),
        ],
        name="mnist_dense",
    )


def _torch_default_bias(fan_in: int) -> Any:
    """PyTorch's bias init, uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)): d2l re-initializes only the weights."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)


def lenet() -> Any:
    """d2l's LeNet-5: sigmoid activations, average pooling, xavier_uniform (= glorot_uniform) weights, logits out."""

    def conv(filters: int, fan_in: int, name: str, padding: str) -> Any:
        bias = _torch_default_bias(fan_in)
        return layers.Conv2D(filters, (5, 5), padding=padding, activation="sigmoid", bias_initializer=bias, name=name)

    def dense(units: int, fan_in: int, name: str, activation: str | None) -> Any:
        return layers.Dense(units, activation=activation, bias_initializer=_torch_default_bias(fan_in), name=name)

    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            # padding=2 around a 5x5 kernel at stride 1 is Keras' "same".
            conv(6, 1 * 5 * 5, "conv2d_1", "same"),
            layers.AveragePooling2D((2, 2), strides=2, name="average_pooling2d_1"),
            conv(16, 6 * 5 * 5, "conv2d_2", "valid"),
            layers.AveragePooling2D((2, 2), strides=2, name="average_pooling2d_2"),
            layers.Flatten(name="flatten_1"),
            dense(120, 16 * 5 * 5, "dense_1", "sigmoid"),
            dense(84, 120, "dense_2", "sigmoid"),
            dense(10, 84, "dense_3", None),
        ],
        name="lenet",
    )


def cam_convnet() -> Any:
    """The Keras CAM example: Conv16-Pool-Conv32-Pool-Conv64-Pool-Conv128 (same) - GAP - Dense1 sigmoid, 300x300."""
    stack: list[Any] = [keras.Input((300, 300, 3))]
    for i, filters in enumerate((16, 32, 64, 128)):
        suffix = f"_{i}" if i else ""
        stack.append(_conv(filters, f"conv2d{suffix}", padding="same"))
        if i < 3:
            stack.append(layers.MaxPooling2D((2, 2), name=f"max_pooling2d{suffix}"))
    stack += [
        layers.GlobalAveragePooling2D(name="global_average_pooling2d"),
        layers.Dense(1, activation="sigmoid", name="dense"),
    ]
    return keras.Sequential(stack, name="cam_convnet")


def vgg16_conv_base(weights: str | Path | None) -> Any:
    """keras.applications.VGG16(include_top=False) at 150x150x3, loading the Keras h5 at `weights` (None: random)."""
    path = str(weights) if weights is not None else None
    try:
        return keras.applications.VGG16(weights=path, include_top=False, input_shape=(150, 150, 3))
    except (ValueError, OSError) as exc:
        raise CnnreproError(f"{path}: cannot load as VGG16 notop weights ({str(exc).splitlines()[0]})") from None


def vgg16_classifier(name: str, conv_base: Any, *, dropout: float = 0.0) -> Any:
    """The book's stack on the conv base: Flatten-Dense256-[Dropout]-Dense1 sigmoid (16,812,353 parameters)."""
    stack = [conv_base, layers.Flatten(name="flatten_1"), layers.Dense(256, activation="relu", name="dense_1")]
    if dropout:
        stack.append(layers.Dropout(dropout, name="dropout_1"))
    stack.append(layers.Dense(1, activation="sigmoid", name="dense_2"))
    return keras.Sequential(stack, name=name)


def _vgg16_variant(name: str, dropout: float = 0.0) -> Callable[..., Any]:
    return lambda vgg16_weights=None: vgg16_classifier(name, vgg16_conv_base(vgg16_weights), dropout=dropout)


# The Keras network of every registry variant under its name (tests/test_registry.py checks the table covers
# the registry exactly); the VGG16 ones take the ImageNet weights file (None: random weights, tests only).
BUILDERS: dict[str, Callable[..., Any]] = {
    "baseline": lambda: small_convnet("baseline"),
    "augmentation": lambda: small_convnet("augmentation", dropout=0.5),
    "feature_extraction": _vgg16_variant("feature_extraction", dropout=0.5),
    "feature_extraction_augmented": _vgg16_variant("feature_extraction_augmented"),
    "fine_tuning": _vgg16_variant("fine_tuning"),
    "mnist_convnet": mnist_convnet,
    "mnist_dense": mnist_dense,
    "lenet": lenet,
    "cam_convnet": cam_convnet,
}


def create_model(variant: str, *, vgg16_weights: str | Path | None = None) -> Any:
    """The variant's Keras network, initialized as its source does (VGG16 base from `vgg16_weights`, or random)."""
    spec = get_variant(variant)  # unknown names fail with the registry's message
    if variant not in BUILDERS:
        raise CnnreproError(f"variant {variant!r} has no Keras port (cnnrepro.train.backends.keras.models.BUILDERS)")
    return BUILDERS[variant](vgg16_weights=vgg16_weights) if spec.needs_vgg16 else BUILDERS[variant]()


def feature_head(model: Any) -> Any:
    """The classifier on the cached 4x4x512 features, sharing its layers (and weights) with `model`.

    The book trains Dense(256, input_dim=8192) on reshaped features; Flatten of the channels-last map
    orders them the same way. Training the head trains the full model's head.
    """
    return keras.Sequential([keras.Input(tuple(model.layers[0].output.shape[1:])), *model.layers[1:]], name="head")


def set_trainable(model: Any, trainable: str) -> None:
    """The book's freezing, which takes effect at the next compile (the caller compiles after this).

    "head": conv_base.trainable = False. "head+block5": conv_base.trainable = True, then every layer
    before block5_conv1 frozen (listing 5.22's loop). "all": nothing to freeze.
    """
    if trainable == "all":
        # feature_extraction_augmented: left trainable ON PURPOSE. The book's `conv_base.trainable = False`
        # had no effect in Keras 2.0.8 (nested model in a Sequential, fixed in 2.1.0 by commit c25fa38) and
        # Keras 3 honours it, so copying the line would freeze the base that the documented run trained.
        return
    conv_base = model.layers[0]
    if trainable == "head":
        conv_base.trainable = False
        return
    if trainable != "head+block5":
        raise CnnreproError(f"unknown trainable setting {trainable!r}")
    conv_base.trainable = True
    set_flag = False
    for layer in conv_base.layers:
        if layer.name == FINE_TUNING_FIRST_LAYER:
            set_flag = True
        layer.trainable = set_flag


def count_parameters(model: Any, trainable_only: bool = False) -> int:
    weights = model.trainable_weights if trainable_only else model.weights
    return int(sum(np.prod(w.shape) for w in weights))


# --- walking the layers, and weights from the PyTorch port --------------------------------------


def leaf_layers(model: Any) -> Iterator[Any]:
    """Layers in call order, nested models (the VGG16 base) opened up; input layers skipped."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from leaf_layers(layer)
        elif not isinstance(layer, layers.InputLayer):
            yield layer


def output_shapes(model: Any) -> list[tuple[Any, tuple[int, ...]]]:
    """(layer, output shape without the batch axis) along the chain, from the model's input shape.

    Computed layer by layer rather than read from `layer.output`, which is ambiguous for layers
    shared with the feature head.
    """
    shape: tuple[int | None, ...] = (None, *model.inputs[0].shape[1:])
    shapes = []
    for layer in leaf_layers(model):
        shape = tuple(layer.compute_output_shape(shape))
        shapes.append((layer, tuple(int(d) for d in shape[1:])))
    return shapes


def _torch_parameter_modules(torch_model: Any) -> list[Any]:
    from torch import nn

    return [m for m in torch_model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def load_torch_weights(model: Any, torch_model: Any) -> None:
    """Copy a PyTorch port's weights into the Keras network of the same variant (layers paired in call order).

    Conv kernels (out, in, kh, kw) -> (kh, kw, in, out): both frameworks cross-correlate, so no flip.
    Dense kernels are transposed; the first Dense after a Flatten of a (h, w, c) map also has its input
    rows permuted from PyTorch's (c, h, w) feature order to Keras' (h, w, c).
    """
    targets = []
    previous: tuple[Any, tuple[int, ...]] | None = None
    flatten_input: tuple[int, ...] | None = None
    for layer, shape in output_shapes(model):
        if isinstance(layer, layers.Flatten):
            flatten_input = previous[1] if previous is not None else tuple(model.inputs[0].shape[1:])
        if layer.weights:
            targets.append((layer, flatten_input))
            flatten_input = None
        elif not isinstance(layer, (layers.Flatten, layers.Dropout)):
            flatten_input = None
        previous = (layer, shape)
    sources = _torch_parameter_modules(torch_model)
    if len(sources) != len(targets):
        raise CnnreproError(f"{model.name}: {len(targets)} Keras layers with weights, {len(sources)} PyTorch ones")
    for (layer, flat_from), module in zip(targets, sources, strict=True):
        weight = module.weight.detach().cpu().numpy()
        bias = module.bias.detach().cpu().numpy()
        if weight.ndim == 4:
            kernel = weight.transpose(2, 3, 1, 0)
        elif flat_from is not None and len(flat_from) == 3:
            height, width, channels = flat_from
            kernel = weight.reshape(-1, channels, height, width).transpose(2, 3, 1, 0).reshape(-1, weight.shape[0])
        else:
            kernel = weight.T
        expected = tuple(layer.kernel.shape)
        if kernel.shape != expected:
            raise CnnreproError(f"{layer.name}: PyTorch kernel becomes {kernel.shape}, Keras expects {expected}")
        layer.set_weights([np.ascontiguousarray(kernel, dtype=np.float32), bias.astype(np.float32)])
