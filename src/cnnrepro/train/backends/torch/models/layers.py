"""Keras-shaped building blocks: a layer owns its activation, as a Keras layer does.

Keeping the activation inside the layer makes a layer's output the same tensor Keras calls that
layer's output (the visualizations read them by the Keras layer names), and lets the VGG16
converter map one Keras layer to one module.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS = {"relu": F.relu, None: None}


class Conv2d(nn.Conv2d):
    """Keras Conv2D: 'valid' or 'same' padding (stride 1), optional ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        padding: str = "valid",
        activation: str | None = "relu",
    ) -> None:
        if padding not in ("valid", "same"):
            raise ValueError(f"padding {padding!r}")
        # 'same' with stride 1 and an odd kernel pads (k - 1) / 2 on every side, exactly as Keras does.
        super().__init__(in_channels, out_channels, kernel_size, padding=0 if padding == "valid" else kernel_size // 2)
        self.activation = activation
        self._act = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return self._act(y) if self._act is not None else y

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution alone (bias added), before the layer's activation."""
        return super().forward(x)


class Dense(nn.Linear):
    """Keras Dense with an optional ReLU; a sigmoid/softmax output stays linear (the loss takes logits)."""

    def __init__(self, in_features: int, out_features: int, *, activation: str | None = None) -> None:
        super().__init__(in_features, out_features)
        self.activation = activation
        self._act = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return self._act(y) if self._act is not None else y


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


class KerasSequential(nn.Sequential):
    """nn.Sequential that runs a ReLU conv followed by a max pooling as pool-then-ReLU: the same numbers, bit
    for bit, with the ReLU (and its backward) on a quarter of the elements.

    max(relu(a)) == relu(max(a)) exactly (relu is monotone and exact), and the gradients are the same
    tensors: where the window's max is positive both orders route the gradient to its argmax (the same
    first index among equal values); where it is not, relu's backward zeroes it either way. On a CPU the
    full-size ReLU and its backward are memory-bound passes over the largest activations, a fifth of
    a baseline step. A conv or pooling with hooks (activation visualizations read the conv's output,
    the bench's FLOP count hooks the convs) runs unfused, so every hook sees what it saw before;
    `fuse_pooling = False` runs every layer as written (the reference path the tests compare with).
    """

    fuse_pooling: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = list(self)
        i = 0
        while i < len(layers):
            layer, following = layers[i], layers[i + 1] if i + 1 < len(layers) else None
            if self._fusable(layer, following):
                x = F.relu(following(layer.pre_activation(x)))
                i += 2
            else:
                x = layer(x)
                i += 1
        return x

    def _fusable(self, layer: nn.Module, following: nn.Module | None) -> bool:
        return (
            self.fuse_pooling
            and isinstance(layer, Conv2d)
            and layer.activation == "relu"
            and isinstance(following, nn.MaxPool2d)
            and not (_hooked(layer) or _hooked(following))
        )


def keras_init_(model: nn.Module) -> nn.Module:
    """Keras defaults for Conv2D and Dense: glorot_uniform kernels, zero biases.

    PyTorch's own default (kaiming_uniform(a=sqrt(5)) and a uniform bias) draws a different, smaller
    initial distribution; the sources ran with Keras', so every Keras-sourced layer is reinitialized.
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def torch_default_init_(model: nn.Module) -> nn.Module:
    """PyTorch's own layer defaults (kaiming_uniform(a=sqrt(5)) kernels, uniform biases) on every conv and
    dense layer: what a quick port that never sets an initializer trains from (ablation naive_torch_port)."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.reset_parameters()
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
