"""`cnnrepro reproduce`: the whole pipeline under Snakemake, with a plan first and live progress.

1. The plan, one screen: the jobs still to do (Snakemake's dry run, per rule), the device (a clear
   warning on a CPU), and the estimated time (cnnrepro.orchestration.reproduce.plan).
2. Snakemake runs with its output in logs/reproduce/<time>.log; the terminal shows the jobs done and a
   progress bar per running training (cnnrepro.orchestration.reproduce.progress).
3. Ctrl-C: Snakemake stops its jobs (each training keeps its last epoch checkpoint, its MLflow run
   ends KILLED), and one short message says that the same command resumes.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from cnnrepro.mappings import Params
from cnnrepro.orchestration.decide import (
    DecideLimits,
    estimated_seconds,
    measured_durations,
    new_entries,
    plan_round,
    undecided_lines,
)
from cnnrepro.orchestration.reproduce import plan as planning
from cnnrepro.orchestration.reproduce.progress import format_duration, read_state
from cnnrepro.params import load_params
from cnnrepro.report.build import report_settings, seeds_to_decide
from cnnrepro.report.collect import collect_runs
from cnnrepro.variants.added_seeds import ADDED_SEEDS_FILE, write_added_seeds

REDRAW_S = 1.0
# --decide stops after this many rounds whatever is left (each round measures the spread anew, so a count
# can grow; the caps bound the seeds and time, this bounds the loop).
MAX_ROUNDS = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="job slots (default: this machine's)")
    parser.add_argument("--plan-only", action="store_true", help="print the plan and stop")
    parser.add_argument("--no-estimate", action="store_true", help="skip the timing of training steps")
    parser.add_argument(
        "--decide",
        action="store_true",
        help="then add seeds to the rows the report leaves undecided and run them, within params' decide caps "
        "(decide.auto: true does the same without the flag)",
    )
    parser.add_argument("snakemake_args", nargs="*", help="more Snakemake arguments (after --)")


def print_plan(params: Params, args: argparse.Namespace, dry: planning.DryRun) -> None:
    device = planning.detect_device(params, args.cores)
    width = max([len(rule) for rule in dry.jobs_per_rule] + [4])
    print(f"cnnrepro reproduce: the plan ({args.cores} cores; CORES=N to change)")
    print(f"  jobs to run: {dry.total}")
    for rule, count in dry.jobs_per_rule.items():
        print(f"    {rule:<{width}} {count}")
    if device.kind == "cuda":
        print(f"  device: {device.name} ({device.count} CUDA GPU{'s' if device.count > 1 else ''})")
    else:
        print("  device: CPU only - WARNING: no CUDA GPU found (or train.device: cpu); the trainings run on")
        print("          the CPU, which takes many times longer than on a GPU")
    if not dry.trainings or args.no_estimate:
        return
    slots = planning.parallel_trainings(device, args.cores)
    per_variant: dict[str, planning.RunEstimate] = {}
    print(
        f"  timing a few training steps of each of {len({job.variant for job in dry.trainings})} variants...",
        flush=True,
    )
    for variant in dict.fromkeys(job.variant for job in dry.trainings):
        per_variant[variant] = planning.estimate_run(params, variant, device, args.cores, Path.cwd())
    # Without the ImageNet VGG16 file here, those variants are recorded not run in seconds unless the
    # download (train.vgg16.url) works: their time is shown apart, not in the total.
    weights = planning.vgg16_weights_here(params)
    counted = [job for job in dry.trainings if weights or not per_variant[job.variant].needs_vgg16]
    apart = [job for job in dry.trainings if job not in counted]
    total = sum(per_variant[job.variant].seconds_per_run for job in counted)
    print(f"  estimated time: about {format_duration(total / slots)} for {len(counted)} trainings,")
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"    {slots} at a time: an ESTIMATE from steps timed just now ({args.cores} cores{load});")
    print("    data stages and model setup not counted")
    for variant, estimate in per_variant.items():
        runs = sum(1 for job in dry.trainings if job.variant == variant)
        mark = " *" if any(job.variant == variant for job in apart) else ""
        print(f"    {variant:<30} {runs} x {format_duration(estimate.seconds_per_run):>10}  ({estimate.how}){mark}")
    if apart:
        extra = sum(per_variant[job.variant].seconds_per_run for job in apart) / slots
        print("    * not in the total: the ImageNet VGG16 weights are not here (train.vgg16.path, ~/.keras/models);")
        print(
            f"      the run downloads them from train.vgg16.url if it can (then about {format_duration(extra)} more),"
        )
        print("      else records these variants as not run, with the reason")
    if any(job.framework != "torch" for job in dry.trainings):
        print("    (Keras runs are counted at the PyTorch step time)")


class Screen:
    """Redraws the status block in place on a terminal; elsewhere prints a line when it changes."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.shown: list[str] = []

    def show(self, lines: list[str]) -> None:
        if lines == self.shown:
            return
        if self.tty:
            if self.shown:
                sys.stdout.write(f"\x1b[{len(self.shown)}F\x1b[J")
            sys.stdout.write("\n".join(lines) + "\n")
        else:
            sys.stdout.write("\n".join(line for line in lines if line not in self.shown) + "\n")
        sys.stdout.flush()
        self.shown = lines


def _status(log_path: Path, jobs: int) -> list[str]:
    state = read_state(log_path, Path.cwd())
    if state.steps_total is None:  # Snakemake counts only when a job ends; until then, the plan's count
        state.steps_total = jobs
    return state.lines()


def run_pipeline(snakemake: list[str], log_path: Path, jobs: int) -> int:
    screen = Screen()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen(snakemake, stdout=log, stderr=subprocess.STDOUT)
        try:
            while process.poll() is None:
                screen.show(_status(log_path, jobs))
                time.sleep(REDRAW_S)
        except KeyboardInterrupt:
            # The terminal sent SIGINT to Snakemake too: it stops its jobs and runs its error hook.
            print("\nstopping: Snakemake is ending the running jobs (their checkpoints stay)...", flush=True)
            try:
                process.wait(timeout=120)
            except (KeyboardInterrupt, subprocess.TimeoutExpired):
                process.send_signal(signal.SIGTERM)
                process.wait()
            print("Interrupted. Run the same command again to resume: finished jobs are kept, and each")
            print(f"training continues after its last finished epoch. Snakemake's log: {log_path}")
            return 130
        screen.show(_status(log_path, jobs))
    return process.returncode


def main(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    snakemake = ["snakemake", *args.snakemake_args]
    if Path(args.params) != Path("params.yaml"):
        snakemake += ["--configfile", args.params]
    code = run_once(params, args, snakemake)
    if code != 0 or not (args.decide or DecideLimits.from_params(params).auto) or args.plan_only:
        return code
    return decide_rounds(params, args, snakemake)


def decide_rounds(params: Params, args: argparse.Namespace, snakemake: list[str]) -> int:
    """Rounds of --decide: read what the report leaves undecided, add seeds to those rows, run, again."""
    limits = DecideLimits.from_params(params)
    spent_s = 0.0
    for round_number in range(1, MAX_ROUNDS + 1):
        settings = report_settings(params, ADDED_SEEDS_FILE)
        slots = collect_runs("runs", settings)  # read once: the undecided rows and their durations
        needs = seeds_to_decide("runs", settings, slots)
        if not needs:
            print("decide: every row and effect is decided (reports/comparison.md).")
            return 0
        plans = plan_round(needs, settings, limits, measured_durations(slots), spent_s)
        additions = new_entries(plans)
        print(f"decide: round {round_number} (caps: {limits.max_seeds} seeds a row, {limits.max_hours:g} h):")
        print("\n".join(p.line() for p in plans) or "  no row is undecided (only effects)")
        if not additions:
            print("decide: nothing more to run; still undecided:")
            print("\n".join(undecided_lines(needs)))
            return 0
        estimate = estimated_seconds(plans)
        spent_s += estimate
        print(f"  estimated time of the added runs: about {format_duration(estimate)} (from their rows' runs)")
        write_added_seeds(ADDED_SEEDS_FILE, (*settings.added, *additions))
        print(f"  added to {ADDED_SEEDS_FILE}: {len(additions)} run{'s' if len(additions) != 1 else ''}", flush=True)
        code = run_once(params, args, snakemake)
        if code != 0:
            return code
    print(f"decide: stopped after {MAX_ROUNDS} rounds; the report says what is still undecided.")
    return 0


def run_once(params: Params, args: argparse.Namespace, snakemake: list[str]) -> int:
    """One pipeline run: the plan, then Snakemake with live progress."""
    dry = planning.dry_run(snakemake, args.cores)
    print_plan(params, args, dry)
    if args.plan_only:
        return 0
    if dry.total == 0:
        print("Nothing to do: every output is up to date (reports/comparison.md).")
        return 0
    log_path = Path("logs") / "reproduce" / f"{datetime.now():%Y%m%dT%H%M%S}.log"
    print(f"running: {' '.join(snakemake)} --cores {args.cores}  (Snakemake's output: {log_path})", flush=True)
    code = run_pipeline([*snakemake, "--cores", str(args.cores)], log_path, dry.total)
    if code == 0:
        print("done: reports/comparison.md (and .html, .csv, .json)")
    elif code != 130:
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        print(f"Snakemake failed (exit {code}); the end of its log ({log_path}):", file=sys.stderr)
        print("\n".join(tail), file=sys.stderr)
        print("Fix the cause and run the same command again: finished jobs are kept.", file=sys.stderr)
    return code
