"""The fast step (train.fast_step): training and validation steps replayed as CUDA graphs.

At the book's batch of 20 a Dogs-vs-Cats step is launch-bound on a modern GPU (hundreds of small
kernels, each costing more to launch than to run), so the whole step is captured once and replayed:

- training: index_select of the batch from the split on the device, the on-device augmentation
  (its random draws from the run's device generator, registered with the graph so every replay
  draws fresh numbers in the same sequence eager code would), scaling, forward under the loop's
  autocast, float32 loss, backward, the optimizer step (torch's RMSprop with `capturable=True`:
  its step counter lives on the device; the Keras 3 RMSprop and SGD are in-place and graph-safe
  as they are), and the epoch's summed loss / number correct accumulated on the device;
- validation: the same up to the loss, under no_grad, into the validation sums.

Per step the host only computes the batch's indices (the data order stays the eager loop's
KerasIterator), copies them into the graph's static index buffer without blocking, and replays.
Nothing reads a number back until the epoch's row is built: no host sync inside an epoch.

The capture needs warm-up runs (allocations, cuDNN autotuning, the optimizer's lazy state, the
augmentation's cached matrices); they change the weights, the optimizer state and the random
generators, so all of those are saved before and copied back in place after (the graph keeps the
same addresses). Optimizer state created during the warm-up is zeroed: every optimizer here starts
its state at zero (RMSprop's square average and step count; SGD has none), which `supported` checks.

One graph per batch size (a pass's last batch can be short); each has its own memory pool.

`FastSteps(capture=False)` runs the very same step functions on the same static buffers without
capturing: the CPU test compares it with the eager loop (tests/test_fast_step.py). The eager loop
(`steps.train_step` / `steps.evaluate`) stays the reference: every run checks its first captures
against it and falls back to it (cnnrepro.train.backends.torch.fast_step_guard).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnrepro.mappings import JsonObject
from cnnrepro.train.backends.torch.steps import DeviceSplit, loss_sum_and_correct
from cnnrepro.train.inputs.pipeline import InputPipeline

# Warm-up runs before a capture (the PyTorch docs' whole-network example uses 3; the first runs
# cuDNN's autotuner, the later ones settle the caching allocator).
WARMUP_RUNS = 3


def supported(optimizer: torch.optim.Optimizer) -> str | None:
    """None when the fast step can drive this optimizer; else why not (the loop then stays eager)."""
    for group in optimizer.param_groups:
        if group.get("momentum", 0) or group.get("centered", False) or group.get("weight_decay", 0):
            # momentum_buffer starts as a copy of the first gradient, not at zero: the warm-up restore
            # (zeroing state created during warm-up) would be wrong. Not used by any variant.
            return f"{type(optimizer).__name__} with momentum/centered/weight decay"
    return None


def make_capturable(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """torch optimizers with a `capturable` option keep their step count on the device (graph-safe);
    state restored from a checkpoint (steps on the CPU) is moved there."""
    for group in optimizer.param_groups:
        if "capturable" in group:
            group["capturable"] = True
    for state in optimizer.state.values():
        for key, value in list(state.items()):
            if torch.is_tensor(value) and value.device != device:
                state[key] = value.to(device)


class FastSteps:
    """Training and validation steps of one fit() on static buffers, captured as CUDA graphs when `capture`."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        train: DeviceSplit,
        validation: DeviceSplit,
        inputs: InputPipeline,
        loss: str,
        batch_size: int,
        *,
        autocast_dtype: torch.dtype | None,
        capture: bool,
        capture_with: Callable[[Callable[[], None]], Callable[[], None]] | None = None,
    ) -> None:
        self.model, self.optimizer = model, optimizer
        self.train_split, self.validation_split = train, validation
        self.inputs, self.loss, self.batch_size = inputs, loss, batch_size
        self.device = train.x.device
        self.autocast_dtype = autocast_dtype
        self.capture = capture
        # Turns a step body into its runner in place of the CUDA-graph capture (fast_step_guard's faults).
        self.capture_with = capture_with
        if capture and self.device.type != "cuda":
            raise ValueError(f"CUDA graph capture needs a CUDA device, not {self.device}")
        if capture:
            make_capturable(optimizer, self.device)
        self.index = {
            "train": torch.zeros(batch_size, dtype=torch.long, device=self.device),
            "validation": torch.zeros(batch_size, dtype=torch.long, device=self.device),
        }
        # Summed loss (float32) and number correct per phase, on the device, zeroed per epoch.
        self.sums = {
            phase: (torch.zeros((), device=self.device), torch.zeros((), dtype=torch.long, device=self.device))
            for phase in ("train", "validation")
        }
        self.seen = {"train": 0, "validation": 0}
        self._runners: dict[tuple[str, int], Callable[[], None]] = {}
        self._graphs: list[Any] = []  # keeps captured graphs (and their pools) alive

    # --- per epoch -------------------------------------------------------------------------------

    def start_epoch(self) -> None:
        """Zero the sums and put the model in training mode (validate() switches it to eval)."""
        self.model.train()
        for phase, (total, correct) in self.sums.items():
            total.zero_()
            correct.zero_()
            self.seen[phase] = 0

    def train(self, index: np.ndarray) -> int:
        """One update on the training images `index`; returns the batch size (no sync)."""
        return self._run("train", index)

    def validate(self, batches: Iterable[np.ndarray]) -> dict[str, float]:
        """Loss and accuracy over `batches`, weighted by batch size, as loop.evaluate computes them.
        Reads the sums back: the epoch's one synchronization, with `train_totals`."""
        self.model.eval()
        for index in batches:
            self._run("validation", index)
        total, correct = self.sums["validation"]
        n = self.seen["validation"]
        return {"loss": float(total) / n, "accuracy": float(correct) / n, "n": n}

    def train_totals(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The epoch's summed training loss and number correct (device tensors)."""
        return self.sums["train"]

    # --- steps -----------------------------------------------------------------------------------

    def _run(self, phase: str, index: np.ndarray) -> int:
        n = len(index)
        if n > self.index[phase].shape[0]:
            raise ValueError(f"batch of {n} exceeds the static buffer of {self.index[phase].shape[0]}")
        host = torch.from_numpy(np.asarray(index, dtype=np.int64))
        if self.device.type == "cuda":
            # From pinned memory without blocking: the host queues the next step while the GPU runs.
            host = host.pin_memory()
        self.index[phase][:n].copy_(host, non_blocking=True)
        runner = self._runners.get((phase, n))
        if runner is None:
            runner = self._runners[(phase, n)] = self._prepare(phase, n)
        runner()
        self.seen[phase] += n
        return n

    def _autocast(self) -> torch.autocast:
        # cache_enabled=False: autocast's weight-cast cache would keep tensors from the capture alive
        # and stale across replays (PyTorch's advice for autocast inside graph capture).
        return torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.bfloat16,
            enabled=self.autocast_dtype is not None,
            cache_enabled=False,
        )

    def _train_body(self, n: int) -> Callable[[], None]:
        index = self.index["train"][:n]
        total, correct = self.sums["train"]

        def body() -> None:
            x = self.train_split.x.index_select(0, index)
            y = self.train_split.y.index_select(0, index)
            with self._autocast():
                logits = self.model(self.inputs(x, train=True))
            batch_total, batch_correct = loss_sum_and_correct(logits, y, self.loss)
            if not self.capture:
                # Captured, the gradients are assigned (not accumulated) on every replay: they were
                # None when the capture began. Eager, they are cleared as loop.train_step does.
                self.optimizer.zero_grad(set_to_none=True)
            (batch_total / n).backward()
            self.optimizer.step()
            total.add_(batch_total.detach())
            correct.add_(batch_correct)

        return body

    def _validation_body(self, n: int) -> Callable[[], None]:
        index = self.index["validation"][:n]
        total, correct = self.sums["validation"]

        @torch.no_grad()
        def body() -> None:
            x = self.validation_split.x.index_select(0, index)
            y = self.validation_split.y.index_select(0, index)
            with self._autocast():
                logits = self.model(self.inputs(x, train=False))
            batch_total, batch_correct = loss_sum_and_correct(logits, y, self.loss)
            total.add_(batch_total)
            correct.add_(batch_correct)

        return body

    def _prepare(self, phase: str, n: int) -> Callable[[], None]:
        body = self._train_body(n) if phase == "train" else self._validation_body(n)
        if self.capture_with is not None:
            return self.capture_with(body)
        if not self.capture:
            return body
        return self._captured(body)

    # --- capture ---------------------------------------------------------------------------------

    def warm_up(self, phase: str, index: np.ndarray) -> None:
        """Run the `phase` step on `index` WARMUP_RUNS times, then put back every state they changed:
        what a capture does first. Training then goes on as if they never ran."""
        self.index[phase][: len(index)].copy_(torch.from_numpy(np.asarray(index, dtype=np.int64)))
        body = self._train_body(len(index)) if phase == "train" else self._validation_body(len(index))
        self._rehearse(body)

    def _rehearse(self, body: Callable[[], None]) -> None:
        saved = self.save_state()
        if self.capture:
            # On a side stream, as PyTorch asks of the runs before a capture.
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(WARMUP_RUNS):
                    self.optimizer.zero_grad(set_to_none=True)
                    body()
            torch.cuda.current_stream(self.device).wait_stream(side)
        else:
            for _ in range(WARMUP_RUNS):
                self.optimizer.zero_grad(set_to_none=True)
                body()
        self.restore_state(saved)

    def _captured(self, body: Callable[[], None]) -> Callable[[], None]:
        self._rehearse(body)
        graph = torch.cuda.CUDAGraph()
        generator = self.inputs.generator
        if generator is not None and generator.device.type == "cuda":
            graph.register_generator_state(generator)
        self.optimizer.zero_grad(set_to_none=True)
        # thread_local: the checkpoint writer's thread (CPU only) may be saving the previous epoch meanwhile.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            body()
        self._graphs.append(graph)
        return graph.replay

    def save_state(self) -> JsonObject:
        """Copies of everything a warm-up run changes: weights and buffers, optimizer state, the epoch
        sums, the augmentation generator and the device's default generator (dropout)."""
        optimizer_state = {
            id(p): {k: v.clone() if torch.is_tensor(v) else v for k, v in self.optimizer.state[p].items()}
            for group in self.optimizer.param_groups
            for p in group["params"]
            if p in self.optimizer.state
        }
        generator = self.inputs.generator
        return {
            "tensors": [t.detach().clone() for t in self._model_tensors()],
            "optimizer": optimizer_state,
            "sums": [t.clone() for pair in self.sums.values() for t in pair],
            "generator": generator.get_state() if generator is not None else None,
            "default_rng": self._default_rng_state(),
        }

    def restore_state(self, saved: JsonObject) -> None:
        with torch.no_grad():
            for tensor, copy in zip(self._model_tensors(), saved["tensors"], strict=True):
                tensor.copy_(copy)
            for group in self.optimizer.param_groups:
                for p in group["params"]:
                    before = saved["optimizer"].get(id(p))
                    for key, value in self.optimizer.state.get(p, {}).items():
                        if not torch.is_tensor(value):
                            continue
                        if before is not None and key in before:
                            value.copy_(before[key])
                        else:
                            value.zero_()  # created by the warm-up: every optimizer here starts at 0
            for tensor, copy in zip([t for pair in self.sums.values() for t in pair], saved["sums"], strict=True):
                tensor.copy_(copy)
        if saved["generator"] is not None:
            self.inputs.generator.set_state(saved["generator"])
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(saved["default_rng"], self.device)
        else:
            torch.set_rng_state(saved["default_rng"])

    def _default_rng_state(self) -> torch.Tensor:
        return torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else torch.get_rng_state()

    def _model_tensors(self) -> list[torch.Tensor]:
        return [*self.model.parameters(), *self.model.buffers()]
