"""`cnnrepro visualize`: every figure of params' `visualize` section (cnnrepro.visualize.stage).

Heavy imports wait until main(), so `cnnrepro --help` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runs", type=Path, default=Path("runs"), help="root of the runs, runs/<framework>/<variant>/seed<N>"
    )
    parser.add_argument("--data", type=Path, default=Path("data/split/book"), help="the book split (its test/ images)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("reports/figures"),
        help="figures directory (replaced whole if new, empty or its own)",
    )


def main(args: argparse.Namespace) -> int:
    from cnnrepro.params import load_params
    from cnnrepro.visualize.stage import run_stage

    index = run_stage(load_params(args.params), args.runs, args.data, args.out, source=str(args.params))
    made = ", ".join(f"{n} {kind}" for kind, n in index.counts().items())
    print(f"visualize: {made}; {len(index.skipped)} skipped; {index.duration_s:.1f} s -> {args.out / 'index.json'}")
    return 0
