"""The report as a renderer-neutral list of blocks, so Markdown and HTML show exactly the same content.

Text may carry two inline marks, **bold** and `code`; both renderers understand them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cnnrepro.report.collect import ReportSettings
from cnnrepro.report.ledger import LedgerEntry
from cnnrepro.report.plots import Plot, files
from cnnrepro.report.stats import SeedSummary
from cnnrepro.report.table import METRIC_LABEL, Row, rule_text, verdict_counts

DASH = "—"


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Cell:
    text: str
    css: str = ""  # a class for the HTML renderer (verdict colours); Markdown ignores it


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[Cell]]
    css: str = ""


@dataclass(frozen=True)
class Image:
    path: str  # relative to the report directory, with forward slashes
    title: str
    caption: str = ""


@dataclass(frozen=True)
class Code:
    text: str


Block = Heading | Paragraph | Bullets | Table | Image | Code


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)


# Numbers: accuracies in percent, differences in percentage points, both to 2 decimals (MNIST needs them).
def pct(value: float | None) -> str:
    return DASH if value is None else f"{value * 100:.2f}"


def pp(value: float | None) -> str:
    return DASH if value is None else f"{value:+.2f}"


def measured_cell(summary: SeedSummary) -> str:
    """`mean ± sd [low, high]` in %, `mean` alone for one seed, a dash for none."""
    if summary.mean is None:
        return DASH
    if not summary.has_interval:
        return pct(summary.mean)
    return f"{pct(summary.mean)} ± {summary.std * 100:.2f} [{pct(summary.ci_low)}, {pct(summary.ci_high)}]"  # type: ignore[operator]


def _text(value: Any) -> str:
    return DASH if value is None or value == "" else str(value)


def _cells(values: Sequence[Any]) -> list[Cell]:
    return [v if isinstance(v, Cell) else Cell(_text(v)) for v in values]


def _verdict_css(verdict: str) -> str:
    return "verdict-" + verdict.replace(" ", "-")


# The verdict and its difference come first, so they stay in view when the table scrolls sideways.
TABLE_HEADERS = [
    "Variant",
    "Framework",
    "Verdict",
    "Difference (pp)",
    "Split",
    "Documented %",
    "Printed %",
    "Validation acc. % (mean ± sd [CI])",
    "n val",
    "Test acc. % (mean ± sd [CI])",
    "n test",
    "Parity",
    "Seeds / notes",
    "Source wording",
    "Source",
]


def comparison_table(rows: Sequence[Row]) -> Table:
    body = []
    for r in rows:
        verdict = f"**{r.verdict}**" + (f": {r.verdict_detail}" if r.verdict_detail else "")
        parity = "reference" if r.reference else (r.parity.text if r.parity else None)
        seeds = f"{len(r.seeds_completed)}/{len(r.seeds_expected)} completed"
        body.append(
            [
                Cell(f"`{r.variant}`", "nowrap"),
                Cell(r.framework),
                Cell(verdict, f"wide {_verdict_css(r.verdict)}"),
                Cell(pp(r.difference_pp), "num"),
                Cell(METRIC_LABEL[r.metric]),
                Cell(pct(r.documented), "num"),
                Cell(pct(r.printed), "num"),
                Cell(measured_cell(r.val), "nowrap"),
                Cell(str(r.val.n), "num"),
                Cell(measured_cell(r.test), "nowrap"),
                Cell(str(r.test.n), "num"),
                Cell(_text(parity), "medium"),
                Cell("; ".join([seeds, *r.notes]), "medium"),
                Cell(_text(r.documented_text), "medium"),
                Cell(_text(r.source), "medium"),
            ]
        )
    return Table(TABLE_HEADERS, body, css="comparison")


def _not_completed(runs: Sequence[dict[str, Any]]) -> list[Block]:
    rows = [
        _cells([f"`{r['variant']}`", r["framework"], r["seed"], Cell(f"**{r['status']}**"), r["reason"]])
        for r in runs
        if r["status"] != "completed"
    ]
    if not rows:
        return [Paragraph("Every expected run completed.")]
    return [Table(["Variant", "Framework", "Seed", "Status", "Reason"], rows)]


def _cleaning(summary: dict[str, Any]) -> list[Block]:
    jfif = summary["jfif_filter"]
    overview = Table(
        ["Archive", "sha256", "Members", "Kept", "Converted", "Dropped"],
        [
            _cells(
                [
                    f"`{summary.get('archive')}`",
                    f"`{summary.get('archive_sha256')}`",
                    summary.get("total_members"),
                    summary["kept"],
                    summary.get("converted"),
                    summary["dropped"],
                ]
            )
        ],
    )
    per_class = Table(
        ["Class", "Kept", "Dropped"],
        [_cells([c, v["kept"], v["dropped"]]) for c, v in summary["per_class"].items()],
    )
    filters = Table(
        ["Filter", "Kept", "Dropped", "Note"],
        [
            _cells(["decode check (this pipeline)", summary["kept"], summary["dropped"], "decodes every file"]),
            _cells(
                [
                    "`b'JFIF'` header filter (Keras example)",
                    jfif["would_keep"],
                    jfif["would_drop"],
                    f"drops {files(jfif['decodable_but_dropped'], 'decodable')}; "
                    f"keeps {files(jfif['undecodable_but_kept'], 'undecodable')}",
                ]
            ),
        ],
    )
    blocks: list[Block] = [overview, per_class, filters]
    for key, title in [("by_reason", "Reason"), ("by_format", "Format"), ("by_mode", "Mode")]:
        counts = summary.get(key) or {}
        if counts:
            blocks.append(Table([title, "Files"], [_cells([f"`{k}`", v]) for k, v in counts.items()]))
    return blocks


def _ledger(entries: Sequence[LedgerEntry], overrides: Sequence[dict[str, Any]]) -> list[Block]:
    blocks: list[Block] = []
    if entries:
        blocks.append(
            Table(
                ["Id", "Source setting", "Source", "This port", "Why", "Variants", "Frameworks"],
                [
                    _cells(
                        [
                            f"`{e.id}`",
                            e.setting,
                            e.source,
                            e.port,
                            e.reason,
                            ", ".join(e.variants),
                            ", ".join(e.frameworks),
                        ]
                    )
                    for e in entries
                ],
            )
        )
    else:
        blocks.append(Paragraph("No run recorded a departure from the sources' settings (or no run has outputs)."))
    blocks.append(Heading(3, "Params overrides per variant"))
    if overrides:
        rows = [
            _cells(
                [
                    f"`{o['variant']}`",
                    o["framework"],
                    ", ".join(f"`{k}`={v}" for k, v in o["overrides"].items()),
                    ", ".join(map(str, o["seeds"])),
                ]
            )
            for o in overrides
        ]
        blocks.append(Table(["Variant", "Framework", "Overrides", "Seeds"], rows))
    else:
        blocks.append(Paragraph("None: every run used the documented epochs, steps and batch sizes."))
    return blocks


def _tally_text(tally: Sequence[dict[str, Any]], total: int) -> str:
    if not tally:
        return DASH
    if len(tally) == 1 and len(tally[0]["runs"]) == total:
        return f"`{tally[0]['value']}` (all runs)"
    return "; ".join(f"`{t['value']}` ({len(t['runs'])} run{'s' if len(t['runs']) != 1 else ''})" for t in tally)


def _environment(env: dict[str, Any], runs: Sequence[dict[str, Any]]) -> list[Block]:
    with_outputs = sum(1 for r in runs if r["status"] != "missing")
    archive = env["petimages_archive"]
    facts = Table(
        ["What", "Value"],
        [
            _cells(["Device", _tally_text(env["devices"], with_outputs)]),
            _cells(["Git commit", _tally_text(env["git_commits"], with_outputs)]),
            _cells(["Data manifest sha256", _tally_text(env["data_manifest_sha256"], with_outputs)]),
            _cells(["PetImages archive", f"`{archive['archive']}` sha256 `{archive['archive_sha256']}`"]),
            _cells(["MLflow tracking URI", ", ".join(f"`{u}`" for u in env["tracking_uris"]) or None]),
        ],
    )
    blocks: list[Block] = [facts]
    if env["packages"]:
        blocks.append(
            Table(
                ["Package", "Version"],
                [_cells([f"`{name}`", _tally_text(t, with_outputs)]) for name, t in env["packages"].items()],
            )
        )
    blocks.append(Heading(3, "MLflow run ids of every number shown"))
    if env["mlflow_ui"]:
        blocks.append(Paragraph("Open the runs in the MLflow UI on the same store (from the project root):"))
        blocks.append(Code("\n".join(env["mlflow_ui"])))
    rows = [
        _cells(
            [
                f"`{r['variant']}`",
                r["framework"],
                r["seed"],
                r["status"],
                pct(r["val_accuracy"]) if r["val_accuracy"] is not None else None,
                pct(r["test_accuracy"]) if r["test_accuracy"] is not None else None,
                r["epochs_run"],
                f"{r['train_duration_s']:.1f}" if isinstance(r["train_duration_s"], int | float) else None,
                f"`{r['mlflow_run_id']}`" if r["mlflow_run_id"] else None,
                f"`{r['mlflow_parent_run_id']}`" if r["mlflow_parent_run_id"] else None,
            ]
        )
        for r in runs
    ]
    blocks.append(
        Table(
            ["Variant", "Framework", "Seed", "Status", "Val %", "Test %", "Epochs", "Train s", "MLflow run", "Parent"],
            rows,
        )
    )
    return blocks


def build_document(
    rows: Sequence[Row],
    runs: Sequence[dict[str, Any]],
    ledger: Sequence[LedgerEntry],
    overrides: Sequence[dict[str, Any]],
    env: dict[str, Any],
    clean_summary: dict[str, Any],
    plots: Sequence[Plot],
    figures: dict[str, list[str]],
    unexpected: Sequence[str],
    settings: ReportSettings,
    command: str,
    figure_index: dict[str, Any] | None = None,
) -> Document:
    doc = Document("Measured vs documented: do the published convnet figures hold?")
    counts = verdict_counts(rows)
    blocks = doc.blocks
    blocks.append(
        Paragraph(
            f"{len(rows)} rows (variant x framework) from {len(runs)} expected runs "
            f"({len(settings.frameworks)} framework{'s' if len(settings.frameworks) != 1 else ''} x "
            f"{len(settings.variants)} variants x seeds {', '.join(map(str, settings.seeds))}): "
            + ", ".join(f"**{n}** {v}" for v, n in counts.items())
            + "."
        )
    )
    blocks.append(Paragraph(f"Regenerate with `{command}`."))
    blocks += [Heading(2, "Comparison"), Bullets(rule_text(settings)), comparison_table(rows)]
    blocks.append(
        Paragraph(
            "Accuracies in %, differences in percentage points. Documented and printed figures come from "
            "`cnnrepro.documented`; every other number from the run outputs."
        )
    )
    blocks += [Heading(3, "Runs that did not complete"), *_not_completed(runs)]
    if unexpected:
        blocks += [
            Heading(3, "Runs on disk outside the params grid (not scored)"),
            Bullets([f"`{path}`" for path in unexpected]),
        ]
    blocks.append(Heading(2, "Plots"))
    group_titles = {"overview": None, "curves": "Training curves", "confusion": "Confusion matrices", "data": None}
    current = None
    for plot in plots:
        if plot.group != current:
            current = plot.group
            if group_titles.get(plot.group):
                blocks.append(Heading(3, group_titles[plot.group]))  # type: ignore[arg-type]
        if plot.group != "data":
            blocks.append(Image(f"plots/{plot.name}", plot.title, plot.caption))
    blocks.append(Heading(2, "Data cleaning (PetImages)"))
    blocks += [Image(f"plots/{p.name}", p.title, p.caption) for p in plots if p.group == "data"]
    blocks += _cleaning(clean_summary)
    blocks += [
        Heading(2, "Fidelity ledger"),
        Paragraph("Every departure from the sources' settings, and why."),
        *_ledger(ledger, overrides),
    ]
    blocks += [Heading(2, "Environment"), *_environment(env, runs)]
    blocks.append(Heading(2, "Figures"))
    blocks += _figures(figures, figure_index)
    return doc


FIGURE_GROUPS = {
    "activations": "Every channel of the first layers' outputs for one test image (book's scaling, viridis).",
    "filters": "The input that maximizes each filter's mean response, by gradient ascent from gray + noise.",
    "heatmaps": "Where the evidence for the predicted class lies: Grad-CAM, or CAM for the GAP model (jet).",
}


def _figures(figures: dict[str, list[str]], index: dict[str, Any] | None) -> list[Any]:
    """The PNGs under figures/ by subfolder, captioned and ordered as index.json lists them, then what was skipped."""
    records = {f"figures/{r['path']}": r for r in (index or {}).get("figures", [])}
    skipped = (index or {}).get("skipped", [])
    if not figures:
        blocks: list[Any] = [
            Paragraph("Not generated: `figures/` holds no PNGs yet (`cnnrepro visualize` writes them).")
        ]
    else:
        blocks = []
        if index:
            budget = index.get("filters", {})
            blocks.append(
                Paragraph(
                    f"Drawn by `cnnrepro visualize` on {index.get('device', '?')} from the runs of seed "
                    f"{index.get('seed', '?')}; filter patterns: {budget.get('iterations', '?')} steps of "
                    f"{budget.get('step', '?')}, a {budget.get('grid', '?')}x{budget.get('grid', '?')} grid "
                    f"(settings `{budget.get('budget', 'visualize.filters')}`)."
                )
            )
        order = {path: i for i, path in enumerate(records)}
        for group, paths in figures.items():
            blocks.append(Heading(3, group))
            if group in FIGURE_GROUPS:
                blocks.append(Paragraph(FIGURE_GROUPS[group]))
            for path in sorted(paths, key=lambda p: (order.get(p, len(order)), p)):
                record = records.get(path)
                title = record["title"] if record else path.rsplit("/", 1)[-1]
                blocks.append(Image(path, title, record.get("caption", "") if record else ""))
    if skipped:
        blocks.append(Heading(3, "Figures not made"))
        blocks.append(Bullets([f"**{s['kind']}** {s['item']}: {s['reason']}" for s in skipped]))
    return blocks
