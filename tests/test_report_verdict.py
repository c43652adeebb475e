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
from cnnrepro.report.collapse import CHANCE, FLAT_LOSS, Collapse, find_collapse, find_collapses
from cnnrepro.report.collect import collect_runs
from cnnrepro.report.evalsize import effective_images, evaluation_size
from cnnrepro.report.seeds_needed import (
    BEYOND,
    MEASURED,
    MINIMUM,
    NEVER,
    EffectSides,
    effect_seeds_needed,
    row_seeds_needed,
)
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
from cnnrepro.run_outputs import load_run

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


def test_the_lenet_triple_is_spread_not_an_outlier() -> None:
    # Issue 24: 79.36 / 82.33 / 82.12 on Fashion-MNIST's 10,000 test images against d2l's 78.3%. The old
    # outlier rule called seed 0 "7 sd" from the others (an sd from two seeds); it is ordinary spread.
    values = seeds(79.36, 82.33, 82.12)
    decision = decide(values, 0.783, 10_000, RULE)
    assert decision.verdict == INCONCLUSIVE and decision.collapsed == ()
    assert "outlier" not in decision.reason and decision.reason.startswith("seeds too spread: ±7.76 pp")
    s, b = np.std(list(values.values()), ddof=1), math.sqrt(0.783 * 0.217 / 10_000)
    total = s**2 * (4 / 3) + b**2
    df = total**2 / ((s**2 * 4 / 3) ** 2 / 2)
    assert decision.tolerance_pp == pytest.approx(scipy_stats.t.ppf(0.975, df) * math.sqrt(total) * 100)
    assert decision.seed_sd_pp == pytest.approx(s * 100)  # the spread feeds the tolerance


def test_a_wide_but_ordinary_spread_is_inconclusive_not_collapsed() -> None:
    # LeNet 80/81 and a third seed part way down: no collapse (70% is far above chance), only spread.
    decision = decide(seeds(80, 81, 70), 0.783, 10_000, RULE)
    assert decision.verdict == INCONCLUSIVE and "too spread" in decision.reason
    decision = decide(seeds(70, 78, 86), 0.783, 10_000, RULE)
    assert decision.verdict == INCONCLUSIVE and decision.tolerance_pp > RULE.max_tolerance_pp


def test_collapsed_seeds_are_left_out_and_named() -> None:
    values = seeds(80.4, 80.9, 10.0, 80.6)
    collapsed = (Collapse(2, 0.10, CHANCE, "chance 10.00% (largest class of 10,000 test images)"),)
    decision = decide(values, 0.783, 10_000, RULE, collapsed)
    learned = [0.804, 0.809, 0.806]
    assert decision.n == 3 and decision.completed == 4
    assert decision.difference_pp == pytest.approx((np.mean(learned) - 0.783) * 100)
    assert decision.seed_sd_pp == pytest.approx(np.std(learned, ddof=1) * 100)
    assert decision.reason.startswith("1 of 4 seeds collapsed: seed 2 at 10.00%, chance; +2.33 pp, outside ±")
    assert decision.verdict == ABOVE  # decided on the three that learned
    # The same seeds without naming the collapse: the mean and spread would hide it in a wide tolerance.
    assert decide(values, 0.783, 10_000, RULE).verdict == INCONCLUSIVE


def test_collapses_that_leave_too_few_seeds_are_inconclusive_and_none_learned_is_below() -> None:
    one = (Collapse(2, 0.10, CHANCE, "chance"),)
    decision = decide(seeds(80, 81, 10), 0.783, 10_000, RULE, one)
    assert decision.verdict == INCONCLUSIVE and "2 learned seeds, the rule needs 3" in decision.reason
    every = tuple(Collapse(s, 0.1, CHANCE, "chance") for s in range(3))
    assert decide(seeds(10, 10, 10), 0.783, 10_000, RULE, every).verdict == BELOW
    assert decide(seeds(10, 10), 0.783, 10_000, RULE, every[:2]).verdict == INCONCLUSIVE  # 2 < min_seeds


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


# ---- the collapse rule (cnnrepro.report.collapse), on run directories written through the run contract ------


def collapse_of(tmp_path: Path, accuracy: float, *, labels=TEN_LABELS, losses=None, matrix=None, epochs=4):
    """Write one completed seed and judge it with the shipped rule."""
    run = write_synthetic_run(tmp_path, "torch", "lenet", 0, test=accuracy, labels=labels, losses=losses, epochs=epochs)
    if matrix is not None:
        write_json_atomic(
            run / "artifacts" / "confusion.json", {"labels": list(labels), "matrix": matrix, "split": "test"}
        )
    record = load_run(run)
    return find_collapse(0, accuracy, record, "test_accuracy", 10_000, RULE.collapse_sd, RULE.collapse_loss_margin)


def test_chance_is_chance_plus_three_binomial_sd(tmp_path: Path) -> None:
    # 10 balanced classes on 10,000 images: chance 10%, sd 0.30 pp, so up to 10.90% is "at chance".
    threshold = 0.1 + 3 * math.sqrt(0.1 * 0.9 / 10_000)
    at_chance = collapse_of(tmp_path / "a", 0.1000)
    assert at_chance is not None and at_chance.kind == CHANCE
    assert at_chance.text() == "seed 0 at 10.00%, chance"
    assert "largest class of 10,000 test images" in at_chance.detail and f"{threshold * 100:.2f}%" in at_chance.detail
    assert collapse_of(tmp_path / "b", threshold - 1e-4) is not None
    assert collapse_of(tmp_path / "c", threshold + 1e-3) is None  # 11.00%: learned a little, which is spread
    assert collapse_of(tmp_path / "d", 0.05) is not None  # below chance did not learn either


def test_chance_is_the_largest_class_of_the_evaluation_set(tmp_path: Path) -> None:
    # MNIST-like test set: 1,135 of 10,000 images in one class. Predicting that class scores 11.35%, which a
    # 1/classes rule (threshold 10.90%) would call learned.
    per_class = [985, 1135] + [985] * 8
    matrix = [[count if j == 1 else 0 for j in range(10)] for count in per_class]  # every image called a 1
    collapsed = collapse_of(tmp_path, 0.1135, matrix=matrix)
    assert collapsed is not None and "chance 11.35%" in collapsed.detail


def test_binary_chance_is_fifty_percent(tmp_path: Path) -> None:
    # 1,000 images at 50%: sd 1.58 pp, threshold 54.74%.
    assert collapse_of(tmp_path / "a", 0.50, labels=("cat", "dog")) is not None
    assert collapse_of(tmp_path / "b", 0.56, labels=("cat", "dog")) is None


def test_a_training_loss_that_never_fell(tmp_path: Path) -> None:
    ln10 = math.log(10)
    flat = collapse_of(tmp_path / "a", 0.35, losses=[2.31, 2.305, 2.302, 2.303])  # above chance, loss at ln 10
    assert flat is not None and flat.kind == FLAT_LOSS and f"{0.98 * ln10:.3f}" in flat.detail
    # A loss that turned non-finite is no completed run: training stops it as diverged, and a history.csv
    # holding one is refused by the report's reader (tests/test_report_trust.py).
    assert collapse_of(tmp_path / "c", 0.80, losses=[2.3, 1.2, 0.8, 0.6]) is None
    # A run that starts trained (fine_tuning continues from another run) ends near its first epoch's loss:
    # learned, which a "last epoch below the first" rule would have called collapsed.
    assert collapse_of(tmp_path / "d", 0.80, losses=[0.100, 0.099, 0.098, 0.098]) is None
    assert collapse_of(tmp_path / "e", 0.80, losses=[2.31], epochs=1) is not None  # one epoch, still at ln 10


def test_ordinary_spread_of_three_points_is_not_a_collapse(tmp_path: Path) -> None:
    values = {0: 0.7936, 1: 0.8233, 2: 0.8212}  # the LeNet triple; also 3 pp below the best seed
    for seed, value in values.items():
        write_synthetic_run(tmp_path, "torch", "lenet", seed, test=value, labels=TEN_LABELS)
    records = {seed: load_run(tmp_path / "torch" / "lenet" / f"seed{seed}") for seed in values}
    assert find_collapses(values, records, "test_accuracy", 10_000, RULE.collapse_sd, RULE.collapse_loss_margin) == ()
    st = settings(["lenet"])
    (row,) = build_table(collect_runs(tmp_path, st), st)
    assert row.verdict == INCONCLUSIVE and row.decision.collapsed == ()  # type: ignore[union-attr]
    assert row.seeds_needed is not None and row.seeds_needed.seeds == 5  # see test_seeds_needed_for_lenet


# ---- seeds needed (cnnrepro.report.seeds_needed) against a direct computation ---------------------------------


def brute_force_row_n(s: float, p: float, images: int, start: int, rule: VerdictRule) -> int | None:
    """Written from the formula, not from the module: the first n whose prediction-interval half-width fits."""
    b2 = p * (1 - p) / images
    for n in range(start, rule.max_seeds + 1):
        seed_var = s * s * (n + 1) / n
        df = (seed_var + b2) ** 2 * (n - 1) / seed_var**2
        if 100 * scipy_stats.t.ppf((1 + rule.confidence) / 2, df) * np.sqrt(seed_var + b2) <= rule.max_tolerance_pp:
            return n
    return None


def test_seeds_needed_for_lenet() -> None:
    # The triple: ±7.76 pp now; 5 seeds at the same spread give ±4.98 pp <= 5 pp, and +2.97 pp inside it.
    values = seeds(79.36, 82.33, 82.12)
    decision = decide(values, 0.783, 10_000, RULE)
    need = row_seeds_needed("torch", "lenet", decision, RULE)
    s = np.std(list(values.values()), ddof=1)
    assert need.seeds == brute_force_row_n(s, 0.783, 10_000, 3, RULE) == 5
    assert (need.basis, need.more, need.would_read, need.ablation) == (MEASURED, 2, REPRODUCED, None)
    assert need.short() == "5 seeds would decide (2 more; reproduced at the measured mean)"
    assert "±4.98 pp ≤ 5 pp at n = 5" in need.reason


@pytest.mark.parametrize("spread_pp", [1.0, 1.66, 2.2, 2.4])
def test_seeds_needed_agree_with_a_direct_computation(spread_pp: float) -> None:
    values = {seed: 0.80 + spread_pp / 100 * z for seed, z in enumerate((-1.0, 0.0, 1.0))}  # sd = spread_pp
    decision = decide(values, 0.783, 10_000, RULE)
    expected = brute_force_row_n(spread_pp / 100, 0.783, 10_000, 3, RULE)
    if decision.verdict != INCONCLUSIVE:  # tight seeds decide at once: nothing to count
        assert expected == 3
        return
    need = row_seeds_needed("torch", "lenet", decision, RULE)
    assert need.seeds == expected and expected is not None and expected > 3
    tolerance = brute_force_tolerance(spread_pp / 100, 0.783, 10_000, expected)
    assert need.would_read == (REPRODUCED if abs(decision.difference_pp) <= tolerance else ABOVE)  # type: ignore[arg-type]


def brute_force_tolerance(s: float, p: float, images: int, n: int) -> float:
    seed_var, b2 = s * s * (n + 1) / n, p * (1 - p) / images
    df = (seed_var + b2) ** 2 * (n - 1) / seed_var**2
    return 100 * scipy_stats.t.ppf(0.975, df) * np.sqrt(seed_var + b2)


def test_seeds_needed_beyond_the_search_and_never() -> None:
    # sd 2.45 pp: the tolerance tends to 1.96 * sqrt(2.45^2 + 0.41^2) = 4.87 pp, reached only past 10 seeds.
    values = {seed: 0.80 + 0.0245 * z for seed, z in enumerate((-1.0, 0.0, 1.0))}
    small = VerdictRule(max_seeds=10)
    assert brute_force_row_n(0.0245, 0.783, 10_000, 3, small) is None
    beyond = row_seeds_needed("torch", "lenet", decide(values, 0.783, 10_000, small), small)
    assert (beyond.basis, beyond.seeds) == (BEYOND, None) and beyond.short() == "more than 10 seeds"
    assert row_seeds_needed("torch", "lenet", decide(values, 0.783, 10_000, RULE), RULE).seeds == (
        brute_force_row_n(0.0245, 0.783, 10_000, 3, RULE)
    )
    # sd 3 pp: even infinitely many seeds leave ±1.96 * sqrt(3^2 + 0.41^2) = ±5.94 pp > 5 pp.
    wide = {seed: 0.80 + 0.03 * z for seed, z in enumerate((-1.0, 0.0, 1.0))}
    never = row_seeds_needed("torch", "lenet", decide(wide, 0.783, 10_000, RULE), RULE)
    assert (never.basis, never.seeds) == (NEVER, None) and "±5.94 pp" in never.reason


def test_seeds_needed_with_too_few_or_collapsed_seeds() -> None:
    # Two seeds: the spread is measured, the count starts at min_seeds.
    two = row_seeds_needed("torch", "lenet", decide(seeds(79.4, 82.3), 0.783, 10_000, RULE), RULE)
    assert two.seeds == brute_force_row_n(np.std([0.794, 0.823], ddof=1), 0.783, 10_000, 3, RULE) == 10
    assert two.more == 8
    # One seed: no spread yet, only the least the rule needs.
    one = row_seeds_needed("torch", "lenet", decide(seeds(80.0), 0.783, 10_000, RULE), RULE)
    assert (one.basis, one.seeds, one.more) == (MINIMUM, 3, 2)
    # A collapsed seed stays counted: 2 learned + 1 collapsed need 3 more to have 3 + 1.
    collapsed = (Collapse(2, 0.1, CHANCE, "chance"),)
    decision = decide(seeds(80.0, 80.2, 10.0), 0.783, 10_000, RULE, collapsed)
    need = row_seeds_needed("torch", "lenet", decision, RULE)
    assert need.seeds == brute_force_row_n(np.std([0.8, 0.802], ddof=1), 0.783, 10_000, 3, RULE) + 1  # type: ignore[operator]
    assert "1 collapsed" in need.reason


def brute_force_effect_n(a: list[float], b: list[float], start: int, max_seeds: int) -> int | None:
    """The first n a side at which Welch's test of the measured means and sds rejects zero (scipy's own Welch)."""
    for n in range(start, max_seeds + 1):
        test = scipy_stats.ttest_ind_from_stats(
            np.mean(a), np.std(a, ddof=1), n, np.mean(b), np.std(b, ddof=1), n, equal_var=False
        )
        if test.pvalue < 0.05:
            return n
    return None


@pytest.mark.parametrize(
    ("ablation", "faithful"),
    [
        ([0.9871, 0.9880, 0.9862], [0.9905, 0.9912, 0.9899]),  # decided at 3 a side: no count
        ([0.788, 0.805, 0.771], [0.781, 0.790, 0.772]),  # +0.70 pp in noise of ~1 pp
        ([0.7936, 0.8233, 0.8212], [0.8001, 0.8142, 0.8123]),  # +0.38 pp in LeNet's spread
    ],
)
def test_effect_seeds_needed_agree_with_scipys_welch(ablation: list[float], faithful: list[float]) -> None:
    low, high = scipy_stats.ttest_ind(ablation, faithful, equal_var=False).confidence_interval(0.95)
    sides = EffectSides(3, 0, float(np.std(faithful, ddof=1)), 3, 0, float(np.std(ablation, ddof=1)),
                        float(np.mean(ablation) - np.mean(faithful)), bool(low > 0 or high < 0))  # fmt: skip
    need = effect_seeds_needed("torch", "lenet", "naive_torch_port", sides, 50, 0.95)
    expected = brute_force_effect_n(ablation, faithful, 3, 50)
    if sides.excludes_zero:
        assert need is None and expected == 3
        return
    assert need is not None and need.seeds == need.faithful_seeds
    assert need.seeds == expected or (need.basis == BEYOND and expected is None)


def test_shipped_defaults_search_up_to_fifty_seeds() -> None:
    assert RULE.max_seeds == 50
