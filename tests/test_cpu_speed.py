"""The CPU speed paths give the reference path's numbers: pool-then-ReLU bit for bit, channels_last within
the float32 rounding bound of a convolution (derived below, not taken from one CPU)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnrepro.errors import CnnreproError
from cnnrepro.params import load_params
from cnnrepro.train.backends.torch.models import create_model
from cnnrepro.train.backends.torch.models.layers import KerasSequential
from cnnrepro.train.backends.torch.optimizers import make_optimizer
from cnnrepro.train.backends.torch.steps import train_step
from cnnrepro.train.configure import configure_run
from cnnrepro.train.engine.run_config import resolve_channels_last

from .conftest import PROJECT_ROOT

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


# --- channels_last: within the float32 rounding bound of each convolution ------------------------------

U = 2.0**-24  # float32 unit roundoff


def _gamma(n: int) -> float:
    """Higham's gamma_n = n u / (1 - n u): |fl(sum of n products) - exact| <= gamma_n * sum of |products|,
    whatever the summation order (blocked, threaded, fused multiply-add): what any direct convolution does."""
    return n * U / (1 - n * U)


# (in, out, kernel, padding, size, batch): every conv of baseline, mnist_convnet and lenet.
CONVS = [
    (3, 32, 3, 0, 150, 2),
    (32, 64, 3, 0, 74, 2),
    (64, 128, 3, 0, 36, 2),
    (128, 128, 3, 0, 17, 2),
    (1, 32, 3, 0, 28, 4),
    (32, 64, 3, 0, 13, 4),
    (64, 64, 3, 0, 5, 4),
    (1, 6, 5, 2, 28, 4),
    (6, 16, 5, 0, 14, 4),
]


@pytest.mark.parametrize(("cin", "cout", "k", "pad", "size", "batch"), CONVS)
def test_channels_last_convolution_and_its_gradients_stay_within_float32_rounding(
    cin: int, cout: int, k: int, pad: int, size: int, batch: int
) -> None:
    """NCHW and NHWC each within gamma_n * (the same sum over |terms|) of the exact result, elementwise, for the
    output and all three gradients; so the two layouts differ by at most twice that. The exact result of the
    float32 inputs is the float64 one (its own rounding, ~n * 2^-53 relative, is far below the bound)."""
    conv2d, grad = torch.nn.functional.conv2d, torch.nn.grad
    torch.manual_seed(0)
    x, w = torch.randn(batch, cin, size, size), torch.randn(cout, cin, k, k) / (cin * k * k) ** 0.5
    b = torch.randn(cout)
    out = size + 2 * pad - k + 1
    g = torch.randn(batch, cout, out, out)
    xd, wd, bd = (t.double().requires_grad_() for t in (x, w, b))
    yd = conv2d(xd, wd, bd, padding=pad)
    yd.backward(g.double())
    exact = {"y": yd.detach(), "x": xd.grad, "w": wd.grad, "b": bd.grad}
    ax, aw, ag = x.double().abs(), w.double().abs(), g.double().abs()
    sums = grad.conv2d_weight(ax, w.shape, ag, padding=pad)
    bound = {
        "y": _gamma(cin * k * k + 1) * (conv2d(ax, aw, padding=pad) + b.double().abs()[:, None, None]),
        "x": _gamma(cout * k * k) * grad.conv2d_input(x.shape, aw, ag, padding=pad),
        "w": _gamma(batch * out * out) * sums,
        "b": _gamma(batch * out * out) * ag.sum(dim=(0, 2, 3)),
    }
    for memory_format in (torch.contiguous_format, torch.channels_last):
        xf = x.clone(memory_format=memory_format).requires_grad_()
        wf = w.clone(memory_format=memory_format).requires_grad_()
        bf = b.clone().requires_grad_()
        y = conv2d(xf, wf, bf, padding=pad)
        y.backward(g.contiguous(memory_format=memory_format))
        got = {"y": y.detach(), "x": xf.grad, "w": wf.grad, "b": bf.grad}
        for key in got:
            excess = (got[key].double() - exact[key]).abs() - bound[key]
            assert excess.max() <= 0, f"{memory_format} {key}: over the bound by {excess.max():.3g}"
    assert y.is_contiguous(memory_format=torch.channels_last)  # the NHWC path really ran NHWC


def test_channels_last_auto_is_on_for_pytorch_on_the_cpu_and_off_elsewhere() -> None:
    assert resolve_channels_last("auto", "cpu", "torch") is True
    assert resolve_channels_last("auto", "cuda:0", "torch") is False  # unmeasured on CUDA: not a default there
    assert resolve_channels_last("off", "cpu", "keras") is True  # Keras is NHWC by construction
    assert resolve_channels_last(False, "cpu", "torch") is False and resolve_channels_last("on", "cuda", "torch")
    with pytest.raises(CnnreproError, match=r"train\.channels_last 'nhwc' is not one of auto, on, off"):
        resolve_channels_last("nhwc", "cpu", "torch")
    params = load_params(PROJECT_ROOT / "params.yaml")
    assert params["train"]["channels_last"] == "auto"
    config = configure_run(
        params, framework="torch", variant="baseline", seed=0, data_dir="d", out_dir="o", device="cpu"
    )
    assert config.runtime.channels_last is True


@pytest.mark.parametrize(("given", "seen"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_workers_sleep_unless_the_user_chose_otherwise(given: str | None, seen: str) -> None:
    """Set when cnnrepro is imported, so a `cnnrepro` process's torch loads libgomp with it."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    code = "import cnnrepro, os, sys; print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == [seen, "False"]  # and torch was not loaded before it was set


THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")
HUGE_PAGES_OF_A_BUFFER = """
import cnnrepro, torch
buf = torch.ones(16 * 2**20)  # 64 MB, touched
ptr, inside = buf.data_ptr(), False
for line in open("/proc/self/smaps"):
    head = line.split()
    if head and "-" in head[0] and not head[0].endswith(":"):
        lo, hi = (int(v, 16) for v in head[0].split("-"))
        inside = lo <= ptr < hi
    elif inside and head[0] == "THPeligible:":
        print(head[1])
"""


@pytest.mark.parametrize(("given", "eligible"), [(None, "1"), ("0", "0")])
def test_large_cpu_buffers_take_huge_pages_unless_the_user_chose_otherwise(given: str | None, eligible: str) -> None:
    """THP_MEM_ALLOC_ENABLE=1, set at `import cnnrepro`, makes c10 madvise its large buffers for transparent huge
    pages: the kernel's own record of the buffer's mapping (/proc/self/smaps, THPeligible) shows it took."""
    mode = THP_MODE.read_text() if THP_MODE.exists() else "[never]"
    if "[never]" in mode:
        pytest.skip(f"this kernel gives no transparent huge pages ({THP_MODE}: {mode.strip()})")
    if eligible == "0" and "[always]" in mode:
        pytest.skip("THP 'always': every large mapping is eligible whatever PyTorch asks")
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if given:
        env["THP_MEM_ALLOC_ENABLE"] = given
    done = subprocess.run(
        [sys.executable, "-c", HUGE_PAGES_OF_A_BUFFER], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == [eligible]
