"""On a CUDA machine: does the fast step's CUDA-graph replay compute what the eager loop computes?

    python scripts/fast_step_check.py [--variant augmentation] [--epochs 2] [--steps 20] [--fault raise]

The CPU test (tests/test_fast_step.py) covers the fast step's step functions without the capture;
this covers the capture itself: the graph-registered augmentation generator, dropout's draws from the
default generator, the capturable optimizer, the warm-up restore, short batches at the end of a pass.
Both runs use the variant's real network and optimizer on random images of its input size, cuDNN in
deterministic mode (so the only difference left is the capture), and are compared after each epoch
and at the end. The fast run's own self-check (cnnrepro.train.backends.torch.fast_step_guard) must
keep the fast step on: falling back would leave the default unproven, so it FAILs.

With --fault raise|disagree the capture fails on purpose: the run must fall back (its one line) and
then equal the eager run, the fallback shown on the machine it is for.

Prints one line per figure, a `RESULT` line for gpu-check.sh's table, and PASS or FAIL; exit 1 on FAIL.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import numpy as np
import torch

from cnnrepro.train.backends.torch.fast_step_guard import FAULTS
from cnnrepro.train.backends.torch.loop import FitSettings, fit
from cnnrepro.train.backends.torch.models import create_model
from cnnrepro.train.backends.torch.optimizers import make_optimizer
from cnnrepro.train.backends.torch.steps import DeviceSplit
from cnnrepro.train.engine.augmentation_spec import AugmentationSpec
from cnnrepro.train.inputs.pipeline import InputPipeline
from cnnrepro.variants.registry import get_variant

RTOL, ATOL = 1e-4, 1e-5


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run(
    variant: str, fast: bool, epochs: int, steps: int, n_images: int, device: torch.device, fault: str | None = None
) -> tuple[list[dict], dict, float, dict]:
    spec = get_variant(variant)
    torch.manual_seed(0)
    model = create_model(variant).to(device)
    optimizer = make_optimizer(spec.optimizer, [p for p in model.parameters() if p.requires_grad], spec.learning_rate)
    rng = np.random.default_rng(0)
    height, width, channels = spec.input_shape[1], spec.input_shape[2], spec.input_shape[0]

    def split(n: int) -> DeviceSplit:
        x = torch.from_numpy(rng.integers(0, 256, (n, height, width, channels), dtype=np.uint8)).to(device)
        y = torch.from_numpy(rng.integers(0, len(spec.classes), n)).to(device)
        return DeviceSplit(x, y)

    train, validation = split(n_images), split(n_images // 2)
    generator = None
    augmentation = AugmentationSpec(**spec.augmentation) if spec.augmentation else None
    if augmentation is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(3)
    inputs = InputPipeline("images", "scale", spec.input_scale, augmentation, generator)
    settings = FitSettings(
        loss=spec.loss,
        epochs=epochs,
        batch_size=spec.batch_size,
        steps_per_epoch=steps,
        validation_steps=None,
        seed=0,
        progress=False,
        fast_step=fast,
        fast_step_fault=fault,
        on_decision=lambda name, record: decisions.__setitem__(name, record),
    )
    decisions: dict[str, dict[str, str]] = {}
    torch.manual_seed(0)  # dropout's stream (CPU and CUDA), the same for both runs
    _sync(device)
    started = time.perf_counter()
    history = fit(model, optimizer, train, validation, inputs, settings)
    _sync(device)
    return history, copy.deepcopy(model.state_dict()), time.perf_counter() - started, decisions.get("fast_step", {})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="augmentation")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--images", type=int, default=210, help="training images (not a multiple of the batch)")
    parser.add_argument("--device", default="cuda", help="cpu: the script's own dry run (the fast step uncaptured)")
    parser.add_argument("--fault", choices=FAULTS, default=None, help="make the capture fail on purpose")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("FAIL: no CUDA device")
        return 1
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    eager, eager_state, eager_s, _ = _run(args.variant, False, args.epochs, args.steps, args.images, device)
    fast, fast_state, fast_s, decision = _run(
        args.variant, True, args.epochs, args.steps, args.images, device, args.fault
    )
    expected = "fell back" if args.fault else "on"
    ok = decision.get("state") == expected
    print(f"self-check: {decision.get('state')} ({decision.get('reason')}); expected {expected}")
    for e, f in zip(eager, fast, strict=True):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            close = np.isclose(f[key], e[key], rtol=RTOL, atol=ATOL)
            ok &= bool(close)
            print(f"epoch {e['epoch']} {key}: eager {e[key]:.6f} fast {f[key]:.6f} {'ok' if close else 'DIFFERS'}")
    worst = max(float((fast_state[k].float() - v.float()).abs().max()) for k, v in eager_state.items())
    weights_close = all(
        torch.allclose(fast_state[k].float(), v.float(), rtol=RTOL, atol=ATOL) for k, v in eager_state.items()
    )
    bitwise = all(torch.equal(fast_state[k], v) for k, v in eager_state.items())
    ok &= weights_close
    verdict = "bitwise equal" if bitwise else "within tolerance" if weights_close else "DIFFER"
    print(f"weights: largest difference {worst:.3g} ({verdict})")
    print(
        f"time on {device} (deterministic cuDNN, {args.epochs} epochs incl. capture): "
        f"eager {eager_s:.2f} s, fast {fast_s:.2f} s"
    )
    mode = "captured" if device.type == "cuda" else "uncaptured (CPU dry run)"
    fault = f", fault {args.fault}" if args.fault else ""
    verdict_word = "PASS" if ok else "FAIL"
    print(
        f"RESULT fast step {args.variant} {mode}{fault}: {verdict_word}; self-check {decision.get('state')};"
        f" weights {verdict} ({worst:.2g}); eager {eager_s:.2f} s, fast {fast_s:.2f} s"
    )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
