"""The report's results in the shapes DVC reads: `reports/summary.json` (its `metrics:`) and the learning
curves `reports/curves/<framework>/<variant>.csv` (its top-level `plots:`, drawn with
workflow/plots/curves.json).

summary.json is small and kept in git (`cache: false`), so `dvc metrics diff` and `dvc exp show` compare the
headline of any two commits or experiments: per framework and variant the measured mean and sd over seeds
of the split the source reports, the seeds behind them, the documented figure, the difference, the
tolerance and the verdict. The curves are long-form (one row per epoch, seed and split), so one plot
overlays the seeds (colour) and training against validation (dash).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from cnnrepro.fsutil import atomic_dir, write_file, write_json_atomic
from cnnrepro.mappings import JsonObject
from cnnrepro.report.collect import RunSlot
from cnnrepro.report.table import Row

SUMMARY_NAME = "summary.json"
CURVES_DIR = "curves"
CURVE_COLUMNS = ("epoch", "seed", "split", "accuracy", "loss")
# history.csv columns of each split: (accuracy, loss).
SPLITS = {"train": ("accuracy", "loss"), "val": ("val_accuracy", "val_loss")}


def summary_record(rows: Sequence[Row]) -> dict[str, dict[str, JsonObject]]:
    """{framework: {variant: {metric, documented, mean, sd, n, difference_pp, tolerance_pp, verdict}}}.

    mean and sd are fractions, like the runs' metrics.json; the differences are percentage points."""
    summary: dict[str, dict[str, JsonObject]] = {}
    for row in rows:
        measured = row.test if row.metric == "test_accuracy" else row.val
        summary.setdefault(row.framework, {})[row.variant] = {
            "metric": row.metric,
            "documented": row.documented,
            "mean": measured.mean,
            "sd": measured.std,
            "n": measured.n,
            "difference_pp": row.difference_pp,
            "tolerance_pp": row.decision.tolerance_pp if row.decision else None,
            "verdict": row.verdict,
        }
    return summary


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def curve_rows(slots: Iterable[RunSlot]) -> list[JsonObject]:
    """Long-form curve rows of one (framework, variant): every epoch of every seed with outputs, per split;
    an epoch whose split was not evaluated (NaN in history.csv) has no row for that split."""
    rows = []
    for slot in sorted(slots, key=lambda s: s.seed):
        for epoch in slot.record.history if slot.record else ():
            for split, (accuracy, loss) in SPLITS.items():
                if _finite(epoch[accuracy]) and _finite(epoch[loss]):
                    rows.append(
                        {"epoch": int(epoch["epoch"]), "seed": slot.seed, "split": split}
                        | {"accuracy": epoch[accuracy], "loss": epoch[loss]}
                    )
    return rows


def curves_csv(rows: Sequence[JsonObject]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CURVE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_dvc_outputs(rows: Sequence[Row], slots: Sequence[RunSlot], out_dir: str | Path) -> list[Path]:
    """Write <out>/summary.json and <out>/curves/ (replaced whole); returns the curve files written.
    A (framework, variant) with no epochs yet has no curve file (DVC would fail to plot an empty one)."""
    out_dir = Path(out_dir)
    by_run: dict[tuple[str, str], list[RunSlot]] = {}
    for slot in slots:
        by_run.setdefault((slot.framework, slot.variant), []).append(slot)
    written = []
    with atomic_dir(out_dir / CURVES_DIR) as tmp:
        for (framework, variant), group in by_run.items():
            rows_of_run = curve_rows(group)
            if rows_of_run:
                (tmp / framework).mkdir(exist_ok=True)
                write_file(tmp / framework / f"{variant}.csv", curves_csv(rows_of_run).encode())
                written.append(out_dir / CURVES_DIR / framework / f"{variant}.csv")
    write_json_atomic(out_dir / SUMMARY_NAME, summary_record(rows))
    return written
