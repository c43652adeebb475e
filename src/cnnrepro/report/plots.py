"""The report's figures (matplotlib, Agg): measured vs documented, curves, confusion matrices, data cleaning.

Figures are built with matplotlib.figure.Figure, not pyplot, so no global figure state leaks between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cnnrepro.errors import CnnreproError
from cnnrepro.mappings import JsonObject
from cnnrepro.report.collect import ReportSettings, RunSlot
from cnnrepro.report.plot_cleaning import data_cleaning
from cnnrepro.report.plot_style import COLORS, DPI, Plot
from cnnrepro.report.table import Row
from cnnrepro.report.verdict import INCONCLUSIVE


def _color(settings: ReportSettings, framework: str) -> str:
    return COLORS[settings.frameworks.index(framework) % len(COLORS)]


def _save(fig: Figure, out_dir: Path, name: str) -> None:
    fig.savefig(out_dir / name, dpi=DPI, facecolor="white")


def measured_vs_documented(rows: Sequence[Row], settings: ReportSettings, out_dir: Path) -> Plot:
    variants = list(settings.variants)
    fig = Figure(figsize=(max(7.0, 1.25 * len(variants) + 2), 4.8), layout="constrained")
    ax = fig.add_subplot()
    width = 0.6 / max(1, len(settings.frameworks))
    for x, variant in enumerate(variants):
        variant_rows = [r for r in rows if r.variant == variant]
        first = variant_rows[0]
        if first.documented is not None:
            for i, row in enumerate(variant_rows):
                # Each row's own tolerance (it scales with the seeds' spread and the evaluation set).
                decided = row.decision is not None and row.decision.verdict != INCONCLUSIVE
                tolerance = row.decision.tolerance_pp if decided else None  # type: ignore[union-attr]
                if tolerance is None:
                    continue
                xi = x + (i - (len(variant_rows) - 1) / 2) * width
                ax.fill_between(
                    [xi - width / 2, xi + width / 2],
                    first.documented * 100 - tolerance,
                    first.documented * 100 + tolerance,
                    color="0.88",
                    lw=0,
                    zorder=0,
                    label=_once(ax, "documented ± the verdict's tolerance"),
                )
            ax.hlines(
                first.documented * 100, x - 0.4, x + 0.4, color="black", lw=2, zorder=2, label=_once(ax, "documented")
            )
        if first.printed is not None:
            ax.plot(
                x,
                first.printed * 100,
                "D",
                mfc="white",
                mec="black",
                ms=7,
                zorder=3,
                label=_once(ax, "printed (notebook, last epoch)"),
            )
        for i, row in enumerate(variant_rows):
            measured = row.summary(row.metric)
            xi = x + (i - (len(variant_rows) - 1) / 2) * width
            if measured.mean is None:
                # Nothing measured: say why at the foot of the column, one line per framework.
                ax.annotate(
                    row.verdict if len(variant_rows) == 1 else f"{row.framework}: {row.verdict}",
                    (x, 0),
                    xycoords=("data", "axes fraction"),
                    xytext=(0, 5 + 11 * i),
                    textcoords="offset points",
                    ha="center",
                    fontsize=8,
                    style="italic",
                    color=_color(settings, row.framework),
                )
                continue
            mean = measured.mean * 100
            err = None
            if measured.has_interval:
                err = [[mean - measured.ci_low * 100], [measured.ci_high * 100 - mean]]  # type: ignore[operator]
            ax.errorbar(
                xi,
                mean,
                yerr=err,
                fmt="o",
                color=_color(settings, row.framework),
                capsize=4,
                ms=6,
                zorder=4,
                label=_once(ax, f"measured, {row.framework} (mean, {settings.confidence:.0%} CI)"),
            )
    ax.set_xticks(range(len(variants)), variants, fontsize=8, rotation=25, ha="right", rotation_mode="anchor")
    ax.set_xlim(-0.6, len(variants) - 0.4)
    # An interval of a few noisy seeds can pass 0% or 100%; accuracy cannot, so the axis stops just beyond.
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, -1.0), min(high, 101.0))
    ax.set_ylabel("accuracy (%) on the split the source reports")
    ax.set_title("Measured vs documented accuracy")
    ax.grid(axis="y", color="0.92")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), framealpha=0.9)
    _save(fig, out_dir, "measured_vs_documented.png")
    return Plot(
        "measured_vs_documented.png",
        "Measured vs documented",
        "Per variant: documented figure (black bar; grey band: the verdict's tolerance, where the rule could "
        "decide), the notebook's printed last-epoch "
        f"figure (hollow diamond), measured mean with its {settings.confidence:.0%} interval per framework.",
        "overview",
    )


def _once(ax: Any, label: str) -> str | None:
    """Legend label for the first artist only (ax.get_legend_handles_labels sees every labelled artist)."""
    return None if label in ax.get_legend_handles_labels()[1] else label


def _history_stats(slots: Sequence[RunSlot], column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per epoch over seeds: epochs, mean, min, max. Seeds may have run different numbers of epochs."""
    by_epoch: dict[int, list[float]] = {}
    for slot in slots:
        for rec in slot.record.history:  # type: ignore[union-attr]
            value = rec[column]
            if value == value:  # NaN = the split was not evaluated that epoch
                by_epoch.setdefault(int(rec["epoch"]), []).append(value)
    epochs = np.array(sorted(by_epoch))
    values = [np.array(by_epoch[e]) for e in epochs]
    return (
        epochs,
        np.array([v.mean() for v in values]),
        np.array([v.min() for v in values]),
        np.array([v.max() for v in values]),
    )


def history(variant: str, slots: Sequence[RunSlot], settings: ReportSettings, out_dir: Path) -> Plot | None:
    completed = [s for s in slots if s.status == "completed" and s.record and s.record.history]
    if not completed:
        return None
    fig = Figure(figsize=(8.4, 3.3), layout="constrained")
    axes = fig.subplots(1, 2)
    for framework in settings.frameworks:
        runs = [s for s in completed if s.framework == framework]
        if not runs:
            continue
        color = _color(settings, framework)
        for ax, (train_col, val_col, scale) in zip(
            axes, [("accuracy", "val_accuracy", 100.0), ("loss", "val_loss", 1.0)], strict=True
        ):
            for column, style, split in [(train_col, "--", "training"), (val_col, "-", "validation")]:
                epochs, mean, low, high = _history_stats(runs, column)
                if len(epochs) == 0:
                    continue
                ax.plot(epochs, mean * scale, style, color=color, lw=1.6, label=f"{framework} {split} (n={len(runs)})")
                ax.fill_between(
                    epochs, low * scale, high * scale, color=color, alpha=0.15 if style == "-" else 0.08, lw=0
                )
    for ax, label in zip(axes, ["accuracy (%)", "loss"], strict=True):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(color="0.92")
        ax.legend(fontsize=8)
    fig.suptitle(f"{variant}: training and validation curves")
    name = f"history_{variant}.png"
    _save(fig, out_dir, name)
    return Plot(name, f"{variant}: curves", "Mean over seeds per epoch; shaded band = min to max over seeds.", "curves")


def summed_confusion(slots: Sequence[RunSlot]) -> tuple[list[str], np.ndarray, int] | None:
    """Confusion matrices of the completed seeds, summed; labels must agree across seeds."""
    labels: list[str] | None = None
    total: np.ndarray | None = None
    count = 0
    for slot in slots:
        if slot.status != "completed" or slot.record is None:
            continue
        confusion = slot.record.confusion
        if confusion is None:
            continue
        where = slot.path / "artifacts" / "confusion.json"
        try:
            these = [str(x) for x in confusion["labels"]]
            matrix = np.asarray(confusion["matrix"], dtype=np.int64)
        except (KeyError, TypeError, ValueError):
            raise CnnreproError(f"{where}: expected {{'labels': [...], 'matrix': [[...]]}} of counts") from None
        if matrix.shape != (len(these), len(these)):
            raise CnnreproError(f"{where}: matrix shape {matrix.shape} does not match {len(these)} labels")
        if labels is None:
            labels, total = these, np.zeros_like(matrix)
        elif these != labels:
            raise CnnreproError(f"{where}: labels {these} differ from the other seeds' {labels}")
        total = total + matrix  # type: ignore[operator]
        count += 1
    return (labels, total, count) if labels is not None else None  # type: ignore[return-value]


def confusion(variant: str, slots: Sequence[RunSlot], settings: ReportSettings, out_dir: Path) -> Plot | None:
    panels = []
    for framework in settings.frameworks:
        summed = summed_confusion([s for s in slots if s.framework == framework])
        if summed:
            panels.append((framework, *summed))
    if not panels:
        return None
    # The matrix's own split: test where the variant has one, validation for the Keras example.
    split = next((c.get("split", "test") for s in slots if s.record and (c := s.record.confusion)), "test")
    k = len(panels[0][1])
    side = max(3.6, 2.6 + 0.42 * k)
    fig = Figure(figsize=(side * len(panels) + 0.8, side), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (framework, labels, matrix, seeds) in zip(axes, panels, strict=True):
        row_sums = matrix.sum(axis=1, keepdims=True)
        share = matrix / np.maximum(row_sums, 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    str(matrix[i, j]),
                    ha="center",
                    va="center",
                    fontsize=9 if k <= 4 else 7,
                    color="white" if share[i, j] > 0.6 else "black",
                )
        ax.set_xticks(range(k), labels, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center", fontsize=8)
        ax.set_yticks(range(k), labels, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{framework}: {seeds} seed{'s' if seeds != 1 else ''} summed", fontsize=10)
    fig.suptitle(f"{variant}: confusion matrix, {split} split")
    name = f"confusion_{variant}.png"
    _save(fig, out_dir, name)
    return Plot(
        name,
        f"{variant}: confusion matrix",
        f"{split.capitalize()}-split counts summed over seeds; colour = share of the true class (row).",
        "confusion",
    )


def write_plots(
    rows: Sequence[Row],
    slots: Sequence[RunSlot],
    clean_summary: JsonObject | None,
    settings: ReportSettings,
    out_dir: Path,
) -> list[Plot]:
    """Every figure into out_dir (an empty directory); returns them in the order the report shows them."""
    plots = [measured_vs_documented(rows, settings, out_dir)]
    for variant in settings.variants:
        variant_slots = [s for s in slots if s.variant == variant]
        plots += [p for p in (history(variant, variant_slots, settings, out_dir),) if p]
    for variant in settings.variants:
        variant_slots = [s for s in slots if s.variant == variant]
        plots += [p for p in (confusion(variant, variant_slots, settings, out_dir),) if p]
    if clean_summary is not None:
        plots.append(data_cleaning(clean_summary, out_dir))
    return plots
