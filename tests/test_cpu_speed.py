"""The CPU speed paths give the reference path's numbers: pool-then-ReLU bit for bit, channels_last within
the float32 rounding bound of a convolution (derived below, not taken from one CPU)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cnnrepro.train.backends.torch.models import create_model
from cnnrepro.train.backends.torch.models.layers import KerasSequential
from cnnrepro.train.backends.torch.optimizers import make_optimizer
from cnnrepro.train.backends.torch.steps import train_step

# --- pool-then-ReLU (KerasSequential) -----------------------------------------------------------------


def _steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str) -> list[torch.Tensor]:
    optimizer = make_optimizer("rmsprop_keras2", model.parameters(), 1e-3)
    return [train_step(model, optimizer, x, y, loss)[0] for _ in range(2)]


def _sequentials(model: nn.Module) -> list[KerasSequential]:
    return [m for m in model.modules() if isinstance(m, KerasSequential)]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(
    ("variant", "shape", "loss"),
    [
        ("baseline", (2, 3, 150, 150), "binary_crossentropy"),
        ("mnist_convnet", (4, 1, 28, 28), "categorical_crossentropy"),
        ("cam_convnet", (2, 3, 32, 32), "binary_crossentropy"),
    ],
)
def test_pool_then_relu_trains_bit_for_bit_as_relu_then_pool(
    variant: str, shape: tuple[int, ...], loss: str, channels_last: bool
) -> None:
    """Exact, not close: the convolutions get the same inputs and the same output gradients, bit for bit."""
    torch.manual_seed(0)
    fused = create_model(variant)
    assert _sequentials(fused), "the variant's convs run in a KerasSequential"
    reference = copy.deepcopy(fused)
    for sequential in _sequentials(reference):
        sequential.fuse_pooling = False
    x, y = torch.rand(shape) - 0.3, torch.randint(0, 2 if loss == "binary_crossentropy" else 10, (shape[0],))
    if channels_last:
        fused, reference = (m.to(memory_format=torch.channels_last) for m in (fused, reference))
        x = x.contiguous(memory_format=torch.channels_last)
    assert [float(t) for t in _steps(fused, x, y, loss)] == [float(t) for t in _steps(reference, x, y, loss)]
    for (name, a), b in zip(fused.named_parameters(), reference.parameters(), strict=True):
        assert torch.equal(a, b), name
        assert torch.equal(a.grad, b.grad), name


def test_a_hooked_conv_runs_unfused_so_the_hook_sees_its_relu_output() -> None:
    torch.manual_seed(0)
    model = create_model("mnist_convnet").eval()
    x = torch.rand(3, 1, 28, 28) - 0.5
    plain = model(x)
    seen: list[torch.Tensor] = []
    handle = model.conv2d_1.register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        hooked = model(x)
    finally:
        handle.remove()
    (activation,) = seen
    assert activation.shape == (3, 32, 26, 26) and activation.min() == 0  # the layer's output: after its ReLU
    assert torch.equal(hooked, plain)
