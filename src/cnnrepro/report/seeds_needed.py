"""How many seeds would decide what the report leaves undecided, at the spread the seeds measured.

- **A row** (the verdict is "inconclusive"): the smallest n, from the seeds that learned now (at least
  `min_seeds`) up to `max_seeds`, whose tolerance t(df_n) * sqrt(s^2 (1 + 1/n) + p(1 - p)/N) -- the
  verdict's own formula (cnnrepro.report.verdict.prediction_tolerance), with the measured s and its
  Welch-Satterthwaite df at that n -- is at most `max_tolerance_pp`. At that n the rule gives a verdict
  at the measured mean: "reproduced" when the mean is within that tolerance, "above"/"below" when it
  is already clear of it; the reason says which. The tolerance falls with n towards z * sqrt(s^2 +
  p(1 - p)/N), so when that limit is above `max_tolerance_pp` no number of seeds decides ("never");
  when the smallest n is past `max_seeds` the answer is "more than max_seeds".
- **An effect** (its interval on the seeds that learned spans zero): the smallest n seeds a side, from
  the larger side's count now (at least 2), such that the Welch interval at the measured sds,
  t(df_n) * sqrt((s_a^2 + s_f^2)/n) with df_n = (n - 1)(s_a^2 + s_f^2)^2/(s_a^4 + s_f^4), no longer
  reaches zero from the measured effect. A zero effect never excludes zero.
- With fewer than 2 seeds that learned (no spread measured yet) the count is the least the rule needs
  before it can measure one (`min_seeds` for a row, 2 a side for an effect), marked as such.

Counts are completed seeds in total, the collapsed ones included: the collapsed seeds stay run and
counted, so the new seeds must add the learned ones the rule needs (assuming they learn). The numbers
assume the spread and the mean stay as measured; they say how far a decision is, not what it will be.
The pipeline reads them back from comparison.json (`read_seeds_needed`) to run what is missing;
what it does with a count past its own cap is its business.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import read_json
from cnnrepro.mappings import JsonObject
from cnnrepro.report.verdict import ABOVE, BELOW, REPRODUCED, Decision, VerdictRule, prediction_tolerance, t_quantile

MEASURED = "measured"  # the count at the measured spread
MINIMUM = "minimum"  # no spread measured yet: the least the rule needs first (a lower bound)
BEYOND = "beyond"  # more than max_seeds
NEVER = "never"  # no number of seeds decides at the measured spread
UNKNOWN = "unknown"  # seeds cannot decide it (the evaluation-set size is unknown)
BASES = (MEASURED, MINIMUM, BEYOND, NEVER, UNKNOWN)


@dataclass(frozen=True)
class SeedsNeeded:
    """One undecided row (ablation None) or effect (ablation named), and the seeds that would decide it."""

    framework: str
    variant: str
    ablation: str | None
    completed: int  # completed seeds now (the ablation's, for an effect), collapsed ones included
    seeds: int | None  # completed seeds in total that would decide it; None where basis is beyond/never/unknown
    faithful_seeds: int | None  # an effect: completed faithful seeds in total its interval needs
    basis: str  # one of BASES
    reason: str
    would_read: str | None = None  # a row, basis measured: the verdict at that n at the measured mean

    @property
    def more(self) -> int | None:
        return None if self.seeds is None else max(0, self.seeds - self.completed)

    def short(self) -> str:
        """A few words for the headline and the tables: '5 seeds would decide (2 more)'."""
        side = " a side" if self.ablation is not None else ""
        if self.basis == MEASURED:
            reads = f"; {self.would_read} at the measured mean" if self.would_read else ""
            return f"{self.seeds} seeds{side} would decide ({self.more} more{reads})"
        if self.basis == MINIMUM:
            return f"at least {self.seeds} seeds{side} before the spread is measured"
        return self.reason.split(":")[0]


def smallest_row_n(seed_sd: float, binomial: float, start: int, rule: VerdictRule) -> int | None:
    """The smallest n in [start, max_seeds] whose tolerance fits under max_tolerance_pp (None: none does)."""
    for n in range(max(start, 2), rule.max_seeds + 1):
        if prediction_tolerance(seed_sd, binomial, n, rule.confidence)[0] * 100 <= rule.max_tolerance_pp:
            return n
    return None


def welch_half_width(sd_a: float, sd_b: float, n: int, confidence: float) -> float:
    """Half the Welch interval of a difference of means with n seeds a side at sds sd_a, sd_b."""
    var = sd_a**2 + sd_b**2
    if var == 0:
        return 0.0
    df = (n - 1) * var**2 / (sd_a**4 + sd_b**4)
    return t_quantile(confidence, df) * math.sqrt(var / n)


def smallest_effect_n(
    sd_a: float, sd_b: float, effect: float, start: int, max_seeds: int, confidence: float
) -> int | None:
    """The smallest n a side in [start, max_seeds] whose Welch interval around `effect` excludes zero."""
    for n in range(max(start, 2), max_seeds + 1):
        if abs(effect) > welch_half_width(sd_a, sd_b, n, confidence):
            return n
    return None


def row_seeds_needed(framework: str, variant: str, decision: Decision, rule: VerdictRule) -> SeedsNeeded:
    """For an inconclusive verdict: the seeds that would decide it (see the module docstring)."""
    collapsed = len(decision.collapsed)

    def need(seeds: int | None, basis: str, reason: str, would_read: str | None = None) -> SeedsNeeded:
        return SeedsNeeded(framework, variant, None, decision.completed, seeds, None, basis, reason, would_read)

    if decision.binomial_sd_pp is None:
        return need(None, UNKNOWN, "evaluation-set size unknown: more seeds do not decide it")
    if decision.seed_sd_pp is None or decision.difference_pp is None:
        learned = max(rule.min_seeds, 2)
        return need(learned + collapsed, MINIMUM, f"no spread measured yet: the rule needs {learned} seeds that learn")
    s, b, difference = decision.seed_sd_pp / 100, decision.binomial_sd_pp / 100, decision.difference_pp
    basis = f"seed sd {s * 100:.2f} pp"
    n = smallest_row_n(s, b, max(decision.n, rule.min_seeds), rule)
    if n is None:
        limit = t_quantile(rule.confidence, math.inf) * math.sqrt(s**2 + b**2) * 100
        if limit > rule.max_tolerance_pp:
            reason = (
                f"never: at the measured spread ({basis}) the tolerance stays above ±{limit:.2f} pp "
                f"> {rule.max_tolerance_pp:g} pp with any number of seeds"
            )
            return need(None, NEVER, reason)
        return need(None, BEYOND, f"more than {rule.max_seeds} seeds: at the measured spread ({basis})")
    tolerance = prediction_tolerance(s, b, n, rule.confidence)[0] * 100
    verdict = REPRODUCED if abs(difference) <= tolerance else (ABOVE if difference > 0 else BELOW)
    seeds = n + collapsed
    learned = f" ({n} that learn, {collapsed} collapsed)" if collapsed else ""
    reason = (
        f"{seeds} seeds{learned} would decide at the measured spread ({basis}): ±{tolerance:.2f} pp ≤ "
        f"{rule.max_tolerance_pp:g} pp at n = {n}, and the measured mean ({difference:+.2f} pp) would read {verdict}"
    )
    return need(seeds, MEASURED, reason, verdict)


@dataclass(frozen=True)
class EffectSides:
    """What the effect's count reads: seeds that learned and their sd per side, and the learned effect."""

    faithful_learned: int
    faithful_collapsed: int
    faithful_sd: float | None
    ablation_learned: int
    ablation_collapsed: int
    ablation_sd: float | None
    effect: float | None  # ablation - faithful on the seeds that learned (fraction)
    excludes_zero: bool  # its interval, at the counts now, already excludes zero


def effect_seeds_needed(
    framework: str, variant: str, ablation: str, sides: EffectSides, max_seeds: int, confidence: float
) -> SeedsNeeded | None:
    """For an effect whose interval (on the seeds that learned) spans zero; None when it is decided."""
    if sides.excludes_zero:
        return None
    completed = sides.ablation_learned + sides.ablation_collapsed

    def need(n: int | None, basis: str, reason: str, faithful_n: int | None = None) -> SeedsNeeded:
        seeds = None if n is None else n + sides.ablation_collapsed
        faithful_n = n if faithful_n is None else faithful_n
        faithful = None if faithful_n is None else faithful_n + sides.faithful_collapsed
        return SeedsNeeded(framework, variant, ablation, completed, seeds, faithful, basis, reason)

    if sides.faithful_sd is None or sides.ablation_sd is None or sides.effect is None:
        reason = "no spread measured yet: the interval needs 2 seeds that learn a side"
        return need(max(2, sides.ablation_learned), MINIMUM, reason, max(2, sides.faithful_learned))
    if sides.effect == 0:
        return need(None, NEVER, "never: the measured effect is exactly zero")
    start = max(sides.ablation_learned, sides.faithful_learned)
    n = smallest_effect_n(sides.ablation_sd, sides.faithful_sd, sides.effect, start, max_seeds, confidence)
    basis = f"sd {sides.ablation_sd * 100:.2f} pp ablation, {sides.faithful_sd * 100:.2f} pp faithful"
    if n is None:
        return need(None, BEYOND, f"more than {max_seeds} seeds a side: at the measured spread ({basis})")
    half = welch_half_width(sides.ablation_sd, sides.faithful_sd, n, confidence) * 100
    reason = (
        f"{n} seeds that learn a side would decide at the measured spread ({basis}): the interval "
        f"{sides.effect * 100:+.2f} ± {half:.2f} pp at n = {n} excludes zero"
    )
    return need(n, MEASURED, reason)


def seeds_needed_records(needs: Sequence[SeedsNeeded]) -> list[JsonObject]:
    """comparison.json's "seeds_needed": one object per undecided row or effect, the dataclass's fields."""
    return [asdict(n) for n in needs]


_TYPES: dict[str, tuple[type, ...]] = {
    "framework": (str,),
    "variant": (str,),
    "ablation": (str, type(None)),
    "completed": (int,),
    "seeds": (int, type(None)),
    "faithful_seeds": (int, type(None)),
    "basis": (str,),
    "reason": (str,),
    "would_read": (str, type(None)),
}


def read_seeds_needed(path: str | Path) -> tuple[SeedsNeeded, ...]:
    """comparison.json's "seeds_needed", each field checked; a bad entry fails naming the file and key."""
    document = read_json(path)
    records = document.get("seeds_needed") if isinstance(document, dict) else None
    if not isinstance(records, list):
        raise CnnreproError(f"{path}: 'seeds_needed' must be a list (a report from before issue 24?)")
    needs = []
    for i, record in enumerate(records):
        where = f"{path}: seeds_needed[{i}]"
        if not isinstance(record, dict) or set(record) != {f.name for f in fields(SeedsNeeded)}:
            raise CnnreproError(f"{where}: expected the keys {', '.join(_TYPES)}")
        for key, types in _TYPES.items():
            value = record[key]
            if not isinstance(value, types) or isinstance(value, bool):
                raise CnnreproError(f"{where}.{key}: {value!r} is not {' or '.join(t.__name__ for t in types)}")
        if record["basis"] not in BASES:
            raise CnnreproError(f"{where}.basis: {record['basis']!r} is not one of {', '.join(BASES)}")
        for key in ("completed", "seeds", "faithful_seeds"):
            if record[key] is not None and record[key] < 0:
                raise CnnreproError(f"{where}.{key}: {record[key]} is negative")
        if (record["seeds"] is None) != (record["basis"] in (BEYOND, NEVER, UNKNOWN)):
            raise CnnreproError(f"{where}.seeds: {record['seeds']!r} does not fit basis {record['basis']!r}")
        needs.append(SeedsNeeded(**record))
    return tuple(needs)
