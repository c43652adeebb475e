"""The report's "what moves the figures" section, from synthetic runs written through the run contract."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import write_json_atomic
from cnnrepro.report.build import build_report
from cnnrepro.report.collect import collect_runs
from cnnrepro.report.effects import collect_effects, welch_interval
from cnnrepro.report.effects_section import to_csv as effects_csv
from cnnrepro.run_outputs import RunInfo, RunMetrics, write_run
from cnnrepro.train.ablations import run_dir

from .helpers_report import TEN_LABELS, confusion_for, run_config, settings, write_clean_summary, write_synthetic_run

FAITHFUL = {"mnist_convnet": [0.9905, 0.9912, 0.9899], "lenet": [0.781, 0.79, 0.772]}
KERAS3 = [0.9871, 0.9880, 0.9862]
NAIVE_LENET = [0.55, 0.61, 0.58]


def write_ablation_run(
    root: Path,
    framework: str,
    variant: str,
    ablation: str,
    seed: int,
    test: float | None,
    *,
    reason: str | None = None,
    name_in_config: str | None = None,
) -> Path:
    """One ablation run as `cnnrepro train --ablation` writes it (metrics, history, run_info with the ablation)."""
    out = run_dir(root, framework, variant, seed, ablation)
    status = "completed" if test is not None else "not_run"
    metrics = RunMetrics(
        framework, variant, seed, status, reason=reason, test_accuracy=test, epochs_run=int(bool(test))
    )
    history = [{"epoch": 1, "loss": 0.1, "accuracy": 0.9, "val_loss": 0.1, "val_accuracy": test}] if test else []
    ablation_info = {
        "name": name_in_config or ablation,
        "description": f"the {ablation} departure",
        "changes": {"optimizer": {"faithful": "rmsprop_keras2", "ablation": "rmsprop_keras3"}},
    }
    info = RunInfo(
        framework=framework,
        variant=variant,
        seed=seed,
        status=status,
        device="cpu",
        started_at="2025-01-01T00:00:00+00:00",
        config={**run_config(variant, max(1, len(history)), framework=framework), "ablation": ablation_info},
        reason=reason,
    )
    write_run(out, metrics, history, info)
    if test is not None:  # as training writes it: the test matrix
        write_json_atomic(out / "artifacts" / "confusion.json", confusion_for(test, TEN_LABELS))
    return out


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for variant, values in FAITHFUL.items():
        for seed, value in enumerate(values):
            write_synthetic_run(root, "torch", variant, seed, val=value, test=value, labels=TEN_LABELS)
    for seed, value in enumerate(KERAS3):
        write_ablation_run(root, "torch", "mnist_convnet", "keras3_rmsprop", seed, value)
    for seed, value in enumerate(NAIVE_LENET):
        write_ablation_run(root, "torch", "lenet", "naive_torch_port", seed, value)
    write_ablation_run(root, "torch", "mnist_convnet", "bf16", 0, 0.9903)  # one seed: no interval
    for seed in range(3):
        write_ablation_run(root, "keras", "lenet", "naive_torch_port", seed, None, reason="no Keras meaning")
    return root


def test_effects_are_differences_of_means_with_welch_intervals_sorted_by_size(runs: Path) -> None:
    grid = settings(["mnist_convnet", "lenet"])
    effects = collect_effects(runs, collect_runs(runs, grid))
    order = [(e.framework, e.variant, e.ablation) for e in effects]
    assert order[:3] == [
        ("torch", "lenet", "naive_torch_port"),
        ("torch", "mnist_convnet", "keras3_rmsprop"),
        ("torch", "mnist_convnet", "bf16"),
    ]
    lenet, keras3, bf16 = effects[:3]
    expected = scipy_stats.ttest_ind(KERAS3, FAITHFUL["mnist_convnet"], equal_var=False).confidence_interval(0.95)
    assert keras3.effect == pytest.approx(sum(KERAS3) / 3 - sum(FAITHFUL["mnist_convnet"]) / 3)
    assert (keras3.ci_low, keras3.ci_high) == pytest.approx((expected.low, expected.high))
    assert keras3.faithful_n == keras3.ablation_n == 3 and keras3.metric == "test_accuracy"
    assert lenet.ci_high < 0  # a collapse far outside the seeds' noise
    assert bf16.ablation_n == 1 and bf16.ci_low is None and bf16.effect == pytest.approx(0.9903 - 0.9905333, abs=1e-6)
    keras = effects[3]
    assert keras.framework == "keras" and keras.effect is None and keras.not_run == 3
    assert keras.reasons == ("no Keras meaning",) and keras.faithful_n == 0


def test_welch_interval_needs_two_values_per_side_and_is_a_point_without_spread() -> None:
    with pytest.raises(ValueError):
        welch_interval([0.9], [0.8, 0.81])
    assert welch_interval([0.9, 0.9], [0.8, 0.8]) == pytest.approx((0.1, 0.1))


def test_the_section_is_in_every_output(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    result = build_report(
        runs, write_clean_summary(tmp_path / "summary.json"), out, settings(["mnist_convnet", "lenet"])
    )
    keras3 = next(r for r in result["effects"] if r["ablation"] == "keras3_rmsprop")
    assert keras3["effect_pp"] == pytest.approx(100 * keras3["effect"])
    assert json.loads((out / "comparison.json").read_text())["effects"] == result["effects"]
    with (out / "effects.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["ablation"] for r in rows] == [r["ablation"] for r in result["effects"]]
    assert float(rows[1]["effect_pp"]) == pytest.approx(keras3["effect_pp"])
    effect_text = f"{keras3['effect_pp']:+.2f}"
    md = (out / "comparison.md").read_text()
    section = md[md.index("## What moves the figures") : md.index("## Plots")]
    assert effect_text in section and "optimizer=rmsprop_keras3" in section
    assert "keras/lenet/naive_torch_port (3): no Keras meaning" in section
    assert effect_text in (out / "comparison.html").read_text()


def test_a_run_in_the_wrong_ablation_directory_is_refused(runs: Path) -> None:
    write_ablation_run(runs, "torch", "lenet", "tf32", 0, 0.78, name_in_config="bf16")
    with pytest.raises(
        CnnreproError, match=r"ablation-tf32/seed0/metrics.json: says torch/lenet/seed0 under ablation bf16"
    ):
        collect_effects(runs, [])


# The case: d2l's LeNet faithful against its quick PyTorch port, whose seed 2 sat at chance (10.00%).
LENET_SEEDS = [0.7936, 0.8233, 0.8212]
NAIVE_WITH_A_COLLAPSE = [0.5728, 0.6023, 0.1000]


def test_a_collapsed_seed_is_named_and_the_effect_given_without_it(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed, (faithful, naive) in enumerate(zip(LENET_SEEDS, NAIVE_WITH_A_COLLAPSE, strict=True)):
        write_synthetic_run(runs, "torch", "lenet", seed, val=faithful, test=faithful, labels=TEN_LABELS, epochs=10)
        write_ablation_run(runs, "torch", "lenet", "naive_torch_port", seed, naive)
    out = tmp_path / "reports"
    result = build_report(runs, write_clean_summary(tmp_path / "summary.json"), out, settings(["lenet"]))
    (effect,) = collect_effects(runs, collect_runs(runs, settings(["lenet"])))
    every = scipy_stats.ttest_ind(NAIVE_WITH_A_COLLAPSE, LENET_SEEDS, equal_var=False).confidence_interval(0.95)
    learned = scipy_stats.ttest_ind(NAIVE_WITH_A_COLLAPSE[:2], LENET_SEEDS, equal_var=False).confidence_interval(0.95)
    assert (effect.ci_low, effect.ci_high) == pytest.approx((every.low, every.high))  # [-108.45, +30.92] pp
    assert f"{100 * effect.effect:+.2f}" == "-38.77"
    assert effect.learned_effect == pytest.approx(sum(NAIVE_WITH_A_COLLAPSE[:2]) / 2 - sum(LENET_SEEDS) / 3)
    assert (effect.learned_ci_low, effect.learned_ci_high) == pytest.approx((learned.low, learned.high))
    assert [c.seed for c in effect.ablation_collapsed] == [2] and effect.faithful_collapsed == ()
    assert effect.ablation_collapsed[0].text() == "seed 2 at 10.00%, chance"
    assert effect.seeds_needed is None  # without the collapse the interval excludes zero: decided
    md = (out / "comparison.md").read_text()
    section = md[md.index("## What moves the figures") : md.index("## Plots")]
    assert "42.50 (n=3, 1 collapsed)" in section and "-38.77; -22.51 without collapsed" in section
    assert "[-108.45, +30.92]; [-30.68, -14.35] without collapsed" in section
    assert "torch/lenet/naive_torch_port, ablation: 1 of 3 seeds collapsed: seed 2 at 10.00%, chance" in section
    (record,) = result["effects"]
    assert record["ablation_collapsed"] == [f"seed 2 at 10.00%, chance: {effect.ablation_collapsed[0].detail}"]
    assert result["seeds_needed"][0]["variant"] == "lenet"  # the faithful row (too spread), not the effect


def test_an_effect_whose_interval_spans_zero_says_how_many_seeds_would_decide(runs: Path, tmp_path: Path) -> None:
    for seed, value in enumerate((0.785, 0.797, 0.776)):  # +0.5 pp from FAITHFUL["lenet"], in ~1 pp of noise
        write_ablation_run(runs, "torch", "lenet", "keras3_rmsprop", seed, value)
    effect = next(
        e for e in collect_effects(runs, collect_runs(runs, settings(["lenet"]))) if e.ablation == "keras3_rmsprop"
    )
    assert effect.learned_ci_low < 0 < effect.learned_ci_high  # type: ignore[operator]
    need = effect.seeds_needed
    assert need is not None and need.ablation == "keras3_rmsprop" and need.seeds == need.faithful_seeds
    a, b = [0.785, 0.797, 0.776], FAITHFUL["lenet"]
    first = next(
        n
        for n in range(3, 51)
        if scipy_stats.ttest_ind_from_stats(
            np.mean(a), np.std(a, ddof=1), n, np.mean(b), np.std(b, ddof=1), n, equal_var=False
        ).pvalue
        < 0.05
    )
    assert need.seeds == first and need.short() == f"{first} seeds a side would decide ({first - 3} more)"
    with (tmp_path / "e.csv").open("w") as f:
        f.write(effects_csv([effect]))
    with (tmp_path / "e.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert (row["seeds_needed"], row["seeds_needed_basis"]) == (str(first), "measured")
