"""Float32 rounding bounds measured on a PyTorch network (tests/tolerances.py holds the arithmetic): what a
gradient or an output may differ by between two implementations of the same network, from the sizes of the
sums the network actually computes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from . import tolerances


def _fan(layer: nn.Module, side: str) -> int:
    if isinstance(layer, nn.Linear):
        return layer.in_features if side == "in" else layer.out_features
    kernel = layer.kernel_size[0] * layer.kernel_size[1]
    return kernel * (layer.in_channels if side == "in" else layer.out_channels)


def forward_chain(network: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Every reduction length a forward output goes through: each conv/dense layer's fan-in, each average
    pool's window, and the input's spatial size (a global average, as the CAM model's, sums that many)."""
    spatial = input_shape[-1] * input_shape[-2] if len(input_shape) >= 3 else 1
    pools = sum(
        m.kernel_size * m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0] * m.kernel_size[1]
        for m in network.modules()
        if isinstance(m, nn.AvgPool2d)
    )
    layers = [m for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return sum(_fan(m, "in") for m in layers) + pools + spatial


def forward_rounding_bound(network: nn.Module, x: torch.Tensor) -> float:
    """tolerances.forward_rounding_bound for network(x): the last conv/dense layer's sum of |w| |a| + |b| on
    the activations it actually gets (hooked), over the whole forward chain."""
    last = [m for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][-1]
    seen: list[torch.Tensor] = []
    handle = last.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].detach()))
    try:
        with torch.no_grad():
            network(x)
    finally:
        handle.remove()
    a = seen[0].abs()
    with torch.no_grad():
        if isinstance(last, nn.Conv2d):
            abs_sum = F.conv2d(a, last.weight.abs(), last.bias.abs(), last.stride, last.padding, last.dilation)
        else:
            abs_sum = F.linear(a, last.weight.abs(), last.bias.abs())
    return tolerances.forward_rounding_bound(forward_chain(network, tuple(x.shape[1:])), float(abs_sum.max()))


class GradientRounding:
    """Per trained weight tensor, tolerances.gradient_rounding_bound of its gradient: hooks record each
    Conv2d/Linear layer's input and output error in the backward pass, and the same weight gradient is then
    summed over their absolute values (the sum of |terms| float32 rounding is relative to)."""

    def __init__(self, network: nn.Module) -> None:
        self.layers = [m for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        # Every forward (fan-in) and backward (fan-out) reduction a gradient's factors go through.
        self.chain = sum(_fan(layer, "in") + _fan(layer, "out") for layer in self.layers)
        self.saved: dict[nn.Module, list[torch.Tensor]] = {}
        self.handles = [m.register_forward_hook(self._record) for m in self.layers if m.weight.requires_grad]

    def _record(self, layer: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        self.saved[layer] = [inputs[0].detach()]
        output.register_hook(lambda error: self.saved[layer].append(error.detach()))

    def bounds(self) -> dict[nn.Parameter, float]:
        """Call after backward(): {parameter: bound on its gradient's difference between implementations}."""
        for handle in self.handles:
            handle.remove()
        result = {}
        for layer, (inputs, error) in self.saved.items():
            x, e = inputs.abs(), error.abs()
            if isinstance(layer, nn.Conv2d):
                terms = error.shape[0] * error.shape[2] * error.shape[3]  # batch x output positions
                shape, args = layer.weight.shape, (layer.stride, layer.padding, layer.dilation, layer.groups)
                weight_abs, bias_abs = torch.nn.grad.conv2d_weight(x, shape, e, *args), e.sum((0, 2, 3))
            else:
                terms = error.shape[0]
                weight_abs, bias_abs = e.T @ x, e.sum(0)
            for parameter, abs_sum in ((layer.weight, weight_abs), (layer.bias, bias_abs)):
                result[parameter] = tolerances.gradient_rounding_bound(terms + self.chain, float(abs_sum.max()))
        return result


def assert_first_steps_match(
    plain: nn.Module,
    other: nn.Module,
    inputs: tuple[torch.Tensor, torch.Tensor],
    y: torch.Tensor,
    loss: str,
    optimizer: str,
    lr: float,
) -> None:
    """One training step from the same weights through two PyTorch paths (memory format, compiler): the
    losses within tolerances.loss_bound and every weight within tolerances.first_step_weight_bound, both
    taken from the plain path's own sums."""
    from cnnrepro.train.backends.torch.optimizers import make_optimizer
    from cnnrepro.train.backends.torch.steps import train_step

    logit_bound = forward_rounding_bound(plain, inputs[0])
    rounding = GradientRounding(plain)
    losses = []
    for model, x in zip((plain, other), inputs, strict=True):
        total, _ = train_step(model, make_optimizer(optimizer, model.parameters(), lr), x, y, loss)
        losses.append(float(total) / len(y))
    gradient_bounds = rounding.bounds()
    allowed_loss = tolerances.loss_bound(logit_bound, losses[0], len(y))
    assert abs(losses[1] - losses[0]) <= allowed_loss, (losses, allowed_loss)
    for (name, a), b in zip(plain.named_parameters(), other.parameters(), strict=True):
        a_after, b_after = a.detach().numpy(), b.detach().contiguous().numpy()
        allowed = tolerances.first_step_weight_bound(optimizer, lr, a.grad.numpy(), gradient_bounds[a], a_after)
        diff = abs(b_after.astype("float64") - a_after)
        worst = int((diff - allowed).argmax())
        assert (diff <= allowed).all(), (
            f"{name}: {diff.flat[worst]:.3g} apart, the step allows {allowed.flat[worst]:.3g}"
        )
