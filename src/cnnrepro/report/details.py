"""The report's detail sections below the comparison: data cleaning, fidelity ledger, environment, figures."""

from __future__ import annotations

from collections.abc import Sequence

from cnnrepro.mappings import JsonObject, Params
from cnnrepro.report.blocks import DASH, Block, Bullets, Cell, Code, Heading, Image, Paragraph, Table, cells, pct
from cnnrepro.report.ledger import LedgerEntry
from cnnrepro.report.plot_cleaning import files


def cleaning_section(summary: Params | None, summary_path: str) -> list[Block]:
    if summary is None:
        return [
            Paragraph(
                f"Absent: `{summary_path}` does not exist (the clean stage has not run), so there is no "
                "cleaning summary; `cnnrepro clean` writes it."
            )
        ]
    jfif = summary["jfif_filter"]
    overview = Table(
        ["Archive", "sha256", "Members", "Kept", "Converted", "Dropped"],
        [
            cells(
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
        [cells([c, v["kept"], v["dropped"]]) for c, v in summary["per_class"].items()],
    )
    filters = Table(
        ["Filter", "Kept", "Dropped", "Note"],
        [
            cells(["decode check (this pipeline)", summary["kept"], summary["dropped"], "decodes every file"]),
            cells(
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
            blocks.append(Table([title, "Files"], [cells([f"`{k}`", v]) for k, v in counts.items()]))
    return blocks


def ledger_section(entries: Sequence[LedgerEntry], overrides: Sequence[Params]) -> list[Block]:
    blocks: list[Block] = []
    if entries:
        blocks.append(
            Table(
                ["Id", "Source setting", "Source", "This port", "Why", "Variants", "Frameworks"],
                [
                    cells(
                        [
                            Cell(f"`{e.id}`", "nowrap"),
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
            cells(
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


def _tally_text(tally: Sequence[JsonObject], total: int) -> str:
    if not tally:
        return DASH
    if len(tally) == 1 and len(tally[0]["runs"]) == total:
        return f"`{tally[0]['value']}` (all runs)"
    return "; ".join(f"`{t['value']}` ({len(t['runs'])} run{'s' if len(t['runs']) != 1 else ''})" for t in tally)


RUN_HEADERS = ["Variant", "Framework", "Seed", "Status", "Val %", "Test %", "Epochs", "Train s", "MLflow run", "Parent"]


def environment_section(env: Params, runs: Sequence[Params]) -> list[Block]:
    with_outputs = sum(1 for r in runs if r["status"] != "missing")
    archive = env["petimages_archive"]
    facts = Table(
        ["What", "Value"],
        [
            cells(["Device", _tally_text(env["devices"], with_outputs)]),
            cells(["Git commit", _tally_text(env["git_commits"], with_outputs)]),
            cells(["Data manifest sha256", _tally_text(env["data_manifest_sha256"], with_outputs)]),
            cells(["PetImages archive", f"`{archive['archive']}` sha256 `{archive['archive_sha256']}`"]),
            cells(["MLflow tracking URI", ", ".join(f"`{u}`" for u in env["tracking_uris"]) or None]),
        ],
    )
    blocks: list[Block] = [facts]
    if env["packages"]:
        blocks.append(
            Table(
                ["Package", "Version"],
                [cells([f"`{name}`", _tally_text(t, with_outputs)]) for name, t in env["packages"].items()],
            )
        )
    blocks.append(Heading(3, "MLflow run ids of every number shown"))
    if env["mlflow_ui"]:
        blocks.append(
            Paragraph(
                "Open the runs in the MLflow UI on the same store (from the project root; `make mlflow-ui` "
                "does both and prints the address for its port), in its model-training view:"
            )
        )
        blocks.append(Code("\n".join(env["mlflow_ui"])))
    rows = [
        cells(
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
        if r["status"] != "missing"  # no outputs, no MLflow run: counted below, listed per variant above
    ]
    if rows:
        blocks.append(
            Table(
                [
                    "Variant",
                    "Framework",
                    "Seed",
                    "Status",
                    "Val %",
                    "Test %",
                    "Epochs",
                    "Train s",
                    "MLflow run",
                    "Parent",
                ],
                rows,
            )
        )
    if missing := len(runs) - with_outputs:
        blocks.append(Paragraph(f"{missing} expected run{'s' if missing != 1 else ''} with no outputs yet (missing)."))
    return blocks


FIGURE_GROUPS = {
    "activations": "Every channel of the first layers' outputs for one test image (book's scaling, viridis).",
    "filters": "The input that maximizes each filter's mean response, by gradient ascent from gray + noise.",
    "heatmaps": "Where the evidence for the predicted class lies: Grad-CAM, or CAM for the GAP model (jet).",
}


def figures_section(figures: dict[str, list[str]], index: Params | None) -> list[Block]:
    """The PNGs under figures/ by subfolder, captioned and ordered as index.json lists them, then what was skipped."""
    records = {f"figures/{r['path']}": r for r in (index or {}).get("figures", [])}
    skipped = (index or {}).get("skipped", [])
    if not figures:
        blocks: list[Block] = [
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
