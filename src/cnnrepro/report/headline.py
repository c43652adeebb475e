"""The comparison as the reader meets it: a headline table that fits one screen, the runs that did not
complete summarised per variant, then the full statistics and the sources' wording."""

from __future__ import annotations

from collections.abc import Sequence

from cnnrepro.report.blocks import DASH, Cell, Paragraph, Table, cells, measured_cell, pct, pp, text
from cnnrepro.report.table import METRIC_LABEL, NOT_COMPARABLE, Row

SHORT_SPLIT = {"val_accuracy": "val", "test_accuracy": "test"}


def verdict_css(verdict: str) -> str:
    return "verdict-" + verdict.replace(" ", "-")


def seeds_text(row: Row) -> str:
    """'2 of 3 seeds' where some expected seed did not complete; empty when all did."""
    if not row.seeds_partial or not row.seeds_completed:
        return ""
    return f"{len(row.seeds_completed)} of {len(row.seeds_expected)} seeds"


def mean_sd_n(row: Row) -> str:
    """`mean ± sd (n)` in % on the split the source reports; the mean alone (n=1); a dash for none.

    Where seeds collapsed, the figures are those of the n seeds that learned (what the verdict used);
    the verdict cell counts the collapsed ones."""
    decision = row.decision
    if decision is not None and decision.collapsed and decision.mean is not None:
        sd = f" ± {decision.seed_sd_pp:.2f}" if decision.seed_sd_pp is not None else ""
        return f"{pct(decision.mean)}{sd} (n={decision.n})"
    summary = row.summary(row.metric)
    if summary.mean is None:
        return DASH
    sd = f" ± {summary.std * 100:.2f}" if summary.std is not None else ""
    return f"{pct(summary.mean)}{sd} (n={summary.n})"


def why_text(row: Row) -> str:
    """The verdict's reason, then, where it is undecided, the seeds that would decide it."""
    need = row.seeds_needed
    return text(row.verdict_detail) + (f" → {need.short()}" if need else "")


HEADLINE_HEADERS = ["Variant", "Framework", "Documented %", "Measured % (mean ± sd, n)", "Verdict", "Why"]


def headline_table(rows: Sequence[Row]) -> Table:
    """One line per (variant, framework); partial seeds, collapsed seeds and a departure from the documented
    settings ("departs") stand in the verdict cell, their details lead the reason, not in a far column."""
    body = []
    for r in rows:
        documented = f"{pct(r.documented)} ({SHORT_SPLIT[r.metric]})" if r.documented is not None else DASH
        partial = seeds_text(r)
        # "departs" where the verdict stands; "not comparable" says it already.
        departs = "departs" if r.departures and r.verdict != NOT_COMPARABLE else ""
        collapsed = f"{len(r.decision.collapsed)} collapsed" if r.decision and r.decision.collapsed else ""
        marks = [m for m in (partial, collapsed, departs) if m]
        verdict = f"**{r.verdict}**" + "".join(f" · {m}" for m in marks)
        body.append(
            [
                Cell(f"`{r.variant}`", "nowrap"),
                Cell(r.framework),
                Cell(documented, "num"),
                Cell(mean_sd_n(r), "num"),
                Cell(verdict, f"verdict {verdict_css(r.verdict)}"),
                Cell(why_text(r), "why"),
            ]
        )
    return Table(HEADLINE_HEADERS, body, css="headline")


def not_completed_table(rows: Sequence[Row]) -> Table | Paragraph:
    """Missing, not-run and failed seeds, one line per (variant, framework), each reason written once."""
    body = [
        cells([f"`{r.variant}`", r.framework, f"{len(r.seeds_completed)} of {len(r.seeds_expected)}", "; ".join(gaps)])
        for r in rows
        if (gaps := r.gaps)
    ]
    if not body:
        return Paragraph("Every expected run completed.")
    return Table(["Variant", "Framework", "Completed", "The other seeds"], body, css="gaps")


def _parity_text(row: Row) -> str:
    if row.reference:
        return "reference"
    if row.parity is None:
        return DASH
    return f"**{row.parity.verdict}** vs {row.parity.versus}: {row.parity.reason}"


def _measured_n(row: Row, metric: str) -> str:
    summary = row.summary(metric)
    return DASH if summary.mean is None else f"{measured_cell(summary)} (n={summary.n})"


DETAIL_HEADERS = [
    "Variant",
    "Framework",
    "Split",
    "Documented %",
    "Printed % (last epoch)",
    "Validation % mean ± sd [CI] (n)",
    "Test % mean ± sd [CI] (n)",
    "Difference (pp)",
    "Tolerance (pp)",
    "Evaluation set",
    "Parity",
]


def detail_table(rows: Sequence[Row]) -> Table:
    """Every number behind the headline: both splits with intervals, the rule's tolerance, its N, parity."""
    body = []
    for r in rows:
        tolerance = r.decision.tolerance_pp if r.decision and r.decision.tolerance_pp is not None else None
        body.append(
            [
                Cell(f"`{r.variant}`", "nowrap"),
                Cell(r.framework),
                Cell(METRIC_LABEL[r.metric]),
                Cell(pct(r.documented), "num"),
                Cell(pct(r.printed), "num"),
                Cell(_measured_n(r, "val_accuracy")),
                Cell(_measured_n(r, "test_accuracy")),
                Cell(pp(r.difference_pp), "num"),
                Cell(DASH if tolerance is None else f"±{tolerance:.2f}", "num"),
                Cell(r.evaluation.source if r.seeds_completed else DASH),
                Cell(_parity_text(r)),
            ]
        )
    return Table(DETAIL_HEADERS, body, css="details")


def sources_table(rows: Sequence[Row]) -> Table:
    """How each source words its figure, once per variant."""
    seen: dict[str, Row] = {}
    for r in rows:
        seen.setdefault(r.variant, r)
    body = [cells([f"`{v}`", r.documented_text, r.source]) for v, r in seen.items()]
    return Table(["Variant", "Source wording", "Source"], body)
