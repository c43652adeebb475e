"""Arithmetic per training step, counted from the layers, and checked against torch's own counter.

Only convolutions and matrix products are counted (one multiply-add = one MAC = 2 FLOP), as
`torch.utils.flop_counter.FlopCounterMode` counts them; pooling, activations, the loss and the
optimizer are a rounding error next to them.

Backward costs what autograd really computes, layer by layer: the weight gradient (one forward's
worth) where the layer's weights train, and the input gradient (another) where anything before it
trains. A fully trained net thus costs about 3x forward (less the first layer's input gradient); a
frozen VGG16 base costs 1x forward; fine-tuning costs 1x for blocks 1-4 and 2x for block5.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LayerCost:
    name: str
    kind: str  # "conv" | "linear"
    forward_macs: int  # per example
    weight_grad: bool
    input_grad: bool

    @property
    def train_macs(self) -> int:
        return self.forward_macs * (1 + int(self.weight_grad) + int(self.input_grad))


def layer_costs(model: nn.Module, example: torch.Tensor) -> list[LayerCost]:
    """Every Conv2d / Linear that runs on `example` (a batch of one or more), with its MACs per example.

    Shapes are read from one real forward pass with autograd on, so `input.requires_grad` tells whether
    the backward pass needs this layer's input gradient (it does iff a parameter before it trains).
    """
    costs: list[LayerCost] = []
    names = {module: name for name, module in model.named_modules()}

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        x = args[0]
        n = x.shape[0]
        weight = module.weight
        if isinstance(module, nn.Conv2d):
            per_output = (module.in_channels // module.groups) * weight.shape[2] * weight.shape[3]
            macs, kind = output[0].numel() * per_output, "conv"
        else:
            macs, kind = (output.numel() // n) * module.in_features, "linear"
        costs.append(LayerCost(names.get(module, "?"), kind, int(macs), weight.requires_grad, x.requires_grad))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        with torch.enable_grad():
            model(example)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return costs


def forward_macs(costs: list[LayerCost]) -> int:
    return sum(c.forward_macs for c in costs)


def train_macs(costs: list[LayerCost]) -> int:
    return sum(c.train_macs for c in costs)


def counted_train_flops(model: nn.Module, x: torch.Tensor, loss_fn) -> int:
    """FLOPs torch's FlopCounterMode sees in one forward + backward on batch x (no optimizer step).

    `loss_fn(logits) -> scalar`. Gradients are cleared afterwards, so the model is left as it was.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        loss_fn(model(x)).backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())
