"""The fast step proves itself before a run uses it: its first captures checked against the eager step.

`start` builds the run's FastSteps and, before the first epoch, runs the same few training batches
(every batch size training will see: full ones and a pass's short last one) twice from copies of the
same state: once through the eager reference (steps.train_step), once through the fast step, which
captures its CUDA graphs right there. Then one validation batch of each size through both, at the same
weights. Every state the check touched (weights, optimizer state, generators) is put back, so the run
trains as if it never ran. When the capture raises, or the two disagree beyond float rounding, the run
falls back to the eager loop with one printed line; the decision (on / fell back / off, and why) goes
to the caller's `on_decision` (run_info.json `decisions`, MLflow tags).

The bound, per tensor, with w0 the weights before the check, we / wf after it (eager / fast):

    ||wf - we|| <= FLIP_FRACTION * ||we - w0|| + WEIGHT_ULPS * eps32 * ||we||

Two correct paths differ only in float rounding (summation order, atomics in cuDNN's backward). That
changes a gradient element by a few ulp; RMSprop's step, lr * g / sqrt(a), is nearly independent of |g|,
so an element moves by a full step of a random sign only where its gradient is itself at the rounding
level: a small fraction f of a network's weights, giving ||wf - we|| ~ 2 sqrt(f) ||we - w0||. A broken
replay (a stale batch, frozen random draws, a skipped or doubled update) moves most elements the wrong
way, giving ||wf - we|| >= ~||we - w0||. FLIP_FRACTION = 0.5 sits between (f up to ~6% passes). The
second term is a few ulp of the weights themselves (eps32 = 2^-23, the ulp of 1.0).

Losses, per step: |Lf - Le| <= LOSS_ULPS * u * |Le| + FLIP_FRACTION * spread, where u is the unit
roundoff of the forward pass's arithmetic (fp32 2^-24, TF32 2^-11, bf16 autocast 2^-8) and spread how
far the eager losses moved over the check (max |Le_k - Le_1|): the first step sees identical weights, so
only rounding separates them; later steps see weights that differ by at most FLIP_FRACTION of the
update, to first order at most that fraction of the update's effect on the loss. Validation (same
weights, no update): |Lf - Le| <= LOSS_ULPS * u * |Le|.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cnnrepro.train.backends.torch import fast_step
from cnnrepro.train.backends.torch.steps import DeviceSplit, evaluate, train_step
from cnnrepro.train.inputs.pipeline import InputPipeline

CHECK_STEPS = 3  # full training batches (then the short one, where a pass ends in one)
FLIP_FRACTION = 0.5
WEIGHT_ULPS = 4
LOSS_ULPS = 64
EPS32 = 2.0**-23
UNIT_ROUNDOFF = {"fp32": 2.0**-24, "tf32": 2.0**-11, "bf16": 2.0**-8}
# Faults a run can be told to inject into the capture (FitSettings.fast_step_fault; the trainer reads
# $CNNREPRO_FAST_STEP_FAULT): the fallback is then shown on any machine, CUDA or not.
FAULT_ENV = "CNNREPRO_FAST_STEP_FAULT"
FAULTS = ("raise", "disagree")


@dataclass(frozen=True)
class Decision:
    """What a run's fast step came to: state "on", "fell back" or "off", and why."""

    state: str
    reason: str

    def record(self) -> dict[str, str]:
        return {"state": self.state, "reason": self.reason}

    def line(self) -> str:
        return f"fast step {self.state}: {self.reason}"


class CheckFailed(Exception):
    """The fast step disagrees with the eager step beyond float rounding."""


Capture = Callable[[Callable[[], None]], Callable[[], None]]


def fault_capture(fault: str) -> Capture:
    """A capture that fails on purpose: "raise" raises as a failing CUDA-graph capture would; "disagree"
    returns a runner that applies every update twice (a replay that computes something else)."""
    if fault not in FAULTS:
        raise ValueError(f"{FAULT_ENV}: {fault!r} is not one of {', '.join(FAULTS)}")

    def capture(body: Callable[[], None]) -> Callable[[], None]:
        if fault == "raise":
            raise RuntimeError(f"capture failed on purpose ({FAULT_ENV}={fault})")

        def twice() -> None:
            body()
            body()

        return twice

    return capture


def forward_unit_roundoff(device: torch.device, autocast_dtype: torch.dtype | None) -> float:
    """The unit roundoff of what the forward pass multiplies in (TF32 is a process-wide CUDA switch)."""
    if autocast_dtype is not None:
        return UNIT_ROUNDOFF["bf16"]
    if device.type == "cuda" and (torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32):
        return UNIT_ROUNDOFF["tf32"]
    return UNIT_ROUNDOFF["fp32"]


def check_batches(n: int, batch_size: int, steps: int) -> list[np.ndarray]:
    """`steps` full batches walking the split (wrapping), then one of a pass's short last size, if any."""
    size = min(batch_size, n)
    batches = [(np.arange(size) + k * size) % n for k in range(steps)]
    if n % batch_size and n > batch_size:
        batches.append(np.arange(n % batch_size))
    return batches


def start(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: DeviceSplit,
    validation: DeviceSplit,
    inputs: InputPipeline,
    *,
    loss: str,
    batch_size: int,
    mixed_precision: bool,
    fault: str | None = None,
    capture_with: Capture | None = None,
) -> tuple[fast_step.FastSteps | None, Decision]:
    """The run's checked FastSteps, or None (the eager loop) with the reason; prints the decision's line.
    `capture_with` replaces the CUDA-graph capture (a step body -> its runner; `fault` names a built-in one)."""
    device = train.x.device
    why_not = fast_step.supported(optimizer)
    if why_not is not None:
        decision = Decision("off", why_not)
        print(decision.line(), flush=True)
        return None, decision
    autocast_dtype = torch.bfloat16 if mixed_precision and device.type == "cuda" else None
    capturable = [group.get("capturable") for group in optimizer.param_groups]
    fast = fast_step.FastSteps(
        model,
        optimizer,
        train,
        validation,
        inputs,
        loss,
        batch_size,
        # The loop's autocast (steps.autocast): bf16 when mixed precision is on, else none. TF32 is a
        # process-wide switch the captured kernels follow as the eager ones do.
        autocast_dtype=autocast_dtype,
        capture=device.type == "cuda",
        capture_with=capture_with or (fault_capture(fault) if fault else None),
    )
    saved = fast.save_state()
    try:
        summary = _compare(fast, mixed_precision)
        decision = Decision("on", ("CUDA graphs" if fast.capture else "uncaptured") + f"; checked: {summary}")
    except CheckFailed as exc:
        decision = Decision("fell back", f"disagrees with the eager step ({exc}); training eagerly")
    except Exception as exc:  # a capture that fails for any reason must not end the run
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        decision = Decision("fell back", f"capture failed ({type(exc).__name__}: {first}); training eagerly")
    fast.restore_state(saved)
    model.train()
    print(decision.line(), flush=True)
    if decision.state == "on":
        return fast, decision
    for group, flag in zip(optimizer.param_groups, capturable, strict=True):
        if flag is not None:
            group["capturable"] = flag  # make_capturable's change undone: the eager loop as without it
    optimizer.zero_grad(set_to_none=True)  # no gradient tensor of a graph's pool stays attached
    return None, decision


def _compare(fast: fast_step.FastSteps, mixed_precision: bool) -> str:
    """Both paths from the same state on the same batches (the model, optimizer, splits and inputs `fast` was
    built on); CheckFailed naming the worst figure, else a summary."""
    model, optimizer, inputs, loss = fast.model, fast.optimizer, fast.inputs, fast.loss
    train, validation, batch_size = fast.train_split, fast.validation_split, fast.batch_size
    saved = fast.save_state()
    before = [t.detach().clone() for t in _tensors(model)]
    train_batches = check_batches(len(train), batch_size, CHECK_STEPS)
    model.train()
    eager_losses = []
    for index in train_batches:
        x, y = train.batch(index)
        total, _ = train_step(model, optimizer, inputs(x, train=True), y, loss, mixed_precision=mixed_precision)
        eager_losses.append(float(total) / len(index))
    eager = [t.detach().clone() for t in _tensors(model)]
    fast.restore_state(saved)

    fast.start_epoch()
    fast_losses, summed = [], 0.0
    for index in train_batches:
        fast.train(index)
        now = float(fast.train_totals()[0])  # the running sum: this step's loss is the difference
        fast_losses.append((now - summed) / len(index))
        summed = now
    u = forward_unit_roundoff(train.x.device, fast.autocast_dtype)
    spread = max(abs(v - eager_losses[0]) for v in eager_losses)
    worst = 0.0  # the largest figure / bound ratio: above 1 fails
    # The weights first: their bound is the sharper one (a replay off by a whole update fails it).
    for name, w0, we, wf in zip(_names(model), before, eager, _tensors(model), strict=True):
        difference = float((wf.float() - we.float()).norm())
        bound = FLIP_FRACTION * float((we.float() - w0.float()).norm()) + WEIGHT_ULPS * EPS32 * float(we.float().norm())
        worst = max(worst, _ratio(difference, bound, f"{name}: |fast - eager| {difference:.3g}"))
    for k, (e, f) in enumerate(zip(eager_losses, fast_losses, strict=True)):
        bound = LOSS_ULPS * u * abs(e) + (FLIP_FRACTION * spread if k else 0.0)
        what = f"training loss of check step {k + 1}: eager {e:.7g}, fast {f:.7g}"
        worst = max(worst, _ratio(abs(f - e), bound, what))

    val_batches = check_batches(len(validation), batch_size, 1)
    for index in val_batches:
        e = evaluate(model, validation, [index], inputs, loss, mixed_precision=mixed_precision)["loss"]
        fast.start_epoch()
        f = fast.validate([index])["loss"]
        worst = max(worst, _ratio(abs(f - e), LOSS_ULPS * u * abs(e), f"validation loss: eager {e:.7g}, fast {f:.7g}"))
    sizes = sorted({len(i) for i in train_batches} | {len(i) for i in val_batches})
    return f"{len(train_batches)} steps, batch sizes {sizes}, worst difference {worst:.2g} of its bound"


def _ratio(difference: float, bound: float, what: str) -> float:
    if not math.isfinite(difference) or difference > bound:
        raise CheckFailed(f"{what}, bound {bound:.3g}")
    return difference / bound if bound > 0 else 0.0


def _tensors(model: nn.Module) -> list[torch.Tensor]:
    return [t.detach() for t in (*model.parameters(), *model.buffers())]


def _names(model: nn.Module) -> list[str]:
    return [*(n for n, _ in model.named_parameters()), *(n for n, _ in model.named_buffers())]
