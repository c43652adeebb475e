"""RMSprop with the sources' update rules, checked against steps computed by hand."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from cnnrepro.train.backends.torch.optimizers import Keras3RMSprop, make_optimizer


def _steps(optimizer_name: str, grads: list[list[float]], lr: float, p0: list[float]) -> list[list[float]]:
    p = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    opt = make_optimizer(optimizer_name, [p], lr)
    out = []
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        out.append(p.detach().tolist())
    return out


def test_keras2_rmsprop_matches_the_book_keras_by_hand() -> None:
    # Keras 2.0.8: a = 0.9 a + 0.1 g^2 (a from 0); p -= lr g / (sqrt(a) + 1e-8)
    lr, p0, g1, g2 = 1e-4, [0.5, -1.0, 2.0], [0.3, -2.0, 1e-6], [-0.1, 0.5, 0.0]
    got = _steps("rmsprop_keras2", [g1, g2], lr, p0)
    a1 = [0.1 * g * g for g in g1]
    p1 = [p - lr * g / (math.sqrt(a) + 1e-8) for p, g, a in zip(p0, g1, a1, strict=True)]
    a2 = [0.9 * a + 0.1 * g * g for a, g in zip(a1, g2, strict=True)]
    p2 = [p - lr * g / (math.sqrt(a) + 1e-8) for p, g, a in zip(p1, g2, a2, strict=True)]
    assert got[0] == pytest.approx(p1, rel=1e-12, abs=1e-15)
    assert got[1] == pytest.approx(p2, rel=1e-12, abs=1e-15)
    # The first step is lr / sqrt(0.1) ~ 3.16 lr per unit-sign gradient; torch's default alpha 0.99 gives 10 lr.
    assert p0[0] - got[0][0] == pytest.approx(lr / math.sqrt(0.1), rel=1e-6)
    default = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    torch_default = torch.optim.RMSprop([default], lr=lr)
    default.grad = torch.tensor(g1, dtype=torch.float64)
    torch_default.step()
    assert default.detach().tolist() != pytest.approx(p1, rel=1e-3)


def test_keras3_rmsprop_puts_epsilon_inside_the_root() -> None:
    lr, p0, g = 1e-3, [1.0, 1.0], [0.5, 1e-4]
    got = _steps("rmsprop_keras3", [g], lr, p0)[0]
    expected = [p - lr * gi / math.sqrt(0.1 * gi * gi + 1e-7) for p, gi in zip(p0, g, strict=True)]
    assert got == pytest.approx(expected, rel=1e-12)
    # A tiny gradient moves far less than with eps outside the root (1e-4 here: 3.1e-4 vs 3.16e-3).
    outside = _steps("rmsprop_keras2", [g], lr, p0)[0]
    assert (1.0 - got[1]) < 0.2 * (1.0 - outside[1])


def test_sgd_is_plain_sgd() -> None:
    assert _steps("sgd", [[1.0, -2.0]], 0.9, [0.0, 0.0])[0] == pytest.approx([-0.9, 1.8])


def test_optimizer_state_round_trips() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    opt = Keras3RMSprop([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    clone = torch.nn.Parameter(p.detach().clone())
    restored = Keras3RMSprop([clone], lr=0.1)
    restored.load_state_dict(copy.deepcopy(opt.state_dict()))  # as a checkpoint file would
    for param in (p, clone):
        param.grad = torch.full((3,), 0.5)
    opt.step()
    restored.step()
    assert torch.equal(p, clone)


def test_unknown_optimizer_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'adam'"):
        make_optimizer("adam", [torch.nn.Parameter(torch.ones(1))], 1e-3)
