"""The report's section "what moves the figures": each ablation's effect on its variant's documented metric.

effect = mean over the ablation's completed seeds - mean over the faithful completed seeds (same framework,
variant and metric), with the 95% interval of that difference by Welch (unequal variances,
Welch-Satterthwaite degrees of freedom) and n on each side; rows sorted by |effect|, largest first.
Seeds that did not learn (cnnrepro.report.collapse, the verdict's rule) are named per side, and the
effect and its interval are given again without them: a collapse is an event, not spread, and averaged
in it widens the interval past zero (one naive_torch_port seed at chance turned a -22.51 pp effect into
-38.77 pp in [-108.45, +30.92]). Where the interval without collapsed seeds still spans zero, the
section says how many seeds a side would exclude zero at the measured spread (report.seeds_needed).
Ablation runs are found on disk (runs/<framework>/<variant>/ablation-<name>/seed<S>), whatever params
plan, and checked against their own outputs; the faithful side is the run grid the report already loaded.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scipy import stats as scipy_stats

from cnnrepro.errors import CnnreproError
from cnnrepro.report.collapse import Collapse, find_collapses
from cnnrepro.report.collect import RunSlot
from cnnrepro.report.evalsize import evaluation_size
from cnnrepro.report.seeds_needed import EffectSides, SeedsNeeded, effect_seeds_needed
from cnnrepro.report.verdict import VerdictRule
from cnnrepro.run_outputs import RunRecord, load_run
from cnnrepro.train.ablations import RUN_DIR_PREFIX
from cnnrepro.variants.documented import DOCUMENTED

CONFIDENCE = 0.95


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
    faithful_collapsed: tuple[Collapse, ...] = ()
    ablation_collapsed: tuple[Collapse, ...] = ()
    # The same difference and interval on the seeds that learned (equal to the above where none collapsed).
    learned_effect: float | None = None
    learned_ci_low: float | None = None
    learned_ci_high: float | None = None
    seeds_needed: SeedsNeeded | None = None  # the interval without collapsed seeds spans zero

    @property
    def size(self) -> float:
        return abs(self.effect) if self.effect is not None else -1.0

    @property
    def collapsed(self) -> bool:
        return bool(self.faithful_collapsed or self.ablation_collapsed)


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


@dataclass(frozen=True)
class _Side:
    values: dict[int, float]  # seed -> figure, every completed seed
    collapsed: tuple[Collapse, ...]

    @property
    def learned(self) -> list[float]:
        dropped = {c.seed for c in self.collapsed}
        return [v for seed, v in self.values.items() if seed not in dropped]


def _side(records: Mapping[int, RunRecord], metric: str, images: int | None, rule: VerdictRule) -> _Side:
    values = {seed: v for seed, r in records.items() if (v := _value(r, metric)) is not None}
    return _Side(values, find_collapses(values, records, metric, images, rule.collapse_sd, rule.collapse_loss_margin))


def _difference(a: Sequence[float], b: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    """mean(a) - mean(b) and its Welch interval (None where a side has too few values)."""
    if not a or not b:
        return None, None, None
    effect = math.fsum(a) / len(a) - math.fsum(b) / len(b)
    if len(a) < 2 or len(b) < 2:
        return effect, None, None
    return (effect, *welch_interval(a, b))


def _sd(values: Sequence[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def collect_effects(
    runs_root: str | Path,
    slots: Sequence[RunSlot],
    rule: VerdictRule | None = None,
    validation_per_class: int | None = None,
) -> list[Effect]:
    """Every ablation found under runs_root against the faithful runs in `slots`, sorted by |effect|.

    `rule` gives the collapse rule and the seed search's bound; `validation_per_class` the book's
    validation-set size, for the evaluation-set size of a run without a matrix of its split."""
    rule = rule or VerdictRule()
    groups: dict[tuple[str, str, str], list[RunRecord]] = {}
    for name, record in _ablation_runs(Path(runs_root)):
        groups.setdefault((record.metrics.framework, record.metrics.variant, name), []).append(record)
    effects = []
    for (framework, variant, name), records in groups.items():
        metric = DOCUMENTED[variant].metric
        own = [s for s in slots if (s.framework, s.variant) == (framework, variant) and s.record]
        images = evaluation_size(own, metric, validation_per_class).images
        faithful = _side({s.seed: s.record for s in own if s.record}, metric, images, rule)
        ablated = _side({r.metrics.seed: r for r in records}, metric, images, rule)
        reasons = tuple(
            sorted({r.metrics.reason for r in records if r.metrics.status != "completed" and r.metrics.reason})
        )
        ablation_info = (records[0].info.get("config") or {}).get("ablation") or {}
        effect, low, high = _difference(list(ablated.values.values()), list(faithful.values.values()))
        learned, learned_low, learned_high = _difference(ablated.learned, faithful.learned)
        need = None
        if faithful.values and ablated.values:
            sides = EffectSides(
                faithful_learned=len(faithful.learned),
                faithful_collapsed=len(faithful.collapsed),
                faithful_sd=_sd(faithful.learned),
                ablation_learned=len(ablated.learned),
                ablation_collapsed=len(ablated.collapsed),
                ablation_sd=_sd(ablated.learned),
                effect=learned,
                excludes_zero=learned_low is not None and (learned_low > 0 or learned_high < 0),  # type: ignore[operator]
            )
            need = effect_seeds_needed(framework, variant, name, sides, rule.max_seeds, CONFIDENCE)
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
                faithful_n=len(faithful.values),
                faithful_mean=_mean(faithful.values.values()),
                ablation_n=len(ablated.values),
                ablation_mean=_mean(ablated.values.values()),
                effect=effect,
                ci_low=low,
                ci_high=high,
                not_run=sum(r.metrics.status != "completed" for r in records),
                reasons=reasons,
                faithful_collapsed=faithful.collapsed,
                ablation_collapsed=ablated.collapsed,
                learned_effect=learned,
                learned_ci_low=learned_low,
                learned_ci_high=learned_high,
                seeds_needed=need,
            )
        )
    return sorted(effects, key=lambda e: (-e.size, e.variant, e.ablation, e.framework))


def _mean(values: Sequence[float] | Any) -> float | None:
    values = list(values)
    return math.fsum(values) / len(values) if values else None
