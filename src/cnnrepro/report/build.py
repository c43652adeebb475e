"""`cnnrepro report`: the comparison of measured and documented figures, from the run outputs.

Writes <out>/comparison.{md,html,csv,json}, <out>/plots/, and for DVC <out>/summary.json and <out>/curves/.
Missing runs are reported, not fatal, and so is a missing cleaning summary (the report says it is absent); a corrupt
run output is fatal, with a one-line message naming the file.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from pathlib import Path

from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import atomic_dir, read_json, write_json_atomic, write_text_atomic
from cnnrepro.mappings import JsonObject, Params
from cnnrepro.params import load_params
from cnnrepro.report.collect import ReportSettings, RunSlot, collect_runs, load_clean_summary, unexpected_runs
from cnnrepro.report.data_notes import data_entries
from cnnrepro.report.document import build_document
from cnnrepro.report.dvc_outputs import write_dvc_outputs
from cnnrepro.report.effects import Effect, collect_effects
from cnnrepro.report.effects_section import CSV_NAME, effect_blocks, effect_records
from cnnrepro.report.effects_section import to_csv as effects_csv
from cnnrepro.report.export import row_record, to_csv
from cnnrepro.report.ledger import environment, fidelity_ledger, overrides_by_variant, run_index
from cnnrepro.report.plots import write_plots
from cnnrepro.report.render_html import render_html
from cnnrepro.report.render_md import render_markdown
from cnnrepro.report.seeds_needed import SeedsNeeded, seeds_needed_records
from cnnrepro.report.table import Row, build_table, verdict_counts
from cnnrepro.report.verdict import rule_text
from cnnrepro.variants.added_seeds import ADDED_SEEDS_FILE, check_in_grid, read_added_seeds

OUTPUT_NAMES = ("comparison.md", "comparison.html", "comparison.csv", "comparison.json", CSV_NAME)
DEFAULT_COMMAND = "cnnrepro report --runs runs --clean-summary data/clean/summary.json --out reports"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", default="runs", help="root of the run outputs, runs/<framework>/<variant>/seed<N>")
    parser.add_argument("--clean-summary", default="data/clean/summary.json", help="the clean stage's summary.json")
    parser.add_argument("--out", default="reports", help="report directory")
    parser.add_argument(
        "--added-seeds",
        default=str(ADDED_SEEDS_FILE),
        help="seeds added to single rows by `cnnrepro reproduce --decide` (default: %(default)s; absent: none)",
    )


def find_figures(out_dir: Path) -> dict[str, list[str]]:
    """PNGs under <out>/figures (written by `cnnrepro visualize`), grouped by subfolder, paths relative to out."""
    root = out_dir / "figures"
    groups: dict[str, list[str]] = {}
    for png in sorted(root.rglob("*.png")) if root.is_dir() else []:
        if png.name.startswith("."):  # a temporary file of an atomic write in progress
            continue
        relative = png.relative_to(out_dir).as_posix()
        group = png.parent.relative_to(root).as_posix()
        groups.setdefault("figures" if group == "." else group, []).append(relative)
    return groups


def read_figure_index(out_dir: Path) -> JsonObject | None:
    """<out>/figures/index.json (captions, and what `cnnrepro visualize` skipped and why), or None."""
    path = out_dir / "figures" / "index.json"
    if not path.is_file():
        return None
    index = read_json(path)
    if not isinstance(index, dict):
        raise CnnreproError(f"{path}: expected a JSON object")
    return index


def build_report(
    runs_root: str | Path,
    clean_summary_path: str | Path,
    out_dir: str | Path,
    settings: ReportSettings,
    command: str = DEFAULT_COMMAND,
) -> JsonObject:
    """Build every output; returns the JSON document that comparison.json holds. `command` is printed in
    the report as the way to regenerate it."""
    out_dir = Path(out_dir)
    # Read and check every input before writing anything, so a corrupt run leaves the old report in place.
    clean_summary = load_clean_summary(clean_summary_path)
    slots = collect_runs(runs_root, settings)
    rows = build_table(slots, settings)
    ledger = fidelity_ledger(slots) + data_entries(clean_summary_path, slots)
    overrides = overrides_by_variant(slots)
    env = environment(slots, clean_summary)
    runs = run_index(slots)
    unexpected = unexpected_runs(runs_root, settings)
    effects = collect_effects(runs_root, slots, settings.rule, settings.validation_per_class)

    # plots/ is replaced whole, so only when every file in it is one an earlier report wrote (a user's stays).
    with atomic_dir(out_dir / "plots", own_list="--out") as plots_dir:
        plots = write_plots(rows, slots, clean_summary, settings, plots_dir)
    figures = find_figures(out_dir)
    figure_index = read_figure_index(out_dir)
    doc = build_document(
        rows,
        runs,
        ledger,
        overrides,
        env,
        clean_summary,
        plots,
        figures,
        unexpected,
        settings,
        command,
        figure_index,
        clean_summary_path=str(clean_summary_path),
        effects=effect_blocks(effects),
    )

    result = {
        "settings": {
            "seeds": list(settings.seeds),
            "added_seeds": [a.record() for a in settings.added],
            "frameworks": list(settings.frameworks),
            "variants": list(settings.variants),
            "rule": vars(settings.rule),
            "validation_per_class": settings.validation_per_class,
        },
        "units": {"accuracy": "fraction", "difference_pp": "percentage points", "std": "fraction"},
        "rules": rule_text(settings.rule),
        "verdict_counts": verdict_counts(rows),
        "rows": [row_record(r) for r in rows],
        "runs": runs,
        "unexpected_runs": list(unexpected),
        "fidelity_ledger": [vars(e) for e in ledger],
        "overrides": overrides,
        "environment": env,
        "data_cleaning": clean_summary,
        "plots": [f"plots/{p.name}" for p in plots],
        "figures": figures,
        "figures_skipped": (figure_index or {}).get("skipped", []),
        "effects": effect_records(effects),
        # Every undecided row and effect with the seeds that would decide it (read back: read_seeds_needed).
        "seeds_needed": seeds_needed_records(undecided(rows, effects)),
    }
    write_text_atomic(out_dir / "comparison.md", render_markdown(doc))
    write_text_atomic(out_dir / "comparison.html", render_html(doc, out_dir))
    write_text_atomic(out_dir / "comparison.csv", to_csv(rows))
    write_json_atomic(out_dir / "comparison.json", result)
    write_text_atomic(out_dir / CSV_NAME, effects_csv(effects))
    # The headline and the curves as DVC's metrics and plots read them (dvc.yaml: report).
    write_dvc_outputs(rows, slots, out_dir)
    return result


def undecided(rows: Sequence[Row], effects: Sequence[Effect]) -> tuple[SeedsNeeded, ...]:
    """The undecided rows (inconclusive verdicts) and effects (intervals that span zero), in report order."""
    return tuple(r.seeds_needed for r in rows if r.seeds_needed) + tuple(
        e.seeds_needed for e in effects if e.seeds_needed
    )


def seeds_to_decide(
    runs_root: str | Path, settings: ReportSettings, slots: Sequence[RunSlot] | None = None
) -> tuple[SeedsNeeded, ...]:
    """For the pipeline (`cnnrepro reproduce --decide`): per undecided (framework, variant[, ablation]), the
    completed seeds in total that would decide it and why, from the report's own inputs (the same numbers
    comparison.json's "seeds_needed" holds; cnnrepro.report.seeds_needed.read_seeds_needed reads them back).
    A corrupt run output raises CnnreproError naming the file, as the report does. `slots`: the runs as
    collect_runs already loaded them (read here when not given)."""
    slots = collect_runs(runs_root, settings) if slots is None else slots
    rows = build_table(slots, settings)
    return undecided(rows, collect_effects(runs_root, slots, settings.rule, settings.validation_per_class))


def regenerate_command(args: argparse.Namespace) -> str:
    """The command line that rebuilds this report (--params only when it is not the default file)."""
    argv = ["cnnrepro", "report"]
    if str(args.params) != "params.yaml":
        argv += ["--params", str(args.params)]
    argv += ["--runs", str(args.runs), "--clean-summary", str(args.clean_summary), "--out", str(args.out)]
    if str(args.added_seeds) != str(ADDED_SEEDS_FILE):
        argv += ["--added-seeds", str(args.added_seeds)]
    return shlex.join(argv)


def log_to_parent_run(params: Params, out_dir: Path, result: Params) -> str | None:
    """Inside a pipeline (CNNREPRO_PARENT_RUN_ID set), the headline and the report files go to its parent
    run in MLflow; returns that run's id, None outside a pipeline."""
    from cnnrepro.tracking.report_run import log_report_headline
    from cnnrepro.tracking.store import tracking_settings
    from cnnrepro.tracking.tracked_run import parent_run_id_from_env

    parent = parent_run_id_from_env()
    if parent is None:
        return None
    uri, _ = tracking_settings(params)
    files = [out_dir / name for name in OUTPUT_NAMES] + [out_dir / "plots"]
    log_report_headline(uri, parent, result["rows"], files, result["settings"])
    return parent


def report_settings(params: Params, added_seeds: str | Path = ADDED_SEEDS_FILE) -> ReportSettings:
    """The report's settings: params.yaml's, with the seeds added to single rows (checked against the grid)."""
    settings = ReportSettings.from_params(params)
    added = read_added_seeds(added_seeds)
    check_in_grid(added, settings.frameworks, settings.variants, added_seeds)
    return ReportSettings.from_params(params, added)


def main(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    settings = report_settings(params, args.added_seeds)
    result = build_report(args.runs, args.clean_summary, args.out, settings, regenerate_command(args))
    counts = ", ".join(f"{n} {v}" for v, n in result["verdict_counts"].items())
    print(f"report: {len(result['rows'])} rows ({counts}) -> {Path(args.out) / 'comparison.html'}")
    if parent := log_to_parent_run(params, Path(args.out), result):
        print(f"report: headline and report files logged to MLflow parent run {parent}")
    return 0
