"""What DVC and Snakemake see of the results (issue 22), piece by piece: the summary DVC versions as metrics,
the long-form curves and their plot template, the params stamps that tell Snakemake what DVC made."""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path

import pytest
import yaml

from cnnrepro.orchestration.tool_state import PAST, locked_params, write_params_stamp
from cnnrepro.report.build import build_report
from cnnrepro.report.dvc_outputs import CURVE_COLUMNS

from .conftest import PROJECT_ROOT
from .helpers_report import settings, write_clean_summary, write_synthetic_run


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, dict]:
    runs = tmp_path / "runs"
    for seed, (val, test) in enumerate([(0.70, 0.69), (0.74, 0.71)]):
        write_synthetic_run(runs, "torch", "baseline", seed, val=val, test=test, epochs=3)
    report = build_report(
        runs,
        write_clean_summary(tmp_path / "summary.json"),
        tmp_path / "reports",
        settings(["baseline", "augmentation"], seeds=[0, 1]),
    )
    return tmp_path / "reports", report


def test_the_summary_holds_each_rows_headline(built: tuple[Path, dict]) -> None:
    out, report = built
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"torch"} and set(summary["torch"]) == {"baseline", "augmentation"}
    for row in report["rows"]:
        entry = summary[row["framework"]][row["variant"]]
        split = "test" if row["metric"] == "test_accuracy" else "val"
        assert entry == {
            "metric": row["metric"],
            "documented": row["documented"],
            "mean": row[f"{split}_mean"],
            "sd": row[f"{split}_std"],
            "n": row[f"{split}_n"],
            "difference_pp": row["difference_pp"],
            "tolerance_pp": row["tolerance_pp"],
            "verdict": row["verdict"],
        }
    baseline = summary["torch"]["baseline"]
    measured = (0.70, 0.74) if baseline["metric"] == "val_accuracy" else (0.69, 0.71)
    assert baseline["n"] == 2 and math.isclose(baseline["mean"], sum(measured) / 2)
    assert summary["torch"]["augmentation"]["n"] == 0 and summary["torch"]["augmentation"]["mean"] is None


def test_the_curves_are_long_form_per_seed_and_split(built: tuple[Path, dict]) -> None:
    out, _ = built
    # augmentation has no runs: no file, rather than one DVC cannot plot
    assert sorted(p.relative_to(out).as_posix() for p in (out / "curves").rglob("*")) == [
        "curves/torch",
        "curves/torch/baseline.csv",
    ]
    with (out / "curves" / "torch" / "baseline.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CURVE_COLUMNS
    assert len(rows) == 2 * 3 * 2  # seeds x epochs x (train, val)
    history = list(csv.DictReader((out.parent / "runs/torch/baseline/seed1/history.csv").open(newline="")))
    last_val = next(r for r in rows if (r["seed"], r["epoch"], r["split"]) == ("1", "3", "val"))
    assert float(last_val["accuracy"]) == float(history[-1]["val_accuracy"])
    assert float(last_val["loss"]) == float(history[-1]["val_loss"])


def test_an_epoch_without_validation_has_no_val_row(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_synthetic_run(runs, "torch", "baseline", 0, val=None, test=0.7, epochs=2)
    build_report(runs, write_clean_summary(tmp_path / "s.json"), tmp_path / "r", settings(["baseline"], seeds=[0]))
    rows = list(csv.DictReader((tmp_path / "r/curves/torch/baseline.csv").open(newline="")))
    assert [r["split"] for r in rows] == ["train", "train"]


def test_the_curve_template_fills_with_dvc_renderer() -> None:
    from dvc_render.vega import VegaRenderer

    points = [
        {"epoch": str(e), "seed": str(s), "split": sp, "accuracy": "0.5", "loss": "1", "rev": rev}
        for e in (1, 2)
        for s in (0, 1)
        for sp in ("train", "val")
        for rev in ("HEAD", "exp")
    ]
    template = PROJECT_ROOT / "workflow" / "plots" / "curves.json"
    spec = VegaRenderer(points, "curves", template=str(template), x="epoch", y="accuracy").get_filled_template()
    assert spec["data"]["values"] == points
    encoding = spec["spec"]["encoding"]
    assert (encoding["x"]["field"], encoding["y"]["field"]) == ("epoch", "accuracy")
    assert (encoding["color"]["field"], encoding["strokeDash"]["field"], spec["facet"]["column"]["field"]) == (
        "seed",
        "split",
        "rev",
    )
    assert "<DVC_METRIC" not in json.dumps(spec)


def test_dvc_yaml_caches_run_outputs_and_declares_the_summary_and_plots() -> None:
    text = (PROJECT_ROOT / "dvc.yaml").read_text()
    assert len(text.splitlines()) <= 350
    dvc = yaml.safe_load(text)
    train = dvc["stages"]["train_idx"]
    # cached (no `cache: false`): checked out with the model, loadable for any revision
    assert all(isinstance(out, str) for out in train["outs"] + train["metrics"])
    assert [next(iter(m)) for m in dvc["stages"]["report"]["metrics"]] == ["reports/summary.json"]
    assert dvc["stages"]["report"]["metrics"][0]["reports/summary.json"] == {"cache": False}
    curves = dvc["plots"][0]["reports/curves"]
    assert (PROJECT_ROOT / curves["template"]).is_file()
    assert ".snakemake_timestamp" in (PROJECT_ROOT / ".dvcignore").read_text().split()


def _lock(path: Path, entries: dict[str, dict]) -> Path:
    stages = {name: {"cmd": "x", "params": {"params.yaml": values}} for name, values in entries.items()}
    path.write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))
    return path


def test_a_stamp_is_dated_now_only_when_dvc_made_the_outputs_with_other_params(tmp_path: Path) -> None:
    values = {"train.overrides": {"mnist_dense": {"epochs": 1}}, "tracking": {"uri": "sqlite:///m.db"}}
    lock = _lock(tmp_path / "dvc.lock", {"train_idx@torch-mnist_dense-0": values, "train_pets@torch-baseline-0": {}})
    assert locked_params("train_idx", lock) == [values]
    stamp = tmp_path / write_params_stamp("train_idx", values, tmp_path)
    assert stamp == tmp_path / ".cnnrepro/params/train_idx.json" and json.loads(stamp.read_text()) == values
    assert stamp.stat().st_mtime == PAST  # DVC made them with these values: nothing is stale
    edited = {**values, "train.overrides": {"mnist_dense": {"epochs": 2}}}
    before = time.time() - 1
    write_params_stamp("train_idx", edited, tmp_path)
    assert stamp.stat().st_mtime >= before  # DVC's outputs are older than the new params
    os.utime(stamp, (before - 100, before - 100))
    write_params_stamp("train_idx", edited, tmp_path)  # same values: left alone (Snakemake's rerun stays done)
    assert stamp.stat().st_mtime == before - 100
    # No lock entry (Snakemake made it, or nothing did): Snakemake's own params trigger decides.
    write_params_stamp("download@mnist", {"download.mnist": {"urls": []}}, tmp_path)
    assert (tmp_path / ".cnnrepro/params/download@mnist.json").stat().st_mtime == PAST


def test_a_foreach_stamp_matches_its_own_instance_only(tmp_path: Path) -> None:
    lock = _lock(tmp_path / "dvc.lock", {"download@mnist": {"a": 1}, "download@petimages": {"a": 2}})
    assert locked_params("download@mnist", lock) == [{"a": 1}]
    assert locked_params("download", lock) == [{"a": 1}, {"a": 2}]
    assert locked_params("download@mnist", tmp_path / "missing.lock") == []


def test_what_snakemake_made_is_recorded_in_dvc_lock(tmp_path: Path) -> None:
    """The real DVC: a stage Snakemake ran is committed; one it judged up to date is committed where DVC sees only
    changed deps, never where its output differs from dvc.lock."""
    from cnnrepro.orchestration.tool_state import record_in_dvc

    from .pipeline_project import run

    run(["git", "init", "-q"], tmp_path)
    run(["dvc", "init", "-q"], tmp_path)
    (tmp_path / "src.txt").write_text("a\n")
    stages = {
        "made": {"cmd": "cp src.txt made.txt", "deps": ["src.txt"], "outs": ["made.txt"]},
        "reader": {"cmd": "cp made.txt read.txt", "deps": ["made.txt"], "outs": ["read.txt"]},
        "edited": {"cmd": "cp src.txt edited.txt", "deps": ["src.txt"], "outs": ["edited.txt"]},
    }
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    run(["dvc", "repro", "-q"], tmp_path)
    # Snakemake reruns `made` (new bytes); `reader` it found up to date; `edited` was changed by hand.
    (tmp_path / "made.txt").write_text("b\n")
    (tmp_path / "edited.txt").write_text("by hand\n")
    assert record_in_dvc(["made.txt"], ["read.txt", "edited.txt"], tmp_path) == ["made", "reader"]
    status = json.loads(run(["dvc", "status", "--json"], tmp_path).stdout)
    assert set(status) == {"edited"}
    assert record_in_dvc([], ["read.txt"], tmp_path) == []  # nothing ran: nothing to record
