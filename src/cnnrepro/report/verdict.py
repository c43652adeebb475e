"""The verdict rule: does a measured accuracy reproduce a documented one, and do two frameworks agree?

The documented figure is ONE run of the original, with its own seed noise and the sampling noise of
its evaluation set. So the question is whether that one draw is a plausible member of the
distribution the measured seeds come from: a prediction interval for one new run,

    tolerance = t(df) * sqrt(s^2 * (1 + 1/n) + p(1 - p) / N)

with s the between-seed standard deviation of the n measured seeds that learned, p the documented
accuracy and N the evaluation set's (effective) number of images; df by Welch-Satterthwaite, since only
the seed term is estimated (the binomial one is known). The binomial term is what scales the tolerance
to the evaluation set (0.1 pp on 10,000 MNIST images, 1.4 pp on 1,000 Dogs-vs-Cats validation images),
and it floors the tolerance when a few seeds happen to agree closely.

Seeds that did not learn (cnnrepro.report.collapse: at chance, or a training loss that never fell)
are left out of the mean and s, and named in the reason ("1 of 4 seeds collapsed: seed 2 at 10.00%,
chance"). When that leaves fewer than `min_seeds` learned seeds the row is "inconclusive" (the
report says how many more seeds would decide it), except when no seed learned at all out of at least
`min_seeds`: then the port does not reproduce the figure, and the verdict is "below".

The rule refuses to decide ("inconclusive", with why) when fewer than `min_seeds` seeds learned, when
the evaluation-set size is unknown, or when the seeds are so spread that the tolerance exceeds
`max_tolerance_pp` (then any figure nearby would pass, which says nothing). There is no outlier rule
any more: it measured a seed's distance in sds estimated from the n - 1 OTHER seeds, with 3 seeds
from two, and an sd from two values is so uncertain (1 degree of freedom: a Cauchy-tailed ratio)
that ordinary spread reads as an outlier: LeNet's 79.36 / 82.33 / 82.12% gave "7 sd", and of normal
3-seed sets at that spread (sd 1.66 pp, binomial floor 0.41 pp) about one in four is past 5 "sd".
What it was meant to catch, a collapsed run, is now caught by what a collapse is, and a wide but
ordinary spread by `max_tolerance_pp`.

Framework parity is an equivalence test (TOST with Welch's t) on the seeds that learned: "equivalent"
only when the (1 - 2 alpha) interval of the difference lies inside +-margin, "different" when it lies
wholly outside, "inconclusive" otherwise; the margin is `parity_margin_sd` binomial standard
deviations of the evaluation set. A high p-value of a difference test is never read as agreement.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats as scipy_stats

from cnnrepro.mappings import JsonObject
from cnnrepro.report.collapse import Collapse, collapse_text
from cnnrepro.report.stats import binomial_sd

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
    parity_margin_sd: float = 2.0
    collapse_sd: float = 3.0  # at chance: at most chance + this many binomial sd (cnnrepro.report.collapse)
    collapse_loss_margin: float = 0.02  # loss never fell: last epoch above (1 - this) x ln(classes)
    max_seeds: int = 50  # seeds needed are searched up to this; beyond it the report says "more than"

    @classmethod
    def from_params(cls, report: Mapping[str, Any]) -> VerdictRule:
        return cls(
            confidence=float(report["confidence"]),
            min_seeds=int(report["min_seeds"]),
            max_tolerance_pp=float(report["max_tolerance_pp"]),
            parity_margin_sd=float(report["parity_margin_sd"]),
            collapse_sd=float(report["collapse_sd"]),
            collapse_loss_margin=float(report["collapse_loss_margin"]),
            max_seeds=int(report["max_seeds"]),
        )


@dataclass(frozen=True)
class Decision:
    """One verdict with every number it used. Accuracies are fractions; *_pp are percentage points.

    n counts the seeds that learned (the statistics use them); completed counts every completed seed,
    the collapsed ones included."""

    verdict: str
    reason: str  # one line
    n: int
    difference_pp: float | None
    tolerance_pp: float | None = None
    seed_sd_pp: float | None = None
    binomial_sd_pp: float | None = None
    df: float | None = None
    collapsed: tuple[Collapse, ...] = ()
    completed: int = 0
    mean: float | None = None  # over the n seeds that learned (fraction)


def t_quantile(confidence_two_sided: float, df: float) -> float:
    q = (1 + confidence_two_sided) / 2
    return float(scipy_stats.norm.ppf(q) if math.isinf(df) else scipy_stats.t.ppf(q, df))


def prediction_tolerance(seed_sd: float, binomial: float, n: int, confidence: float) -> tuple[float, float]:
    """(tolerance, df) of the prediction interval of one new run from n seeds (fractions in, fraction out)."""
    seed_var = seed_sd**2 * (1 + 1 / n)  # one new run (the documented draw) minus the mean of n
    total = seed_var + binomial**2
    df = math.inf if seed_var == 0 else total**2 / (seed_var**2 / (n - 1))
    return t_quantile(confidence, df) * math.sqrt(total), df


def _seeds(count: int, what: str) -> str:
    return f"{count} {what} seed{'s' if count != 1 else ''}"


def decide(
    values: Mapping[int, float],
    documented: float,
    images: int | None,
    rule: VerdictRule,
    collapsed: Sequence[Collapse] = (),
) -> Decision:
    """The verdict for per-seed accuracies `values` (seed -> fraction) against one documented draw;
    `collapsed` names the seeds among them that did not learn (cnnrepro.report.collapse.find_collapses)."""
    dropped = {c.seed for c in collapsed}
    learned = [v for seed, v in values.items() if seed not in dropped]
    completed, n = len(values), len(learned)
    collapsed = tuple(collapsed)
    head = f"{collapse_text(collapsed, completed)}; " if collapsed else ""
    if not learned:
        mean_all = math.fsum(values.values()) / completed if completed else None
        difference = None if mean_all is None else (mean_all - documented) * 100
        if completed >= rule.min_seeds:
            reason = f"{head}none learned: the port does not reach the documented {documented * 100:.2f}% here"
            return Decision(BELOW, reason, 0, difference, collapsed=collapsed, completed=completed)
        reason = f"{head}no seed learned, and the rule needs {rule.min_seeds} completed"
        return Decision(INCONCLUSIVE, reason, 0, difference, collapsed=collapsed, completed=completed)
    mean = math.fsum(learned) / n
    difference_pp = (mean - documented) * 100
    binomial = binomial_sd(documented, images) if images else None
    seed_sd = statistics.stdev(learned) if n > 1 else None
    numbers: JsonObject = dict(
        mean=mean,
        seed_sd_pp=None if seed_sd is None else seed_sd * 100,
        binomial_sd_pp=None if binomial is None else binomial * 100,
        collapsed=collapsed,
        completed=completed,
    )
    if n < rule.min_seeds:
        reason = (
            f"{head}{_seeds(n, 'learned' if collapsed else 'completed')}, the rule needs {rule.min_seeds} "
            f"(mean {difference_pp:+.2f} pp so far)"
        )
        return Decision(INCONCLUSIVE, reason, n, difference_pp, **numbers)
    if binomial is None or seed_sd is None:
        reason = f"{head}evaluation-set size unknown (no confusion.json or config)"
        return Decision(INCONCLUSIVE, reason, n, difference_pp, **numbers)
    tolerance, df = prediction_tolerance(seed_sd, binomial, n, rule.confidence)
    tolerance_pp = tolerance * 100
    numbers |= dict(tolerance_pp=tolerance_pp, df=df)
    basis = f"seed sd {seed_sd * 100:.2f} pp, binomial sd {binomial * 100:.2f} pp on {images:,} images"
    if tolerance_pp > rule.max_tolerance_pp:
        reason = f"{head}seeds too spread: ±{tolerance_pp:.2f} pp tolerance > {rule.max_tolerance_pp:g} pp ({basis})"
        return Decision(INCONCLUSIVE, reason, n, difference_pp, **numbers)
    inside = abs(difference_pp) <= tolerance_pp
    verdict = REPRODUCED if inside else (ABOVE if difference_pp > 0 else BELOW)
    relation = "within" if inside else "outside"
    reason = f"{head}{difference_pp:+.2f} pp, {relation} ±{tolerance_pp:.2f} pp ({basis})"
    return Decision(verdict, reason, n, difference_pp, **numbers)


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
        f"p(1 − p)/N), the {level} prediction interval of one new run: s = sd between the n seeds that learned, "
        "p = documented accuracy, N = images in the evaluation set (from the runs), t with Welch-Satterthwaite "
        "degrees of freedom. **above** / **below**: outside it, by the sign.",
        f"**Collapsed** seeds did not learn: accuracy at most chance + {rule.collapse_sd:g} binomial sd (chance = "
        "the largest class's share of the evaluation set), or a last-epoch training loss above "
        f"{1 - rule.collapse_loss_margin:g} × ln(classes), the loss of knowing nothing. They are named beside the "
        "verdict and left out of the mean and s; ordinary spread is spread and widens the tolerance.",
        f"**inconclusive** when fewer than {rule.min_seeds} seeds completed (or learned); or when the tolerance "
        f"exceeds {rule.max_tolerance_pp:g} pp (seeds too spread to decide). With at least {rule.min_seeds} "
        "seeds and none learned: **below**. Each inconclusive row says how many seeds would decide it at the "
        f"measured spread: the smallest n (searched up to {rule.max_seeds}) whose tolerance, with the same s, "
        "fits the limit, and the verdict that n gives at the measured mean.",
        "**not comparable**: the runs depart from the documented settings in a way that changes what is measured "
        "(an override of epochs, steps, batch size, learning rate, training images or validation steps; other "
        "VGG16 weights or input; other augmentation semantics); the rule's numbers are still given. Departures "
        "that do not change what is measured (arithmetic precision) are named beside the verdict.",
        "**not run**: no seed completed and a run recorded why it could not run. **failed**: no seed completed "
        "and a run failed. **missing**: no outputs yet. **no documented figure**: the source documents no "
        "accuracy. Partial seeds: statistics on the seeds that exist, the others named beside the verdict.",
        f"Parity (2+ frameworks): two one-sided Welch t-tests (TOST, alpha {1 - rule.confidence:.2g}): "
        f"**equivalent** when the {two_sided} interval of the difference lies inside ±{rule.parity_margin_sd:g} "
        "binomial sd of the evaluation set, **different** when it lies wholly outside, else **inconclusive** "
        f"(and always with fewer than {rule.min_seeds} learned seeds a side).",
    ]
