"""`cnnrepro tracking init|start|end`: the MLflow store and the parent run of one pipeline invocation.

Typical use around a parallel pipeline (init before the jobs start, so they never race to create it):

    cnnrepro tracking init
    export CNNREPRO_PARENT_RUN_ID=$(cnnrepro tracking start)
    snakemake --cores 8 ... && status=FINISHED || status=FAILED
    cnnrepro tracking end --status $status

Only ids go to stdout; notes go to stderr, so `$(...)` captures the id alone.
"""

from __future__ import annotations

import argparse
import os
import sys

from cnnrepro.errors import CnnreproError
from cnnrepro.params import load_params
from cnnrepro.tracking.liveness import mark_stale_runs_failed
from cnnrepro.tracking.pipeline import END_STATUSES, end_pipeline_run, start_pipeline_run
from cnnrepro.tracking.store import ensure_experiment, tracking_settings
from cnnrepro.tracking.tracked_run import PARENT_RUN_ENV


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="action")
    init = actions.add_parser("init", help="create the store and experiment, mark stale runs failed; print its id")
    init.add_argument(
        "--older-than",
        type=float,
        default=None,
        metavar="SECONDS",
        help="also mark failed any RUNNING run started longer ago than this (any host)",
    )
    start = actions.add_parser("start", help="open the parent run of one pipeline invocation; print its id")
    start.add_argument("--name", default=None, help="run name (default: 'pipeline <date time>')")
    end = actions.add_parser("end", help="close a parent run")
    end.add_argument(
        "--run-id",
        default=os.environ.get(PARENT_RUN_ENV) or None,
        help=f"the run to close (default: ${PARENT_RUN_ENV})",
    )
    end.add_argument("--status", default="FINISHED", choices=END_STATUSES)
    # cli.py adds --params before the action; accept it after the action too (`tracking init --params p.yaml`).
    for action in (init, start, end):
        action.add_argument("--params", default=argparse.SUPPRESS, help="the pipeline's params file")


def _report_stale(run_ids: list[str]) -> None:
    for run_id in run_ids:
        print(f"cnnrepro tracking: marked stale run {run_id} FAILED", file=sys.stderr)


def main(args: argparse.Namespace) -> int:
    uri, experiment = tracking_settings(load_params(args.params))
    if args.action == "init":
        experiment_id = ensure_experiment(uri, experiment)
        _report_stale(mark_stale_runs_failed(uri, experiment, older_than_s=args.older_than))
        print(experiment_id)
    elif args.action == "start":
        print(start_pipeline_run(uri, experiment, name=args.name))
    else:
        if not args.run_id:
            raise CnnreproError(f"no run to end: pass --run-id or set {PARENT_RUN_ENV}")
        end_pipeline_run(uri, args.run_id, status=args.status)
        # Jobs of this pipeline killed outright (SIGKILL, OOM) are still RUNNING; close them now.
        _report_stale(mark_stale_runs_failed(uri, experiment))
    return 0
