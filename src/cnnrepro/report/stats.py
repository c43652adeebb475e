"""Summary statistics over seeds (mean, sample sd, Student-t interval of the mean); an accuracy's binomial sd."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as scipy_stats


@dataclass(frozen=True)
class SeedSummary:
    """One metric over the seeds that produced it. std and the interval need at least two values."""

    n: int
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None

    @property
    def has_interval(self) -> bool:
        return self.ci_low is not None and self.ci_high is not None

    def contains(self, value: float) -> bool:
        return self.has_interval and self.ci_low <= value <= self.ci_high  # type: ignore[operator]


EMPTY = SeedSummary(n=0, mean=None, std=None, ci_low=None, ci_high=None)


def summarize(values: Sequence[float], confidence: float) -> SeedSummary:
    """Mean, sample std (ddof 1) and the two-sided Student-t interval of the mean at `confidence`."""
    n = len(values)
    if n == 0:
        return EMPTY
    mean = math.fsum(values) / n
    if n == 1:
        return SeedSummary(n=1, mean=mean, std=None, ci_low=None, ci_high=None)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half_width = float(scipy_stats.t.ppf((1 + confidence) / 2, df=n - 1)) * std / math.sqrt(n)
    return SeedSummary(n=n, mean=mean, std=std, ci_low=mean - half_width, ci_high=mean + half_width)


def binomial_sd(accuracy: float, images: int) -> float:
    """Standard deviation (fraction) of an accuracy measured on `images` independent images."""
    return math.sqrt(accuracy * (1 - accuracy) / images)
