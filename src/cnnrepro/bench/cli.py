"""`cnnrepro bench`: training speed of the pipeline's path against a naive one and the device's peak.

    cnnrepro bench --variants baseline,mnist_convnet --steps 20      # per-step table, fast vs naive
    cnnrepro bench --device cpu --no-naive --no-fit                  # on a CPU: + PyTorch vs Keras (versus.py)
    cnnrepro bench --reproduction --epochs-scale 0.01                # every variant end to end, timed

Nothing here is asserted: the figures are printed (or written as JSON) for a person to judge.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import sys
from dataclasses import replace
from pathlib import Path

import torch

from cnnrepro.bench.measure import PathResult, measure_fast, measure_naive, not_run
from cnnrepro.bench.peaks import device_peak
from cnnrepro.bench.pipeline import pipeline_params, pipeline_table, run_pipeline_bench
from cnnrepro.bench.reproduction import pipeline_variants, run_reproduction
from cnnrepro.bench.steady import fit_step_ms, measure_graph
from cnnrepro.bench.table import reproduction_table, speedups, step_table, versus_table
from cnnrepro.bench.versus import VersusKeras, versus_keras
from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import write_json_atomic
from cnnrepro.mappings import JsonObject, Params
from cnnrepro.params import load_params
from cnnrepro.train.backends.torch import trainer
from cnnrepro.train.backends.torch.precision import PRECISIONS, set_torch_precision
from cnnrepro.train.configure import configure_run
from cnnrepro.train.engine.lifecycle import NotRunnable
from cnnrepro.train.engine.run_config import RunConfig
from cnnrepro.variants.registry import DATASET_DIRS, get_variant

# Where each dataset's prepared data lies under --data-root (the pipeline's own layout).
DATA_SUBDIRS = DATASET_DIRS  # the registry's: each dataset's folder under the data root


LEGEND = (
    "data = batch fetch + augment + scale; compute = forward, loss, backward, optimizer step; "
    "pure = the same update on one ready batch;\n"
    "graph = the fast step (train.fast_step: whole step as CUDA graph replays, CUDA only); fit ms = a steady "
    "fit() epoch (the same steps + one validation batch) per step, the loop's own time: a step ms far from it "
    "is a mismeasurement;\n"
    "vs pure = step time over pure (the input path's cost; CPU target <= 15%); GFLOP/img train = from the "
    "layers, counted = torch FlopCounterMode; TFLOP/s = train FLOPs x img/s"
)

KERAS_WORDS = (
    "PyTorch vs Keras (CPU): one update on the same ready batch, same model, optimizer and loss, same process, "
    "{steps} alternating rounds; medians (fastest rounds beside them); pytorch/keras below 1: PyTorch faster"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variants", help="comma-separated variants (default: the ones params.yaml trains)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per path, after the warm-up")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (cuDNN autotune, compile)")
    parser.add_argument("--batch-size", type=int, help="instead of each variant's documented batch size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=Path("data"), help="holds split/book, prepared, ...")
    parser.add_argument("--device", help="instead of params train.device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--mixed-precision", action="store_true", help="bf16 autocast on (CUDA only)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="params train.precision for this bench: fp32 (TF32 off, what the K80 did), tf32 (TF32 on), "
        "bf16 (bf16 autocast, TF32 off); default: as params set it",
    )
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory layout on")
    parser.add_argument("--compile", action="store_true", help="torch.compile the trained module")
    parser.add_argument("--naive-workers", type=int, default=2, help="DataLoader workers of the naive path")
    parser.add_argument(
        "--cpu-peak-seconds", type=float, default=1.0, help="length of each CPU matmul-rate measurement"
    )
    parser.add_argument("--no-naive", action="store_true", help="time the fast path only")
    parser.add_argument("--no-fit", action="store_true", help="skip the fit() epoch cross-check (fit ms)")
    parser.add_argument(
        "--no-keras", action="store_true", help="skip the Keras column (CPU: the same update in Keras, interleaved)"
    )
    parser.add_argument("--reproduction", action="store_true", help="train every variant end to end, timed")
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="with --reproduction/--pipeline: epochs x this")
    parser.add_argument(
        "--pipeline",
        action="store_true",
        help="every training of params.yaml under `snakemake --cores N` in a scratch copy, timed (make bench-gpu)",
    )
    parser.add_argument("--cores", type=int, default=8, help="with --pipeline: snakemake --cores")
    parser.add_argument("--seeds", help="with --pipeline: comma-separated seeds instead of params train.seeds")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--out", type=Path, help="also write the JSON here")


def bench_params(params: Params, args: argparse.Namespace, variants: list[str]) -> Params:
    """params.yaml with the command line's options applied (a copy)."""
    local = copy.deepcopy(params)
    train = local["train"]
    if args.device:
        train["device"] = args.device
    if args.mixed_precision:
        train["precision"] = "bf16"  # train.precision replaced train.mixed_precision
    for flag in ("channels_last", "compile"):
        if getattr(args, flag):
            train[flag] = True
    if getattr(args, "precision", None):
        train["precision"] = args.precision  # the trainings apply it (training.precision.set_torch_precision)
    if args.batch_size:
        overrides = train["overrides"] = dict(train.get("overrides") or {})
        for name in variants:
            overrides[name] = dict(overrides.get(name) or {}) | {"batch_size": args.batch_size}
    return local


def data_dirs(root: Path) -> dict[str, Path]:
    return {dataset: root / sub for dataset, sub in DATA_SUBDIRS.items()}


def variant_config(params: Params, variant: str, seed: int, data_root: Path) -> RunConfig:
    """The run config `cnnrepro train` would resolve; fine_tuning starts from the ImageNet base
    directly (the speed of its steps does not depend on the head it continues from)."""
    spec = get_variant(variant)
    placeholder = Path("-") if spec.continues_from else None
    config = configure_run(
        params,
        framework="torch",
        variant=variant,
        seed=seed,
        data_dir=data_dirs(data_root)[spec.dataset],
        out_dir="-",
        init_from=placeholder,
        backend=trainer.BACKEND,
    )
    return replace(config, init_from=None)


def bench_variant(config: RunConfig, args: argparse.Namespace) -> list[PathResult]:
    """Fast then naive rows of one variant; not_run rows with the reason when it cannot run here."""
    # The runner's progress lines (weights, feature extraction) go to stderr: stdout is for the table or JSON.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            prepared = trainer.prepare(config, download_timeout_s=10.0)
        except NotRunnable as exc:
            return not_run(config.variant, str(exc))
        device = torch.device(config.runtime.device)
        rows = []
        try:
            # Measured right before each path: on a shared CPU the reachable rate moves with the load.
            peak = device_peak(device, config.mixed_precision, cpu_seconds=args.cpu_peak_seconds)
            rows.append(measure_fast(config, prepared, steps=args.steps, warmup=args.warmup, peak=peak))
            if not args.no_fit:
                rows[-1].fit_step_ms = fit_step_ms(config, prepared, steps=args.steps, fast_step=False)
            graph = measure_graph(config, prepared, steps=args.steps, warmup=args.warmup, peak=peak)
            if graph.status == "measured" and not args.no_fit:
                graph.fit_step_ms = fit_step_ms(config, prepared, steps=args.steps, fast_step=True)
            rows.append(graph)
            if not args.no_naive:
                peak = device_peak(device, False, cpu_seconds=args.cpu_peak_seconds)
                workers = args.naive_workers
                rows.append(
                    measure_naive(config, prepared, steps=args.steps, warmup=args.warmup, peak=peak, workers=workers)
                )
        except CnnreproError as exc:  # e.g. this variant's data is not prepared
            return not_run(config.variant, str(exc))
        return rows


def environment() -> JsonObject:
    info: JsonObject = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    return info


def _check(args: argparse.Namespace) -> None:
    if args.steps < 1 or args.warmup < 0:
        raise CnnreproError(f"--steps {args.steps} / --warmup {args.warmup}: need steps >= 1 and warmup >= 0")
    if args.batch_size is not None and args.batch_size < 1:
        raise CnnreproError(f"--batch-size {args.batch_size}: must be >= 1")
    if not args.epochs_scale > 0:
        raise CnnreproError(f"--epochs-scale {args.epochs_scale}: must be > 0")
    if args.cores < 1:
        raise CnnreproError(f"--cores {args.cores}: must be >= 1")
    if args.seeds and not all(s.strip().isdigit() for s in args.seeds.split(",")):
        raise CnnreproError(f"--seeds {args.seeds!r}: comma-separated non-negative integers")
    if args.naive_workers < 0:
        raise CnnreproError(f"--naive-workers {args.naive_workers}: must be >= 0")
    if not args.cpu_peak_seconds > 0:
        raise CnnreproError(f"--cpu-peak-seconds {args.cpu_peak_seconds}: must be > 0")


def main(args: argparse.Namespace) -> int:
    _check(args)
    params = load_params(args.params)
    names = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else pipeline_variants(params)
    for name in names:
        get_variant(name)  # unknown names fail before anything runs
    params = bench_params(params, args, names)
    set_torch_precision(params["train"].get("precision", "fp32"))  # also for what the bench times in-process
    env = environment()
    if args.pipeline:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
        local = pipeline_params(params, names, seeds, args.epochs_scale)
        bench = run_pipeline_bench(Path(args.params).resolve().parent, local, cores=args.cores)
        report = {"kind": "pipeline", "environment": env, "epochs_scale": args.epochs_scale, **bench.as_dict()}
        text = pipeline_table(bench)
    elif args.reproduction:
        times = run_reproduction(
            params, data_dirs(args.data_root), seed=args.seed, epochs_scale=args.epochs_scale, variants=names
        )
        report = {
            "kind": "reproduction",
            "environment": env,
            "epochs_scale": args.epochs_scale,
            "total_wall_s": sum(t.wall_s for t in times),
            "variants": [t.as_dict() for t in times],
        }
        text = reproduction_table(times)
    else:
        results: list[PathResult] = []
        versus: list[VersusKeras] = []
        for name in names:
            config = variant_config(params, name, args.seed, args.data_root)
            results += bench_variant(config, args)
            if not args.no_keras:
                versus.append(versus_keras(config, rounds=args.steps, warmup=args.warmup))
        report = {
            "kind": "steps",
            "environment": env,
            "steps": args.steps,
            "warmup": args.warmup,
            "results": [r.as_dict() for r in results],
            "fast_over_naive": speedups(results),
            "graph_over_naive": speedups(results, "graph"),
            "precision": args.precision,
            "versus_keras": [v.as_dict() for v in versus],
        }
        text = step_table(results) + "\n" + LEGEND
        if versus:
            text += f"\n\n{KERAS_WORDS.format(steps=args.steps)}\n{versus_table(versus)}"
        ratios = ", ".join(f"{v} x{r:.2f}" for v, r in report["fast_over_naive"].items())
        if ratios:
            text += f"\nfast/naive images/s: {ratios}"
        graph_ratios = ", ".join(f"{v} x{r:.2f}" for v, r in report["graph_over_naive"].items())
        if graph_ratios:
            text += f"\ngraph/naive images/s: {graph_ratios} (target on augmentation: >= x3)"
    if args.out:
        write_json_atomic(args.out, report)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        load = env["load_average"]
        where = f"device {_device_words(params)}, torch {env['torch']}, {env['threads']} threads"
        print(f"cnnrepro bench: {where}; load average at start {load[0]:.2f}" if load else f"cnnrepro bench: {where}")
        if not (args.reproduction or args.pipeline):
            print(f"{args.steps} timed steps per path after {args.warmup} warm-up; naive path: {_naive_words(args)}")
            print(_peak_words(results))
        print(text)
    sys.stdout.flush()
    return 0


def _device_words(params: Params) -> str:
    name = params["train"]["device"]
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return f"{name} ({torch.cuda.get_device_name()})" if name.startswith("cuda") else name


def _naive_words(args: argparse.Namespace) -> str:
    if args.no_naive:
        return "not run (--no-naive)"
    return f"DataLoader, {args.naive_workers} workers, JPEG decode per draw, per-image CPU augmentation, fp32 NCHW"


def _peak_words(results: list[PathResult]) -> str:
    sources = sorted({f"{r.peak_precision}: {r.peak_source}" for r in results if r.peak_source})
    return "peak: " + ("; ".join(sources) if sources else "-")
