"""The verdict rule: does a measured accuracy reproduce a documented one, and do two frameworks agree?

The documented figure is ONE run of the original, with its own seed noise and the sampling noise of
its evaluation set. So the question is whether that one draw is a plausible member of the
distribution the measured seeds come from: a prediction interval for one new run,

    tolerance = t(df) * sqrt(s^2 * (1 + 1/n) + p(1 - p) / N)

with s the between-seed standard deviation of the n measured seeds, p the documented accuracy and N
the evaluation set's (effective) number of images; df by Welch-Satterthwaite, since only the seed
term is estimated (the binomial one is known). The binomial term is what scales the tolerance to
the evaluation set (0.1 pp on 10,000 MNIST images, 1.4 pp on 1,000 Dogs-vs-Cats validation images),
and it floors the tolerance when a few seeds happen to agree closely.

The rule refuses to decide ("inconclusive", with why) when fewer than `min_seeds` seeds completed,
when one seed lies far outside the others (a collapsed run: the mean of a bimodal set describes
neither mode), or when the seeds are so spread that the tolerance exceeds `max_tolerance_pp`
(then any figure nearby would pass, which says nothing).

Framework parity is an equivalence test (TOST with Welch's t): "equivalent" only when the
(1 - 2 alpha) interval of the difference lies inside +-margin, "different" when it lies wholly
outside, "inconclusive" otherwise; the margin is `parity_margin_sd` binomial standard deviations of
the evaluation set. A high p-value of a difference test is never read as agreement.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats as scipy_stats

REPRODUCED = "reproduced"
ABOVE = "above"
BELOW = "below"
INCONCLUSIVE = "inconclusive"
EQUIVALENT = "equivalent"
DIFFERENT = "different"


@dataclass(frozen=True)
class VerdictRule:
    """params.yaml `report`: the rule's parameters, printed in the report with the numbers they gave."""

    confidence: float = 0.95
    min_seeds: int = 3
    max_tolerance_pp: float = 5.0
    outlier_sd: float = 5.0
    parity_margin_sd: float = 2.0

    @classmethod
    def from_params(cls, report: Mapping[str, Any]) -> VerdictRule:
        return cls(
            confidence=float(report["confidence"]),
            min_seeds=int(report["min_seeds"]),
            max_tolerance_pp=float(report["max_tolerance_pp"]),
            outlier_sd=float(report["outlier_sd"]),
            parity_margin_sd=float(report["parity_margin_sd"]),
        )


@dataclass(frozen=True)
class Outlier:
    seed: int
    value: float  # fraction
    others_median: float  # fraction
    distance_sd: float  # |value - others_median| in units of max(sd of the others, binomial sd)


@dataclass(frozen=True)
class Decision:
    """One verdict with every number it used. Accuracies are fractions; *_pp are percentage points."""

    verdict: str
    reason: str  # one line
    n: int
    difference_pp: float | None
    tolerance_pp: float | None = None
    seed_sd_pp: float | None = None
    binomial_sd_pp: float | None = None
    df: float | None = None
    outlier: Outlier | None = None


def binomial_sd(accuracy: float, images: int) -> float:
    """Standard deviation (fraction) of an accuracy measured on `images` independent images."""
    return math.sqrt(accuracy * (1 - accuracy) / images)


def _t(confidence_two_sided: float, df: float) -> float:
    q = (1 + confidence_two_sided) / 2
    return float(scipy_stats.norm.ppf(q) if math.isinf(df) else scipy_stats.t.ppf(q, df))


def find_outlier(values: Mapping[int, float], floor_sd: float, outlier_sd: float) -> Outlier | None:
    """The seed farthest from the median of the OTHER seeds, if farther than `outlier_sd` of their spread.

    The spread is the others' sample sd, floored at the binomial sd, so two seeds that happen to agree
    to the last image do not turn an ordinary third one into an outlier.
    """
    worst: Outlier | None = None
    for seed, value in values.items():
        others = [v for s, v in values.items() if s != seed]
        if not others:
            return None
        scale = max(statistics.stdev(others) if len(others) > 1 else 0.0, floor_sd)
        median = statistics.median(others)
        distance = abs(value - median) / scale if scale > 0 else math.inf
        if worst is None or distance > worst.distance_sd:
            worst = Outlier(seed, value, median, distance)
    return worst if worst is not None and worst.distance_sd > outlier_sd else None


def decide(values: Mapping[int, float], documented: float, images: int | None, rule: VerdictRule) -> Decision:
    """The verdict for per-seed accuracies `values` (seed -> fraction) against one documented draw."""
    n = len(values)
    mean = math.fsum(values.values()) / n if n else None
    difference_pp = None if mean is None else (mean - documented) * 100
    if n < rule.min_seeds:
        tail = f" (mean {difference_pp:+.2f} pp so far)" if difference_pp is not None else ""
        reason = f"{n} completed seed{'s' if n != 1 else ''}, the rule needs {rule.min_seeds}{tail}"
        return Decision(INCONCLUSIVE, reason, n, difference_pp)
    if not images:
        return Decision(INCONCLUSIVE, "evaluation-set size unknown (no confusion.json or config)", n, difference_pp)
    binomial = binomial_sd(documented, images)
    outlier = find_outlier(values, binomial, rule.outlier_sd)
    if outlier is not None:
        reason = (
            f"seed {outlier.seed} at {outlier.value * 100:.2f}% is {outlier.distance_sd:.0f} sd from the other seeds' "
            f"median {outlier.others_median * 100:.2f}%: an outlier (a collapsed run?) that a mean would hide"
        )
        return Decision(INCONCLUSIVE, reason, n, difference_pp, binomial_sd_pp=binomial * 100, outlier=outlier)
    seed_sd = statistics.stdev(values.values())
    seed_var = seed_sd**2 * (1 + 1 / n)  # one new run (the documented draw) minus the mean of n
    total = seed_var + binomial**2
    df = math.inf if seed_var == 0 else total**2 / (seed_var**2 / (n - 1))
    tolerance_pp = _t(rule.confidence, df) * math.sqrt(total) * 100
    numbers = dict(
        tolerance_pp=tolerance_pp, seed_sd_pp=seed_sd * 100, binomial_sd_pp=binomial * 100, df=df, outlier=None
    )
    basis = f"seed sd {seed_sd * 100:.2f} pp, binomial sd {binomial * 100:.2f} pp on {images:,} images"
    assert difference_pp is not None
    if tolerance_pp > rule.max_tolerance_pp:
        reason = f"seeds too spread: ±{tolerance_pp:.2f} pp tolerance > {rule.max_tolerance_pp:g} pp ({basis})"
        return Decision(INCONCLUSIVE, reason, n, difference_pp, **numbers)  # type: ignore[arg-type]
    inside = abs(difference_pp) <= tolerance_pp
    verdict = REPRODUCED if inside else (ABOVE if difference_pp > 0 else BELOW)
    relation = "within" if inside else "outside"
    reason = f"{difference_pp:+.2f} pp, {relation} ±{tolerance_pp:.2f} pp ({basis})"
    return Decision(verdict, reason, n, difference_pp, **numbers)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ParityDecision:
    """A framework against the reference framework on the same variant (differences in pp)."""

    versus: str
    verdict: str  # equivalent | different | inconclusive
    reason: str
    difference_pp: float
    margin_pp: float | None = None
    ci_low_pp: float | None = None
    ci_high_pp: float | None = None
    p_value: float | None = None  # TOST: the larger of the two one-sided p-values


def parity(
    values: Sequence[float], reference: Sequence[float], images: int | None, rule: VerdictRule, versus: str
) -> ParityDecision:
    """TOST equivalence of two sets of per-seed accuracies within ±(parity_margin_sd binomial sd)."""
    difference = math.fsum(values) / len(values) - math.fsum(reference) / len(reference)
    difference_pp = difference * 100
    if min(len(values), len(reference)) < rule.min_seeds:
        reason = f"needs {rule.min_seeds} seeds on each side, has {len(values)} and {len(reference)}"
        return ParityDecision(versus, INCONCLUSIVE, reason, difference_pp)
    if not images:
        return ParityDecision(versus, INCONCLUSIVE, "evaluation-set size unknown", difference_pp)
    p_ref = math.fsum(reference) / len(reference)
    margin = rule.parity_margin_sd * binomial_sd(p_ref, images)
    alpha = 1 - rule.confidence
    var_a = statistics.variance(values) / len(values)
    var_b = statistics.variance(reference) / len(reference)
    se = math.sqrt(var_a + var_b)
    if se == 0:
        low = high = difference
        p_value = 0.0 if abs(difference) < margin else 1.0
    else:
        df = (var_a + var_b) ** 2 / (var_a**2 / (len(values) - 1) + var_b**2 / (len(reference) - 1))
        half = float(scipy_stats.t.ppf(1 - alpha, df)) * se
        low, high = difference - half, difference + half
        p_lower = float(scipy_stats.t.sf((difference + margin) / se, df))  # H0: difference <= -margin
        p_upper = float(scipy_stats.t.cdf((difference - margin) / se, df))  # H0: difference >= +margin
        p_value = max(p_lower, p_upper)
    level = f"{(1 - 2 * alpha) * 100:g}%"
    interval = f"{level} CI [{low * 100:+.2f}, {high * 100:+.2f}] pp vs margin ±{margin * 100:.2f} pp"
    if -margin < low and high < margin:
        verdict = EQUIVALENT
    elif low > margin or high < -margin:
        verdict = DIFFERENT
    else:
        verdict = INCONCLUSIVE
    return ParityDecision(
        versus, verdict, f"{difference_pp:+.2f} pp; {interval}", difference_pp, margin * 100, low * 100, high * 100,
        p_value,
    )  # fmt: skip


def rule_text(rule: VerdictRule) -> list[str]:
    """The rule in words, with its parameters; each row's reason then gives the numbers it used."""
    level = f"{rule.confidence * 100:g}%"
    two_sided = f"{(1 - 2 * (1 - rule.confidence)) * 100:g}%"
    return [
        "The documented figure is one run of the original: it carries its own seed noise and the sampling "
        "noise of its evaluation set. The rule asks whether that one draw fits the measured seeds.",
        f"**reproduced**: |measured mean − documented| ≤ tolerance, where tolerance = t × √(s²(1 + 1/n) + "
        f"p(1 − p)/N), the {level} prediction interval of one new run: s = sd between the n measured seeds, "
        "p = documented accuracy, N = images in the evaluation set (from the runs), t with Welch-Satterthwaite "
        "degrees of freedom. **above** / **below**: outside it, by the sign.",
        f"**inconclusive** when fewer than {rule.min_seeds} seeds completed; when one seed lies more than "
        f"{rule.outlier_sd:g} sd (of the other seeds, at least the binomial sd) from the other seeds' median "
        f"(a collapsed run, which a mean would hide); or when the tolerance exceeds {rule.max_tolerance_pp:g} pp "
        "(seeds too spread to decide).",
        "**not run**: no seed completed and a run recorded why it could not run. **failed**: no seed completed "
        "and a run failed. **missing**: no outputs yet. **no documented figure**: the source documents no "
        "accuracy. Partial seeds: statistics on the seeds that exist, the others named beside the verdict.",
        f"Parity (2+ frameworks): two one-sided Welch t-tests (TOST, alpha {1 - rule.confidence:.2g}): "
        f"**equivalent** when the {two_sided} interval of the difference lies inside ±{rule.parity_margin_sd:g} "
        "binomial sd of the evaluation set, **different** when it lies wholly outside, else **inconclusive** "
        f"(and always with fewer than {rule.min_seeds} seeds a side).",
    ]
