"""The data-cleaning figure: what the decode-based cleaner dropped, and what the JFIF-header filter would have."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cnnrepro.mappings import JsonObject
from cnnrepro.report.plot_style import DPI, Plot


def files(n: int, kind: str) -> str:
    return f"{n} {kind} file{'s' if n != 1 else ''}"


def data_cleaning(summary: JsonObject, out_dir: Path) -> Plot:
    # Drops are a fraction of a percent of the archive, so every panel counts dropped files; kept ones go in labels.
    fig = Figure(figsize=(13, 4.2), layout="constrained")
    ax_class, ax_reason, ax_filter = fig.subplots(1, 3, gridspec_kw={"width_ratios": [0.8, 1.4, 1.2]})
    red, orange = "#d62728", "#ff7f0e"

    classes = list(summary["per_class"])
    dropped = [summary["per_class"][c]["dropped"] for c in classes]
    ticks = [f"{c}\n(kept {summary['per_class'][c]['kept']})" for c in classes]
    ax_class.bar(range(len(classes)), dropped, color=red, width=0.6)
    for i, d in enumerate(dropped):
        ax_class.text(i, d, str(d), ha="center", va="bottom", fontsize=9)
    ax_class.set_xticks(range(len(classes)), ticks, fontsize=9)
    ax_class.set_ylabel("files dropped")
    ax_class.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_class.set_title("dropped per class", fontsize=10)

    reasons = sorted(summary["by_reason"].items(), key=lambda kv: kv[1])
    if reasons:
        ax_reason.barh(range(len(reasons)), [n for _, n in reasons], color=red, height=0.6)
        ax_reason.set_yticks(range(len(reasons)), [r for r, _ in reasons], fontsize=8)
        for i, (_, n) in enumerate(reasons):
            ax_reason.text(n, i, f" {n}", va="center", fontsize=8)
        ax_reason.set_xlabel("files")
        ax_reason.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax_reason.text(0.5, 0.5, "nothing dropped", ha="center", va="center", transform=ax_reason.transAxes)
    ax_reason.set_title("dropped, by reason (decode check)", fontsize=10)

    jfif = summary["jfif_filter"]
    wrongly = jfif["decodable_but_dropped"]
    caught = jfif["would_drop"] - wrongly
    ax_filter.bar([0], [summary["dropped"]], color=red, width=0.55, label="undecodable or excluded")
    ax_filter.bar([1], [caught], color=red, width=0.55)
    ax_filter.bar([1], [wrongly], bottom=[caught], color=orange, width=0.55, label="decodable, dropped anyway")
    ax_filter.text(0, summary["dropped"], str(summary["dropped"]), ha="center", va="bottom", fontsize=9)
    ax_filter.text(1, jfif["would_drop"], str(jfif["would_drop"]), ha="center", va="bottom", fontsize=9)
    ax_filter.set_xticks(
        [0, 1],
        [f"decode check\n(kept {summary['kept']})", f"b'JFIF' header filter\n(kept {jfif['would_keep']})"],
        fontsize=9,
    )
    ax_filter.set_xlim(-0.7, 1.7)
    ax_filter.set_ylabel("files dropped")
    ax_filter.set_title("decode check vs the Keras example's JFIF filter", fontsize=10)
    ax_filter.set_xlabel(
        f"JFIF filter: drops {files(wrongly, 'decodable')}, keeps {files(jfif['undecodable_but_kept'], 'undecodable')}",
        fontsize=8,
    )
    ax_filter.legend(fontsize=8, loc="upper left")
    for ax in (ax_class, ax_filter):
        ax.margins(y=0.15)
    fig.suptitle(
        f"PetImages cleaning: {summary.get('archive', 'archive')} ({summary.get('total_members', '?')} members)"
    )
    fig.savefig(out_dir / "data_cleaning.png", dpi=DPI, facecolor="white")
    return Plot(
        "data_cleaning.png",
        "Data cleaning",
        "Files the decode-based cleaner dropped (per class, by reason), and what the Keras example's JFIF-header "
        "filter would drop instead.",
        "data",
    )
