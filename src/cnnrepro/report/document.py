"""Assemble the report: what it found at a glance first, the details below.

The blocks it is made of (cnnrepro.report.blocks) are renderer-neutral, so Markdown and HTML show
exactly the same content; they are re-exported here for the section modules and renderers.
"""

from __future__ import annotations

from collections.abc import Sequence

from cnnrepro.mappings import JsonObject, Params
from cnnrepro.report.blocks import (
    DASH,
    Block,
    Bullets,
    Cell,
    Code,
    Document,
    Heading,
    Image,
    Paragraph,
    Table,
    cells,
    measured_cell,
    pct,
    pp,
)
from cnnrepro.report.collect import ReportSettings
from cnnrepro.report.details import cleaning_section, environment_section, figures_section, ledger_section
from cnnrepro.report.headline import detail_table, headline_table, not_completed_table, sources_table
from cnnrepro.report.ledger import LedgerEntry
from cnnrepro.report.plots import Plot
from cnnrepro.report.table import Row, verdict_counts
from cnnrepro.report.verdict import rule_text

__all__ = [
    "DASH",
    "Block",
    "Bullets",
    "Cell",
    "Code",
    "Document",
    "Heading",
    "Image",
    "Paragraph",
    "Table",
    "build_document",
    "cells",
    "measured_cell",
    "pct",
    "pp",
]

PLOT_GROUP_TITLES = {"overview": None, "curves": "Training curves", "confusion": "Confusion matrices", "data": None}


def _summary_line(rows: Sequence[Row], runs: Sequence[JsonObject], settings: ReportSettings) -> Paragraph:
    counts = verdict_counts(rows)
    frameworks = len(settings.frameworks)
    return Paragraph(
        f"{len(rows)} rows (variant x framework) from {len(runs)} expected runs "
        f"({frameworks} framework{'s' if frameworks != 1 else ''} x {len(settings.variants)} variants x seeds "
        f"{', '.join(map(str, settings.seeds))}{settings.added_text()}): "
        + ", ".join(f"**{n}** {v}" for v, n in counts.items())
        + "."
    )


def _plots(plots: Sequence[Plot]) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Plots")]
    current = None
    for plot in plots:
        if plot.group == "data":
            continue
        if plot.group != current:
            current = plot.group
            if title := PLOT_GROUP_TITLES.get(plot.group):
                blocks.append(Heading(3, title))
        blocks.append(Image(f"plots/{plot.name}", plot.title, plot.caption))
    return blocks


def build_document(
    rows: Sequence[Row],
    runs: Sequence[JsonObject],
    ledger: Sequence[LedgerEntry],
    overrides: Sequence[Params],
    env: JsonObject,
    clean_summary: JsonObject | None,
    plots: Sequence[Plot],
    figures: dict[str, list[str]],
    unexpected: Sequence[str],
    settings: ReportSettings,
    command: str,
    figure_index: JsonObject | None = None,
    clean_summary_path: str = "data/clean/summary.json",
    effects: Sequence[Block] = (),
) -> Document:
    """The report's blocks; `effects` is the ablation section (cnnrepro.report.effects_section.effect_blocks),
    placed after the details and before the plots."""
    doc = Document("Measured vs documented: do the published convnet figures hold?")
    blocks = doc.blocks
    blocks += [_summary_line(rows, runs, settings), Paragraph(f"Regenerate with `{command}`.")]
    blocks += [
        Heading(2, "At a glance"),
        headline_table(rows),
        Paragraph(
            "Accuracies in % on the split each source reports; measured = mean ± sd over the seeds that "
            "completed (over those that learned where some collapsed, counted beside the verdict). Documented figures "
            "come from `cnnrepro.variants.documented`, every other number from the run outputs."
        ),
        Heading(3, "Seeds that did not complete"),
        not_completed_table(rows),
        Heading(3, "How the verdict is decided"),
        Bullets(rule_text(settings.rule)),
    ]
    if unexpected:
        blocks += [
            Heading(3, "Runs on disk outside the params grid (not scored)"),
            Bullets([f"`{path}`" for path in unexpected]),
        ]
    blocks += [
        Heading(2, "Details"),
        detail_table(rows),
        Paragraph(f"Intervals: two-sided {settings.confidence:.0%} Student-t interval of the mean (2+ seeds)."),
        Heading(3, "How the sources word their figures"),
        sources_table(rows),
    ]
    blocks += effects
    blocks += _plots(plots)
    blocks.append(Heading(2, "Data cleaning (PetImages)"))
    blocks += [Image(f"plots/{p.name}", p.title, p.caption) for p in plots if p.group == "data"]
    blocks += cleaning_section(clean_summary, clean_summary_path)
    blocks += [
        Heading(2, "Fidelity ledger"),
        Paragraph("Every departure from the sources' settings and data, and why."),
        *ledger_section(ledger, overrides),
    ]
    blocks += [Heading(2, "Environment"), *environment_section(env, runs)]
    blocks += [Heading(2, "Figures"), *figures_section(figures, figure_index)]
    return doc
