"""Machine-readable outputs: comparison.csv (the table) and comparison.json (table, ledger, environment, runs,
and the seeds that would decide what is undecided)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from cnnrepro.mappings import JsonObject
from cnnrepro.report.stats import SeedSummary
from cnnrepro.report.table import Row

# Accuracies stay fractions as in metrics.json; differences are percentage points, as the names say.
CSV_COLUMNS = [
    "variant",
    "framework",
    "dataset",
    "metric",
    "documented",
    "documented_text",
    "source",
    "printed",
    *(f"{split}_{stat}" for split in ("val", "test") for stat in ("n", "mean", "std", "ci_low", "ci_high")),
    "difference_pp",
    "tolerance_pp",
    "seed_sd_pp",
    "binomial_sd_pp",
    "evaluation_images",
    "evaluation_source",
    "verdict",
    "verdict_detail",
    "seeds_needed",
    "seeds_needed_basis",
    "seeds_needed_reason",
    "learned_n",
    "learned_mean",
    "seeds_collapsed",
    "collapsed_detail",
    "departures",
    "departures_change_measurement",
    "parity_versus",
    "parity_verdict",
    "parity_difference_pp",
    "parity_margin_pp",
    "parity_ci_low_pp",
    "parity_ci_high_pp",
    "parity_p_value",
    "seeds_expected",
    "seeds_completed",
    "seeds_missing",
    "seeds_not_run",
    "seeds_failed",
    "notes",
]


def _summary_fields(prefix: str, summary: SeedSummary) -> JsonObject:
    return {f"{prefix}_{k}": v for k, v in asdict(summary).items()}


def row_record(row: Row) -> JsonObject:
    """One table row as flat fields (lists kept as lists; the CSV joins them)."""
    parity, decision, need = row.parity, row.decision, row.seeds_needed
    collapsed = decision.collapsed if decision else ()
    return {
        "variant": row.variant,
        "framework": row.framework,
        "dataset": row.dataset,
        "metric": row.metric,
        "documented": row.documented,
        "documented_text": row.documented_text,
        "source": row.source,
        "printed": row.printed,
        **_summary_fields("val", row.val),
        **_summary_fields("test", row.test),
        "difference_pp": row.difference_pp,
        "tolerance_pp": decision.tolerance_pp if decision else None,
        "seed_sd_pp": decision.seed_sd_pp if decision else None,
        "binomial_sd_pp": decision.binomial_sd_pp if decision else None,
        "evaluation_images": row.evaluation.images,
        "evaluation_source": row.evaluation.source,
        "verdict": row.verdict,
        "verdict_detail": row.verdict_detail,
        # Empty when decided (or when no verdict was reached for want of runs); see seeds_needed_basis.
        "seeds_needed": need.seeds if need else None,
        "seeds_needed_basis": need.basis if need else None,
        "seeds_needed_reason": need.reason if need else None,
        "learned_n": decision.n if decision else None,
        "learned_mean": decision.mean if decision else None,
        "seeds_collapsed": [c.seed for c in collapsed],
        "collapsed_detail": [f"{c.text()}: {c.detail}" for c in collapsed],
        "departures": [d.words for d in row.departures],
        "departures_change_measurement": any(d.changes_measurement for d in row.departures) if row.departures else None,
        "parity_versus": parity.versus if parity else None,
        "parity_verdict": parity.verdict if parity else None,
        "parity_difference_pp": parity.difference_pp if parity else None,
        "parity_margin_pp": parity.margin_pp if parity else None,
        "parity_ci_low_pp": parity.ci_low_pp if parity else None,
        "parity_ci_high_pp": parity.ci_high_pp if parity else None,
        "parity_p_value": parity.p_value if parity else None,
        "seeds_expected": row.seeds_expected,
        "seeds_completed": row.seeds_completed,
        "seeds_missing": row.seeds_missing,
        "seeds_not_run": row.seeds_not_run,
        "seeds_failed": row.seeds_failed,
        "notes": row.notes,
    }


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(map(str, value)) if all(isinstance(v, int) for v in value) else "; ".join(map(str, value))
    return repr(value) if isinstance(value, float) else str(value)


def to_csv(rows: Sequence[Row]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(v) for k, v in row_record(row).items()})
    return buf.getvalue()
