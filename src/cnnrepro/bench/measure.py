"""Time training steps of one variant on the fast path (the pipeline's own) and on the naive path.

Per path: warm-up steps (not timed), then `steps` steps timed in two parts, the batch (fetch +
augment + scale, i.e. everything before the model) and the update (forward, loss, backward,
optimizer step), with a device synchronize after each part so GPU work is charged where it happens.
On a GPU the throughput comes from a second run of `steps` steps without those synchronizations
(what training really does); on the CPU the timed parts already are that. The fast path also times
`steps` updates on one fixed, ready batch: the pure compute its step time is compared with.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from cnnrepro.bench.flops import counted_train_flops, layer_costs, train_macs
from cnnrepro.bench.peaks import DevicePeak
from cnnrepro.mappings import JsonObject
from cnnrepro.train.backends.torch import trainer
from cnnrepro.train.backends.torch.optimizers import make_optimizer
from cnnrepro.train.backends.torch.steps import loss_sum_and_correct, train_step
from cnnrepro.train.engine.epochs import KerasIterator
from cnnrepro.train.engine.lifecycle import load_splits
from cnnrepro.train.engine.run_config import Prepared, RunConfig

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class PathResult:
    """One row of the bench table (times in ms per step unless named otherwise)."""

    variant: str
    path: str  # "fast" (eager pipeline step) | "graph" (the fast step's CUDA graphs) | "naive"
    status: str  # "measured" | "not_run"
    reason: str | None = None
    batch_size: int | None = None
    steps: int | None = None
    options: JsonObject = field(default_factory=dict)
    setup_s: float | None = None  # data loading (decode or cache), model, feature extraction
    warmup_s: float | None = None
    images_per_s: float | None = None
    step_ms: float | None = None
    data_ms: float | None = None
    compute_ms: float | None = None
    pure_ms: float | None = None  # fast path: the same update on one fixed, ready batch
    forward_gmac_per_image: float | None = None
    train_gflop_per_image: float | None = None  # forward + backward, counted from the layers
    counted_gflop_per_image: float | None = None  # the same, by torch's FlopCounterMode
    achieved_tflops: float | None = None
    peak_tflops: float | None = None
    peak_precision: str | None = None
    peak_source: str | None = None
    peak_fraction: float | None = None
    peak_memory_mb: float | None = None
    memory_kind: str | None = None
    # A steady fit() epoch over the same steps (one validation batch), per training step: the loop's truth.
    fit_step_ms: float | None = None

    def as_dict(self) -> JsonObject:
        return asdict(self)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def timed_setup(config: RunConfig, prepared: Prepared, device: torch.device) -> tuple[trainer.TrainingSetup, float]:
    """The run's training setup (process options, splits, model, optimizer) and the seconds it took."""
    trainer.configure_process(config)
    reset_memory(device)
    started = time.perf_counter()
    setup = trainer.setup_training(config, prepared, load_splits(config))
    synchronize(device)
    return setup, time.perf_counter() - started


def _peak_memory(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max allocated"
    # Linux reports kilobytes; the process's high-water mark so far (the bench's earlier rows included).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process max RSS"


def _loss_of(loss: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def mean_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total, _ = loss_sum_and_correct(logits, y, loss)
        return total / len(y)

    return mean_loss


def fill_flops(result: PathResult, model: torch.nn.Module, batch: Batch, loss: str) -> int:
    """Fill the FLOP columns from `model` on `batch`; returns the training MACs per example."""
    x, y = batch
    mean_loss = _loss_of(loss)
    # The count runs the eager model (a compiled one would hide its layers from the hooks and the counter).
    with torch.compiler.set_stance("force_eager"):
        costs = layer_costs(model, x[:1])
        counted = counted_train_flops(model, x, lambda logits: mean_loss(logits, y))
    macs = train_macs(costs)
    result.forward_gmac_per_image = sum(c.forward_macs for c in costs) / 1e9
    result.train_gflop_per_image = 2 * macs / 1e9
    result.counted_gflop_per_image = counted / len(y) / 1e9
    return macs


def _timed_steps(
    fetch: Callable[[], Batch], update: Callable[[Batch], None], steps: int, device: torch.device
) -> tuple[float, float, int]:
    """Seconds spent in fetch and in update over `steps` steps, synchronizing after each; images seen."""
    data_s = compute_s = 0.0
    images = 0
    for _ in range(steps):
        started = time.perf_counter()
        batch = fetch()
        synchronize(device)
        fetched = time.perf_counter()
        update(batch)
        synchronize(device)
        data_s += fetched - started
        compute_s += time.perf_counter() - fetched
        images += len(batch[1])
    return data_s, compute_s, images


def _throughput(
    fetch: Callable[[], Batch], update: Callable[[Batch], None], steps: int, device: torch.device
) -> tuple[float, int]:
    """Seconds for `steps` fetch+update steps with one synchronize at the end (GPU work overlaps)."""
    images = 0
    started = time.perf_counter()
    for _ in range(steps):
        batch = fetch()
        update(batch)
        images += len(batch[1])
    synchronize(device)
    return time.perf_counter() - started, images


def finish_timing(
    result: PathResult,
    *,
    fetch: Callable[[], Batch],
    update: Callable[[Batch], None],
    steps: int,
    warmup: int,
    device: torch.device,
    peak: DevicePeak,
    train_macs_per_image: int,
) -> None:
    started = time.perf_counter()
    for _ in range(warmup):
        update(fetch())
    synchronize(device)
    result.warmup_s = time.perf_counter() - started
    data_s, compute_s, images = _timed_steps(fetch, update, steps, device)
    if device.type == "cuda":
        loop_s, images = _throughput(fetch, update, steps, device)
    else:
        loop_s = data_s + compute_s
    result.steps = steps
    result.data_ms = 1000 * data_s / steps
    result.compute_ms = 1000 * compute_s / steps
    result.step_ms = 1000 * loop_s / steps
    result.images_per_s = images / loop_s
    result.achieved_tflops = 2 * train_macs_per_image * result.images_per_s / 1e12
    result.peak_tflops, result.peak_precision, result.peak_source = peak.tflops, peak.precision, peak.source
    if peak.tflops:
        result.peak_fraction = result.achieved_tflops / peak.tflops
    result.peak_memory_mb, result.memory_kind = _peak_memory(device)


def fast_update(config: RunConfig, setup: trainer.TrainingSetup) -> Callable[[Batch], None]:
    """The pipeline's update on a model-ready batch (forward, loss, backward, optimizer step)."""

    def update(batch: Batch) -> None:
        train_step(setup.trained, setup.optimizer, *batch, config.training.loss, mixed_precision=config.mixed_precision)

    return update


def measure_fast(config: RunConfig, prepared: Prepared, *, steps: int, warmup: int, peak: DevicePeak) -> PathResult:
    """The pipeline's path: cached decoded images on the device, batched augmentation there, the
    run's options (autocast, channels_last, compile), VGG16 features computed once where used."""
    device = torch.device(config.runtime.device)
    record = config.as_record()
    options = {k: record[k] for k in ("mixed_precision", "channels_last", "compile", "image_cache")}
    result = PathResult(config.variant, "fast", "measured", batch_size=config.training.batch_size, options=options)
    setup, result.setup_s = timed_setup(config, prepared, device)

    iterator = KerasIterator(len(setup.train), config.training.batch_size, shuffle=True, seed=[config.seed, 1])

    def fetch() -> Batch:
        x, y = setup.train.batch(next(iterator))
        return setup.inputs(x, train=True), y

    update = fast_update(config, setup)
    setup.trained.train()
    fixed = fetch()
    macs = fill_flops(result, setup.trained, fixed, config.training.loss)
    finish_timing(
        result,
        fetch=fetch,
        update=update,
        steps=steps,
        warmup=warmup,
        device=device,
        peak=peak,
        train_macs_per_image=macs,
    )
    started = time.perf_counter()
    for _ in range(steps):
        update(fixed)
    synchronize(device)
    result.pure_ms = 1000 * (time.perf_counter() - started) / steps
    return result


def measure_naive(
    config: RunConfig, prepared: Prepared, *, steps: int, warmup: int, peak: DevicePeak, workers: int
) -> PathResult:
    """A plain port: DataLoader decoding every JPEG, per-image CPU augmentation, fp32 NCHW model."""
    from cnnrepro.bench.naive import endless_batches, naive_dataset

    device = torch.device(config.runtime.device)
    options = {"workers": workers, "mixed_precision": False, "channels_last": False, "compile": False}
    result = PathResult(config.variant, "naive", "measured", batch_size=config.training.batch_size, options=options)
    trainer.configure_process(config)
    reset_memory(device)
    started = time.perf_counter()
    model = trainer.build_model(config, prepared).to(device)
    batches = endless_batches(naive_dataset(config), config.training.batch_size, workers, config.seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(config.training.optimizer, trainable, config.training.learning_rate)
    result.setup_s = time.perf_counter() - started

    def fetch() -> Batch:
        x, y = next(batches)
        return x.to(device), y.to(device)

    def update(batch: Batch) -> None:
        # A frozen VGG16 base runs forward on every batch here: no feature cache in a plain port.
        train_step(model, optimizer, *batch, config.training.loss)

    model.train()
    macs = fill_flops(result, model, fetch(), config.training.loss)
    finish_timing(
        result,
        fetch=fetch,
        update=update,
        steps=steps,
        warmup=warmup,
        device=device,
        peak=peak,
        train_macs_per_image=macs,
    )
    return result


def not_run(variant: str, reason: str) -> list[PathResult]:
    return [PathResult(variant, path, "not_run", reason=reason) for path in ("fast", "naive")]
