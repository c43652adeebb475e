"""Optimizers with the sources' exact update rules.

- "rmsprop_keras2": Keras 2.0.8 RMSprop (the book): a = rho*a + (1-rho)*g^2 from a = 0,
  p -= lr * g / (sqrt(a) + eps), rho 0.9, eps 1e-8 outside the root, no momentum, not centered.
  That is torch.optim.RMSprop with alpha=0.9 (torch's default alpha 0.99 makes the first steps
  about 3x larger: 1/sqrt(0.01) vs 1/sqrt(0.1)).
- "rmsprop_keras3": RMSprop of tf.keras >= 2.11 / Keras 3 (the CAM example, which needs
  TF >= 2.10 for image_dataset_from_directory(subset="both")): eps 1e-7 INSIDE the root,
  p -= lr * g / sqrt(a + eps). torch has no such option, hence the small class below.
- "sgd": plain torch.optim.SGD, as d2l uses it (no momentum, no weight decay).
- "rmsprop_torch": torch.optim.RMSprop with its defaults (alpha 0.99, eps 1e-8 outside the root): what a
  quick port writes; no source used it (ablation naive_torch_port).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from cnnrepro.train.engine.optimizers import KERAS2_EPSILON, KERAS2_RHO, KERAS3_EPSILON, KERAS3_RHO, OPTIMIZERS

__all__ = ["KERAS2_EPSILON", "KERAS2_RHO", "KERAS3_EPSILON", "KERAS3_RHO", "OPTIMIZERS", "make_optimizer"]


def keras2_rmsprop(params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.RMSprop:
    return torch.optim.RMSprop(params, lr=lr, alpha=KERAS2_RHO, eps=KERAS2_EPSILON, momentum=0.0, centered=False)


class Keras3RMSprop(torch.optim.Optimizer):
    """p -= lr * g / sqrt(a + eps), a = rho*a + (1-rho)*g^2, a starting at 0 (Keras 3 / tf.keras >= 2.11)."""

    def __init__(
        self, params: Iterable[torch.nn.Parameter], lr: float, rho: float = KERAS3_RHO, eps: float = KERAS3_EPSILON
    ) -> None:
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):  # torch's signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                square_avg = state["square_avg"]
                square_avg.mul_(group["rho"]).addcmul_(p.grad, p.grad, value=1 - group["rho"])
                p.addcdiv_(p.grad, square_avg.add(group["eps"]).sqrt_(), value=-group["lr"])
        return loss


def make_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """The optimizer a variant names; only parameters that require grad should be passed."""
    if name == "rmsprop_keras2":
        return keras2_rmsprop(params, lr)
    if name == "rmsprop_keras3":
        return Keras3RMSprop(params, lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "rmsprop_torch":
        return torch.optim.RMSprop(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r} (known: {', '.join(OPTIMIZERS)})")
