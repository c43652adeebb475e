"""The report's section "what moves the figures": each ablation's effect on its variant's documented metric.

effect = mean over the ablation's completed seeds - mean over the faithful completed seeds (same framework,
variant and metric), with the 95% interval of that difference by Welch (unequal variances,
Welch-Satterthwaite degrees of freedom) and n on each side; rows sorted by |effect|, largest first.
Ablation runs are found on disk (runs/<framework>/<variant>/ablation-<name>/seed<S>), whatever params
plan, and checked against their own outputs; the faithful side is the run grid the report already loaded.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scipy import stats as scipy_stats

from cnnrepro.errors import CnnreproError
from cnnrepro.report.blocks import Bullets, Cell, Heading, Paragraph, Table
from cnnrepro.report.collect import RunSlot
from cnnrepro.run_outputs import RunRecord, load_run
from cnnrepro.train.ablations import RUN_DIR_PREFIX
from cnnrepro.variants.documented import DOCUMENTED

CONFIDENCE = 0.95
CSV_NAME = "effects.csv"


@dataclass(frozen=True)
class Effect:
    """One (framework, variant, ablation): the figures on each side and their difference (fractions)."""

    framework: str
    variant: str
    ablation: str
    description: str
    changes: tuple[str, ...]  # run-config key=value this variant's runs changed (the settings that applied)
    metric: str
    faithful_n: int
    faithful_mean: float | None
    ablation_n: int
    ablation_mean: float | None
    effect: float | None
    ci_low: float | None
    ci_high: float | None
    not_run: int
    reasons: tuple[str, ...]

    @property
    def size(self) -> float:
        return abs(self.effect) if self.effect is not None else -1.0


def welch_interval(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The interval of mean(a) - mean(b) at `confidence`, Welch; both sides need >= 2 values."""
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        raise ValueError("Welch's interval needs at least two values on each side")
    ma, mb = math.fsum(a) / na, math.fsum(b) / nb
    va = math.fsum((x - ma) ** 2 for x in a) / (na - 1)
    vb = math.fsum((x - mb) ** 2 for x in b) / (nb - 1)
    se2 = va / na + vb / nb
    if se2 == 0:
        return ma - mb, ma - mb
    df = se2**2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    half = float(scipy_stats.t.ppf((1 + confidence) / 2, df)) * math.sqrt(se2)
    return ma - mb - half, ma - mb + half


def _ablation_runs(runs_root: Path) -> list[tuple[str, RunRecord]]:
    """(ablation name, record) of every finished ablation run on disk; a run in the wrong directory raises."""
    found = []
    for path in sorted(runs_root.glob(f"*/*/{RUN_DIR_PREFIX}*/seed*/metrics.json")):
        run = path.parent
        framework, variant, ablation_dir = run.parts[-4], run.parts[-3], run.parts[-2]
        name = ablation_dir.removeprefix(RUN_DIR_PREFIX)
        record = load_run(run)
        m = record.metrics
        recorded = ((record.info.get("config") or {}).get("ablation") or {}).get("name")
        if (m.framework, m.variant, f"seed{m.seed}", recorded) != (framework, variant, run.name, name):
            raise CnnreproError(
                f"{path}: says {m.framework}/{m.variant}/seed{m.seed} under ablation {recorded}, "
                f"expected {framework}/{variant}/{run.name} under {name} from its directory"
            )
        found.append((name, record))
    return found


def _value(record: RunRecord, metric: str) -> float | None:
    return getattr(record.metrics, metric) if record.metrics.status == "completed" else None


def collect_effects(runs_root: str | Path, slots: Sequence[RunSlot]) -> list[Effect]:
    """Every ablation found under runs_root against the faithful runs in `slots`, sorted by |effect|."""
    groups: dict[tuple[str, str, str], list[RunRecord]] = {}
    for name, record in _ablation_runs(Path(runs_root)):
        groups.setdefault((record.metrics.framework, record.metrics.variant, name), []).append(record)
    effects = []
    for (framework, variant, name), records in groups.items():
        metric = DOCUMENTED[variant].metric
        faithful = [
            v
            for s in slots
            if (s.framework, s.variant) == (framework, variant) and s.record
            if (v := _value(s.record, metric)) is not None
        ]
        ablated = [v for r in records if (v := _value(r, metric)) is not None]
        reasons = tuple(
            sorted({r.metrics.reason for r in records if r.metrics.status != "completed" and r.metrics.reason})
        )
        ablation_info = (records[0].info.get("config") or {}).get("ablation") or {}
        mean_f = math.fsum(faithful) / len(faithful) if faithful else None
        mean_a = math.fsum(ablated) / len(ablated) if ablated else None
        effect = mean_a - mean_f if mean_a is not None and mean_f is not None else None
        low = high = None
        if len(faithful) >= 2 and len(ablated) >= 2:
            low, high = welch_interval(ablated, faithful)
        effects.append(
            Effect(
                framework=framework,
                variant=variant,
                ablation=name,
                description=str(ablation_info.get("description") or ""),
                changes=tuple(
                    f"{key}={change['ablation']}" for key, change in (ablation_info.get("changes") or {}).items()
                ),
                metric=metric,
                faithful_n=len(faithful),
                faithful_mean=mean_f,
                ablation_n=len(ablated),
                ablation_mean=mean_a,
                effect=effect,
                ci_low=low,
                ci_high=high,
                not_run=sum(r.metrics.status != "completed" for r in records),
                reasons=reasons,
            )
        )
    return sorted(effects, key=lambda e: (-e.size, e.variant, e.ablation, e.framework))


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def _pp(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:+.2f}"


def effect_blocks(effects: Sequence[Effect]) -> list[Any]:
    """The section as report blocks (Markdown and HTML render the same ones)."""
    blocks: list[Any] = [
        Heading(2, "What moves the figures (ablations)"),
        Paragraph(
            "Effect = ablation mean − faithful mean of the variant's documented metric (percentage points), "
            "95% interval of the difference by Welch (needs 2 seeds on each side), n = completed seeds on each "
            "side; sorted by |effect|. Ablations are declared in `params.yaml` (`ablations.definitions`)."
        ),
    ]
    if not effects:
        return [*blocks, Paragraph("No ablation runs found.")]
    rows = []
    for e in effects:
        interval = "—" if e.ci_low is None else f"[{_pp(e.ci_low)}, {_pp(e.ci_high)}]"
        rows.append(
            [
                Cell(e.variant),
                Cell(e.framework),
                Cell(e.ablation),
                Cell(", ".join(e.changes) or "(continues from its ablation's run)"),
                Cell(e.metric),
                Cell(f"{_pct(e.faithful_mean)} (n={e.faithful_n})"),
                Cell(f"{_pct(e.ablation_mean)} (n={e.ablation_n})"),
                Cell(_pp(e.effect)),
                Cell(interval),
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
    ]
    blocks.append(Table(headers, rows))
    described = {e.ablation: e.description for e in effects if e.description}
    blocks.append(Bullets([f"`{name}`: {text}" for name, text in sorted(described.items())]))
    not_run = [e for e in effects if e.not_run]
    if not_run:
        blocks.append(Paragraph("Ablation runs without a figure, and why:"))
        blocks.append(
            Bullets([f"{e.framework}/{e.variant}/{e.ablation} ({e.not_run}): {'; '.join(e.reasons)}" for e in not_run])
        )
    return blocks


def effect_records(effects: Sequence[Effect]) -> list[dict[str, Any]]:
    """JSON rows: fractions as in metrics.json, plus the effect and interval in percentage points."""
    records = []
    for e in effects:
        record = asdict(e) | {"reasons": list(e.reasons), "changes": list(e.changes)}
        for key in ("effect", "ci_low", "ci_high"):
            record[f"{key}_pp"] = None if record[key] is None else 100 * record[key]
        records.append(record)
    return records


def to_csv(effects: Sequence[Effect]) -> str:
    records = effect_records(effects)
    columns = list(records[0]) if records else [*Effect.__dataclass_fields__, "effect_pp", "ci_low_pp", "ci_high_pp"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if v is None else "; ".join(v) if isinstance(v, list) else v for k, v in record.items()})
    return buf.getvalue()
