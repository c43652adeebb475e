"""The report's "what moves the figures" section, from synthetic runs written through the run contract."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from scipy import stats as scipy_stats

from cnnrepro.errors import CnnreproError
from cnnrepro.report.build import build_report
from cnnrepro.report.collect import collect_runs
from cnnrepro.report.effects import collect_effects, welch_interval
from cnnrepro.run_outputs import RunInfo, RunMetrics, write_run
from cnnrepro.train.ablations import run_dir

from .helpers_report import TEN_LABELS, settings, write_clean_summary, write_synthetic_run

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
        config={"variant": variant, "ablation": ablation_info},
        reason=reason,
    )
    write_run(out, metrics, history, info)
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
