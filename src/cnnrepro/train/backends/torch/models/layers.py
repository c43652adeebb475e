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


class Dense(nn.Linear):
    """Keras Dense with an optional ReLU; a sigmoid/softmax output stays linear (the loss takes logits)."""

    def __init__(self, in_features: int, out_features: int, *, activation: str | None = None) -> None:
        super().__init__(in_features, out_features)
        self.activation = activation
        self._act = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return self._act(y) if self._act is not None else y


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
