"""The "what moves the figures" section as report blocks, and its rows for comparison.json and effects.csv.

The effects themselves (differences, intervals, collapsed seeds, seeds to decide) are cnnrepro.report.effects'.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from cnnrepro.mappings import JsonObject
from cnnrepro.report.blocks import Bullets, Cell, Heading, Paragraph, Table
from cnnrepro.report.collapse import Collapse, collapse_text
from cnnrepro.report.effects import Effect

CSV_NAME = "effects.csv"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def _pp(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:+.2f}"


def _interval(low: float | None, high: float | None) -> str:
    return "—" if low is None else f"[{_pp(low)}, {_pp(high)}]"


def _with_and_without(e: Effect, whole: str, learned: str) -> str:
    """The figure on every seed; where a seed collapsed, the figure without it too."""
    return f"{whole}; {learned} without collapsed" if e.collapsed else whole


def _side_cell(mean: float | None, n: int, collapsed: Sequence[Collapse]) -> str:
    return f"{_pct(mean)} (n={n}" + (f", {len(collapsed)} collapsed)" if collapsed else ")")


def effect_blocks(effects: Sequence[Effect]) -> list[Any]:
    """The section as report blocks (Markdown and HTML render the same ones)."""
    blocks: list[Any] = [
        Heading(2, "What moves the figures (ablations)"),
        Paragraph(
            "Effect = ablation mean − faithful mean of the variant's documented metric (percentage points), "
            "95% interval of the difference by Welch (needs 2 seeds on each side), n = completed seeds on each "
            "side; sorted by |effect|. Where a seed collapsed (did not learn: the verdict's collapse rule), the "
            "effect and interval are given with it and without it; where the interval without collapsed seeds "
            "spans zero, the last column says how many seeds a side would exclude zero at the measured spread. "
            "Ablations are declared in `params.yaml` (`ablations.definitions`)."
        ),
    ]
    if not effects:
        return [*blocks, Paragraph("No ablation runs found.")]
    rows = []
    for e in effects:
        rows.append(
            [
                Cell(e.variant),
                Cell(e.framework),
                Cell(e.ablation),
                Cell(", ".join(e.changes) or "(continues from its ablation's run)"),
                Cell(e.metric),
                Cell(_side_cell(e.faithful_mean, e.faithful_n, e.faithful_collapsed)),
                Cell(_side_cell(e.ablation_mean, e.ablation_n, e.ablation_collapsed)),
                Cell(_with_and_without(e, _pp(e.effect), _pp(e.learned_effect))),
                Cell(
                    _with_and_without(e, _interval(e.ci_low, e.ci_high), _interval(e.learned_ci_low, e.learned_ci_high))
                ),
                Cell(e.seeds_needed.short() if e.seeds_needed else "—"),
            ]
        )
    headers = [
        "variant",
        "framework",
        "ablation",
        "changes",
        "metric",
        "faithful %",
        "ablation %",
        "effect pp",
        "95% CI pp",
        "seeds to decide",
    ]
    blocks.append(Table(headers, rows))
    collapsed = [
        f"{e.framework}/{e.variant}/{e.ablation}, {side}: {collapse_text(found, n)}; "
        + "; ".join(f"seed {c.seed}: {c.detail}" for c in found)
        for e in effects
        for side, found, n in (
            ("faithful", e.faithful_collapsed, e.faithful_n),
            ("ablation", e.ablation_collapsed, e.ablation_n),
        )
        if found
    ]
    if collapsed:
        blocks.append(Paragraph('Collapsed seeds, left out of the figures marked "without collapsed":'))
        blocks.append(Bullets(collapsed))
    described = {e.ablation: e.description for e in effects if e.description}
    blocks.append(Bullets([f"`{name}`: {text}" for name, text in sorted(described.items())]))
    not_run = [e for e in effects if e.not_run]
    if not_run:
        blocks.append(Paragraph("Ablation runs without a figure, and why:"))
        blocks.append(
            Bullets([f"{e.framework}/{e.variant}/{e.ablation} ({e.not_run}): {'; '.join(e.reasons)}" for e in not_run])
        )
    return blocks


PP_KEYS = ("effect", "ci_low", "ci_high", "learned_effect", "learned_ci_low", "learned_ci_high")


def effect_records(effects: Sequence[Effect]) -> list[JsonObject]:
    """Flat JSON rows: fractions as in metrics.json, the effects and intervals also in percentage points,
    collapsed seeds as text, and the seeds that would decide (comparison.json's "seeds_needed" has them whole)."""
    records = []
    for e in effects:
        record = asdict(e) | {"reasons": list(e.reasons), "changes": list(e.changes)}
        for side in ("faithful", "ablation"):
            record[f"{side}_collapsed"] = [f"{c.text()}: {c.detail}" for c in getattr(e, f"{side}_collapsed")]
        need = record.pop("seeds_needed")
        record |= {
            "seeds_needed": need["seeds"] if need else None,
            "faithful_seeds_needed": need["faithful_seeds"] if need else None,
            "seeds_needed_basis": need["basis"] if need else None,
            "seeds_needed_reason": need["reason"] if need else None,
        }
        for key in PP_KEYS:
            record[f"{key}_pp"] = None if record[key] is None else 100 * record[key]
        records.append(record)
    return records


CSV_COLUMNS = [
    *(f for f in Effect.__dataclass_fields__ if f != "seeds_needed"),
    "seeds_needed",
    "faithful_seeds_needed",
    "seeds_needed_basis",
    "seeds_needed_reason",
    *(f"{key}_pp" for key in PP_KEYS),
]


def to_csv(effects: Sequence[Effect]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in effect_records(effects):
        writer.writerow({k: "" if v is None else "; ".join(v) if isinstance(v, list) else v for k, v in record.items()})
    return buf.getvalue()
