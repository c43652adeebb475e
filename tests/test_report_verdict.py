"""The verdict rule (cnnrepro.report.verdict): the cases a wrong rule passes, tolerance scaling, parity by TOST,
and the evaluation-set size read from the runs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from cnnrepro.fsutil import read_json, write_json_atomic
from cnnrepro.params import PROJECT_ROOT, load_params
from cnnrepro.report.collect import collect_runs
from cnnrepro.report.evalsize import effective_images, evaluation_size
from cnnrepro.report.table import build_table
from cnnrepro.report.verdict import (
    ABOVE,
    BELOW,
    DIFFERENT,
    EQUIVALENT,
    INCONCLUSIVE,
    REPRODUCED,
    VerdictRule,
    binomial_sd,
    decide,
    parity,
    rule_text,
)

from .helpers_report import TEN_LABELS, settings, write_synthetic_run

RULE = VerdictRule()  # the shipped defaults; test_shipped_params_are_the_rule_defaults ties them to params.yaml


def seeds(*percent: float) -> dict[int, float]:
    return {seed: p / 100 for seed, p in enumerate(percent)}


# ---- the required cases (issue 13) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "documented", "images", "expected"),
    [
        # Dogs-vs-Cats, 1,000 validation images (the H200 runs of book-figures.md).
        (seeds(73.2, 71.5, 72.3), 0.71, 1000, REPRODUCED),  # baseline
        (seeds(83.2, 82.7, 81.6), 0.82, 1000, REPRODUCED),  # augmentation
        (seeds(83.2, 82.7, 81.6), 0.82, 914, REPRODUCED),  # the same, as its runs count: 1,600 draws of 1,000
        (seeds(98.04, 98.09, 98.21), 0.978, 10_000, REPRODUCED),  # mnist_dense, CPU
        (seeds(97.7, 97.8, 97.9), 0.9908, 10_000, BELOW),  # a dense-net result against the convnet's figure
        (seeds(99.5, 99.6, 99.55), 0.9908, 10_000, ABOVE),  # clearly above, tight seeds
        (seeds(76.0, 75.5, 76.4), 0.71, 1000, ABOVE),  # +5 pp on Dogs-vs-Cats
    ],
)
def test_decided_cases(values: dict[int, float], documented: float, images: int, expected: str) -> None:
    decision = decide(values, documented, images, RULE)
    assert decision.verdict == expected, decision.reason
    assert decision.difference_pp == pytest.approx((np.mean(list(values.values())) - documented) * 100)
    assert f"{decision.tolerance_pp:.2f} pp" in decision.reason


def test_two_seeds_far_below_are_never_reproduced() -> None:
    decision = decide(seeds(90, 92), 0.96, 1000, RULE)
    assert decision.verdict in (INCONCLUSIVE, BELOW)
    assert decision.verdict == INCONCLUSIVE and "2 completed seeds, the rule needs 3" in decision.reason


@pytest.mark.parametrize("collapsed", [10.0, 50.0, 70.0])
def test_a_collapsed_seed_is_not_reproduced(collapsed: float) -> None:
    # LeNet 80/81 and a third seed that fell to chance (or part way): the mean may land near 78.3 %.
    decision = decide(seeds(80, 81, collapsed), 0.783, 10_000, RULE)
    assert decision.verdict == INCONCLUSIVE
    assert decision.outlier is not None and decision.outlier.seed == 2
    assert f"seed 2 at {collapsed:.2f}%" in decision.reason


def test_a_collapsed_seed_among_more_seeds_is_still_found() -> None:
    decision = decide(seeds(72.1, 71.0, 72.8, 70.9, 50.0), 0.71, 1000, RULE)
    assert decision.verdict == INCONCLUSIVE and decision.outlier.seed == 4  # type: ignore[union-attr]


def test_seeds_too_spread_to_decide() -> None:
    # No single outlier, but a spread that would let any figure between ~60 and ~95 pass.
    decision = decide(seeds(70, 78, 86), 0.783, 10_000, RULE)
    assert decision.verdict == INCONCLUSIVE and decision.outlier is None
    assert decision.tolerance_pp > RULE.max_tolerance_pp and "too spread" in decision.reason


def test_tolerance_scales_with_the_evaluation_set() -> None:
    values = seeds(72.0, 72.1, 71.9)  # +1.0 pp, seeds that agree
    small, large = decide(values, 0.71, 1000, RULE), decide(values, 0.71, 10_000, RULE)
    assert (small.verdict, large.verdict) == (REPRODUCED, ABOVE)
    assert small.binomial_sd_pp == pytest.approx(100 * math.sqrt(0.71 * 0.29 / 1000))
    assert large.binomial_sd_pp == pytest.approx(small.binomial_sd_pp / math.sqrt(10))
    # MNIST's 10,000 test images: ~0.1 pp; Dogs-vs-Cats' 1,000 validation images: ~1.4 pp.
    assert binomial_sd(0.99, 10_000) * 100 == pytest.approx(0.0995, abs=1e-4)
    assert binomial_sd(0.71, 1000) * 100 == pytest.approx(1.435, abs=1e-3)


def test_tolerance_is_the_prediction_interval_of_one_new_run() -> None:
    values = seeds(73.2, 71.5, 72.3)
    n, s, b = 3, np.std(list(values.values()), ddof=1), binomial_sd(0.71, 1000)
    seed_var, total = s**2 * (1 + 1 / n), s**2 * (1 + 1 / n) + b**2
    df = total**2 / (seed_var**2 / (n - 1))
    expected = scipy_stats.t.ppf(0.975, df) * math.sqrt(total) * 100
    decision = decide(values, 0.71, 1000, RULE)
    assert decision.tolerance_pp == pytest.approx(expected)
    assert decision.df == pytest.approx(df)
    # More seeds with the same spread narrow it (the mean's part and the t quantile), never below t * sqrt(s^2 + b^2).
    more = decide(seeds(73.2, 71.5, 72.3, 73.2, 71.5, 72.3), 0.71, 1000, RULE)
    assert more.tolerance_pp < decision.tolerance_pp


def test_identical_seeds_fall_back_to_the_binomial_error() -> None:
    decision = decide(seeds(99.0, 99.0, 99.0), 0.9908, 10_000, RULE)
    assert decision.seed_sd_pp == 0 and math.isinf(decision.df)  # type: ignore[arg-type]
    assert decision.tolerance_pp == pytest.approx(1.959964 * binomial_sd(0.9908, 10_000) * 100, rel=1e-5)
    assert decision.verdict == REPRODUCED  # -0.08 pp inside ±0.19 pp


def test_min_seeds_is_a_parameter() -> None:
    values = seeds(72.0, 71.6)
    assert decide(values, 0.71, 1000, RULE).verdict == INCONCLUSIVE
    assert decide(values, 0.71, 1000, VerdictRule(min_seeds=2)).verdict == REPRODUCED


def test_unknown_evaluation_size_is_inconclusive() -> None:
    decision = decide(seeds(73.2, 71.5, 72.3), 0.71, None, RULE)
    assert decision.verdict == INCONCLUSIVE and "evaluation-set size unknown" in decision.reason


def test_rule_text_states_the_parameters_it_runs_with() -> None:
    text = " ".join(rule_text(VerdictRule(confidence=0.9, min_seeds=4, max_tolerance_pp=3.0, parity_margin_sd=1.5)))
    assert "90% prediction interval" in text and "fewer than 4 seeds completed" in text
    assert "tolerance exceeds 3 pp" in text and "±1.5 binomial sd" in text and "80% interval" in text


def test_shipped_params_are_the_rule_defaults() -> None:
    params = load_params(PROJECT_ROOT / "params.yaml")
    assert VerdictRule.from_params(params["report"]) == VerdictRule()


# ---- framework parity: equivalence, not "p >= 0.05" ---------------------------------------------------


def test_parity_equivalent_different_and_inconclusive() -> None:
    torch = [0.720, 0.710, 0.730]
    assert parity([0.715, 0.720, 0.725], torch, 1000, RULE, "torch").verdict == EQUIVALENT
    assert parity([0.80, 0.81, 0.805], torch, 1000, RULE, "torch").verdict == DIFFERENT
    # Two noisy sets whose difference test would NOT reject (p >= 0.05): not evidence of agreement.
    noisy = [0.64, 0.75, 0.70]
    assert scipy_stats.ttest_ind(noisy, torch, equal_var=False).pvalue >= 0.05
    assert parity(noisy, torch, 1000, RULE, "torch").verdict == INCONCLUSIVE
    assert parity(torch[:2], torch, 1000, RULE, "torch").verdict == INCONCLUSIVE  # 2 seeds < 3


def test_parity_margin_scales_with_the_evaluation_set() -> None:
    torch, keras = [0.9810, 0.9805, 0.9815], [0.9790, 0.9795, 0.9785]  # -0.2 pp, tight
    assert parity(keras, torch, 1000, RULE, "torch").verdict == EQUIVALENT  # margin ±0.87 pp
    assert parity(keras, torch, 10_000, RULE, "torch").verdict != EQUIVALENT  # margin ±0.27 pp


def test_parity_tost_p_value_matches_two_shifted_welch_tests() -> None:
    a, b = [0.715, 0.720, 0.728], [0.720, 0.710, 0.730]
    result = parity(a, b, 1000, RULE, "torch")
    margin = result.margin_pp / 100  # type: ignore[operator]
    lower = scipy_stats.ttest_ind(np.array(a) + margin, b, equal_var=False, alternative="greater").pvalue
    upper = scipy_stats.ttest_ind(np.array(a) - margin, b, equal_var=False, alternative="less").pvalue
    assert result.p_value == pytest.approx(max(lower, upper))
    assert (result.p_value < 0.05) == (result.verdict == EQUIVALENT)


# ---- the evaluation-set size comes from the runs ------------------------------------------------------


def test_effective_images_of_cycling_draws() -> None:
    assert effective_images(1000, 1000) == 1000
    assert effective_images(800, 1000) == 800
    assert effective_images(1600, 1000) == 914  # 600 images counted twice: 1600^2 / (600*4 + 400)
    assert effective_images(3000, 1000) == 1000  # every image three times: still 1,000 independent images


def test_evaluation_size_from_confusion_and_config(tmp_path: Path) -> None:
    for seed in range(3):
        write_synthetic_run(tmp_path, "torch", "mnist_convnet", seed, test=0.99, labels=TEN_LABELS)
        write_synthetic_run(tmp_path, "torch", "baseline", seed, val=0.72, test=0.72)
        write_synthetic_run(tmp_path, "torch", "augmentation", seed, val=0.82, test=0.82)
        write_synthetic_run(tmp_path, "torch", "feature_extraction", seed, val=0.9, test=0.9)
    st = settings(["mnist_convnet", "baseline", "augmentation", "feature_extraction"])
    slots = collect_runs(tmp_path, st)

    def size(variant: str, metric: str) -> int | None:
        return evaluation_size([s for s in slots if s.variant == variant], metric, 500).images

    assert size("mnist_convnet", "test_accuracy") == 10_000  # the test confusion matrix
    assert size("baseline", "test_accuracy") == 1000
    assert size("baseline", "val_accuracy") == 1000  # 50 steps x 20 over 2 x 500 images
    assert size("augmentation", "val_accuracy") == 914  # 50 x 32 draws over 1,000 images
    assert size("feature_extraction", "val_accuracy") == 1000  # every validation image once
    assert evaluation_size([s for s in slots if s.variant == "baseline"], "val_accuracy", None).images == 1000


def test_evaluation_size_follows_a_run_that_evaluated_fewer_images(tmp_path: Path) -> None:
    for seed in range(3):
        write_synthetic_run(tmp_path, "torch", "mnist_dense", seed, test=0.98, labels=TEN_LABELS)
    # Seed 2 was scored on a 2,000-image test set (e.g. a smoke run): the smallest set counts.
    small = tmp_path / "torch" / "mnist_dense" / "seed2" / "artifacts" / "confusion.json"
    confusion = read_json(small)
    write_json_atomic(small, {**confusion, "matrix": [[v // 5 for v in row] for row in confusion["matrix"]]})
    st = settings(["mnist_dense"])
    (row,) = build_table(collect_runs(tmp_path, st), st)
    assert row.evaluation.images == 2000 and "seeds differ" in row.evaluation.source
    assert "2,000 images" in row.verdict_detail
