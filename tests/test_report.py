"""`cnnrepro report` on synthetic run outputs: verdicts, interval math, outputs that agree, one-line errors."""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from scipy import stats as scipy_stats

from cnnrepro import cli
from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import read_json, write_json_atomic
from cnnrepro.report.build import build_report, seeds_to_decide
from cnnrepro.report.collect import collect_runs
from cnnrepro.report.ledger import fidelity_ledger
from cnnrepro.report.seeds_needed import read_seeds_needed
from cnnrepro.report.stats import summarize
from cnnrepro.report.table import build_table
from cnnrepro.variants.documented import DOCUMENTED

from .helpers_report import (
    ALL_VARIANTS,
    EXPECTED_VERDICTS,
    FAILED_REASON,
    FIDELITY_LOSS,
    FIDELITY_RMSPROP,
    NOT_RUN_REASON,
    TEN_LABELS,
    settings,
    write_case_grid,
    write_clean_summary,
    write_params,
    write_synthetic_run,
)

DOCUMENTED_FIGURES = {v: f.documented for v, f in DOCUMENTED.items()}
VARIANT_ORDER = [v for group in ALL_VARIANTS.values() for v in group]


def measured(runs: Path, variant: str, metric: str) -> list[float]:
    """The per-seed figures as written to disk, read back independently of the report code."""
    values = []
    for path in sorted((runs / "torch" / variant).glob("seed*/metrics.json")):
        metrics = json.loads(path.read_text())
        if metrics["status"] == "completed" and metrics[metric] is not None:
            values.append(metrics[metric])
    return values


# ---- interval math ------------------------------------------------------------------------------------


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
@pytest.mark.parametrize("values", [[0.70, 0.72], [0.71, 0.69, 0.74], [0.9, 0.91, 0.93, 0.88, 0.95]])
def test_interval_matches_scipy(values: list[float], confidence: float) -> None:
    s = summarize(values, confidence)
    sem = scipy_stats.sem(values)
    low, high = scipy_stats.t.interval(confidence, len(values) - 1, loc=np.mean(values), scale=sem)
    assert s.n == len(values)
    assert s.mean == pytest.approx(np.mean(values), abs=1e-12)
    assert s.std == pytest.approx(np.std(values, ddof=1), abs=1e-12)
    assert (s.ci_low, s.ci_high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))


def test_one_seed_has_no_interval_and_none_has_no_mean() -> None:
    one = summarize([0.8], 0.95)
    assert (one.n, one.mean, one.std, one.ci_low, one.has_interval) == (1, 0.8, None, None, False)
    assert summarize([], 0.95).mean is None


# ---- verdicts -----------------------------------------------------------------------------------------


@pytest.fixture
def case_rows(tmp_path: Path):
    runs = tmp_path / "runs"
    write_case_grid(runs, DOCUMENTED_FIGURES)
    rows = build_table(collect_runs(runs, settings(VARIANT_ORDER)), settings(VARIANT_ORDER))
    return runs, {r.variant: r for r in rows}


def test_every_verdict_case(case_rows) -> None:
    runs, rows = case_rows
    assert {v: r.verdict for v, r in rows.items()} == EXPECTED_VERDICTS
    for variant in ("baseline", "augmentation", "feature_extraction", "mnist_convnet", "mnist_dense", "lenet"):
        row = rows[variant]
        values = measured(runs, variant, row.metric)
        assert row.summary(row.metric).n == len(values)
        learned = values[:2] if variant == "mnist_dense" else values  # its seed 2 collapsed (MNIST_DENSE_VALUES)
        assert row.difference_pp == pytest.approx((np.mean(learned) - row.documented) * 100, abs=1e-9)
    # The reason names the numbers the rule used: the tolerance and the evaluation set it scales with.
    assert re.fullmatch(r"\+0\.27 pp, within ±\d\.\d\d pp \(.*on 1,000 images\)", rows["baseline"].verdict_detail)
    assert "on 914 images" in rows["augmentation"].verdict_detail  # 1,600 draws over 1,000 images
    assert rows["mnist_dense"].verdict_detail.startswith(
        "1 of 3 seeds collapsed: seed 2 at 10.09%, chance; 2 learned seeds, the rule needs 3"
    )
    assert "2 completed seeds, the rule needs 3" in rows["mnist_convnet"].verdict_detail
    assert rows["lenet"].verdict_detail.startswith(
        "departs: epochs 6 (documented 10), which changes what is measured; by the rule: 2 completed seeds"
    )
    # Undecided rows say how many seeds would decide them; decided and not-comparable ones do not.
    assert {v for v, r in rows.items() if r.seeds_needed} == {"mnist_convnet", "mnist_dense"}


def test_partial_missing_not_run_and_failed_rows_name_their_seeds(case_rows) -> None:
    _, rows = case_rows
    convnet = rows["mnist_convnet"]
    assert (convnet.test.n, convnet.seeds_completed, convnet.seeds_missing) == (2, [0, 2], [1])
    assert "missing seed 1" in convnet.notes
    lenet = rows["lenet"]
    assert (lenet.test.n, lenet.seeds_failed) == (2, [1])
    assert any(FAILED_REASON in n and "seed 1" in n for n in lenet.notes)
    not_run = rows["feature_extraction_augmented"]
    assert NOT_RUN_REASON in not_run.verdict_detail and not_run.val.n == 0
    assert rows["fine_tuning"].seeds_missing == [0, 1, 2]
    cam = rows["cam_convnet"]
    assert cam.documented is None and cam.val.n == 3 and cam.difference_pp is None


def test_reasons_that_name_their_own_seed_read_as_one_line(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed in (0, 1, 2):
        upstream = f"runs/torch/feature_extraction_augmented/seed{seed}"
        reason = f"continues from {upstream}, which is not_run: {NOT_RUN_REASON}"
        write_synthetic_run(runs, "torch", "fine_tuning", seed, status="not_run", reason=reason)
    write_synthetic_run(runs, "torch", "lenet", 0, status="failed", reason="killed in seed0's epoch 3")
    write_synthetic_run(runs, "torch", "lenet", 1, status="failed", reason="seed10 and seed1 both failed")
    report = settings(["fine_tuning", "lenet"], seeds=(0, 1))
    rows = {r.variant: r for r in build_table(collect_runs(runs, report), report)}
    shared = "continues from runs/torch/feature_extraction_augmented/seed{seed}, which is not_run"
    assert rows["fine_tuning"].verdict_detail == f"{shared}: {NOT_RUN_REASON} (seed 0, 1)"
    # Reasons that differ beyond their seed stay apart and are shown as written; seed10 is not seed 1.
    assert rows["lenet"].verdict_detail == ("killed in seed0's epoch 3 (seed 0); seed10 and seed1 both failed (seed 1)")


def test_parity_between_frameworks_is_an_equivalence_test(tmp_path: Path) -> None:
    doc = DOCUMENTED_FIGURES["baseline"]
    torch_vals, same_vals, far_vals = [0.70, 0.72, 0.71], [0.71, 0.705, 0.715], [0.80, 0.81, 0.805]
    for seed in range(3):
        write_synthetic_run(tmp_path, "torch", "baseline", seed, val=torch_vals[seed], test=doc)
        write_synthetic_run(tmp_path, "keras", "baseline", seed, val=same_vals[seed], test=doc)
        write_synthetic_run(tmp_path, "jax", "baseline", seed, val=far_vals[seed], test=doc)
    st = settings(["baseline"], frameworks=["torch", "keras", "jax"])
    rows = {r.framework: r for r in build_table(collect_runs(tmp_path, st), st)}
    assert rows["torch"].reference and rows["torch"].parity is None
    keras, jax = rows["keras"].parity, rows["jax"].parity
    assert (keras.verdict, jax.verdict) == ("equivalent", "different")
    assert keras.margin_pp == pytest.approx(2 * 100 * np.sqrt(0.71 * 0.29 / 1000))  # 2 binomial sd, 1,000 images
    assert jax.difference_pp == pytest.approx((np.mean(far_vals) - np.mean(torch_vals)) * 100)


# ---- the command end to end ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    write_case_grid(root / "runs", DOCUMENTED_FIGURES)
    write_clean_summary(root / "summary.json")
    write_params(root / "params.yaml", variants=ALL_VARIANTS)
    args = ["--params", str(root / "params.yaml"), "--runs", str(root / "runs")]
    args += ["--clean-summary", str(root / "summary.json"), "--out", str(root / "reports")]
    assert cli.main(["report", *args]) == 0
    return root


def test_cli_writes_every_output(built: Path) -> None:
    out = built / "reports"
    for name in ("comparison.md", "comparison.html", "comparison.csv", "comparison.json"):
        assert (out / name).stat().st_size > 0
    report = read_json(out / "comparison.json")
    for plot in report["plots"]:
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    names = {Path(p).name for p in report["plots"]}
    assert {"measured_vs_documented.png", "data_cleaning.png", "history_baseline.png", "confusion_lenet.png"} <= names
    assert not any(p.name.endswith(".part") for p in out.rglob("*"))
    assert [(r["variant"], r["verdict"]) for r in report["rows"]] == list(EXPECTED_VERDICTS.items())
    # The report says how to rebuild itself with the arguments it was built from.
    rebuild = f"cnnrepro report --params {built / 'params.yaml'} --runs {built / 'runs'} "
    rebuild += f"--clean-summary {built / 'summary.json'} --out {out}"
    assert f"Regenerate with `{rebuild}`." in (out / "comparison.md").read_text()


def test_every_completed_run_is_traced_to_its_mlflow_run(built: Path) -> None:
    report = read_json(built / "reports" / "comparison.json")
    md = (built / "reports" / "comparison.md").read_text()
    for run in report["runs"]:
        metrics_path = built / "runs" / run["framework"] / run["variant"] / f"seed{run['seed']}" / "run_info.json"
        if run["status"] == "missing":
            assert run["mlflow_run_id"] is None
            continue
        expected = json.loads(metrics_path.read_text())["mlflow"]["run_id"]
        assert run["mlflow_run_id"] == expected and f"`{expected}`" in md
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in md


def _md_comparison_table(md: str) -> list[dict[str, str]]:
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Variant | Framework | Split"))
    header = [h.strip() for h in lines[start].strip("|").split(" | ")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = re.split(r"(?<!\\) \| ", line.strip()[2:-2])
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def _parse_measured(cell: str) -> tuple[float, ...]:
    return tuple(float(x) for x in re.findall(r"-?\d+\.\d+", cell))


def test_markdown_table_parses_back_to_the_csv_numbers(built: Path) -> None:
    md_rows = _md_comparison_table((built / "reports" / "comparison.md").read_text())
    with (built / "reports" / "comparison.csv").open(newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(md_rows) == len(csv_rows) == len(VARIANT_ORDER)

    def pct(value: str) -> float | None:
        return round(float(value) * 100, 2) if value else None

    for md, row in zip(md_rows, csv_rows, strict=True):
        assert md["Variant"].strip("`") == row["variant"]
        for split, column in (("val", "Validation % mean ± sd [CI] (n)"), ("test", "Test % mean ± sd [CI] (n)")):
            n = int(row[f"{split}_n"])
            expected = [pct(row[f"{split}_{k}"]) for k in ("mean", "std", "ci_low", "ci_high")]
            numbers = _parse_measured(md[column])
            assert numbers == tuple(x for x in expected if x is not None)
            assert (md[column] == "—") if n == 0 else md[column].endswith(f"(n={n})")
        diff = row["difference_pp"]
        assert (md["Difference (pp)"] == "—") if not diff else float(md["Difference (pp)"]) == round(float(diff), 2)
        tolerance = row["tolerance_pp"]
        assert (md["Tolerance (pp)"] == "—") if not tolerance else md["Tolerance (pp)"] == f"±{float(tolerance):.2f}"
        assert (
            (md["Documented %"] == "—")
            if not row["documented"]
            else float(md["Documented %"]) == pct(row["documented"])
        )


def test_report_text_names_the_rule_and_the_gaps(built: Path) -> None:
    md = (built / "reports" / "comparison.md").read_text()
    assert "the 95% prediction interval of one new run" in md
    assert "fewer than 3 seeds completed" in md and "tolerance exceeds 5 pp" in md
    assert "inside ±2 binomial sd of the evaluation set" in md
    assert NOT_RUN_REASON in md and FAILED_REASON in md
    assert "missing seed 1" in md
    assert "Not generated" in md  # no figures/ yet


def test_corrupt_metrics_fails_with_one_line_naming_the_file(built: Path, tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    write_case_grid(runs, DOCUMENTED_FIGURES)
    broken = runs / "torch" / "augmentation" / "seed2" / "metrics.json"
    broken.write_text('{"framework": "torch", "variant": ')
    out = tmp_path / "reports"
    out.mkdir()
    (out / "comparison.md").write_text("previous report\n")
    args = ["report", "--params", str(built / "params.yaml"), "--runs", str(runs)]
    args += ["--clean-summary", str(built / "summary.json"), "--out", str(out)]
    assert cli.main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(broken) in err and "corrupt JSON" in err
    assert (out / "comparison.md").read_text() == "previous report\n"  # nothing half-rewritten


def test_run_in_the_wrong_directory_is_refused(tmp_path: Path) -> None:
    path = write_synthetic_run(tmp_path, "torch", "baseline", 0, val=0.7, test=0.7)
    metrics = read_json(path / "metrics.json")
    write_json_atomic(path / "metrics.json", {**metrics, "seed": 5})
    with pytest.raises(CnnreproError, match=re.escape(str(path / "metrics.json"))):
        collect_runs(tmp_path, settings(["baseline"], seeds=[0]))


def test_bad_clean_summary_names_the_key(tmp_path: Path) -> None:
    summary = write_clean_summary(tmp_path / "summary.json")
    data = read_json(summary)
    del data["jfif_filter"]["would_keep"]
    write_json_atomic(summary, data)
    with pytest.raises(CnnreproError, match=r"summary\.json: missing key 'jfif_filter\.would_keep'"):
        build_report(tmp_path / "runs", summary, tmp_path / "out", settings(["baseline"]))


def test_confusion_labels_must_agree_across_seeds(tmp_path: Path) -> None:
    for seed in range(2):
        write_synthetic_run(tmp_path / "runs", "torch", "baseline", seed, val=0.7, test=0.7)
    odd = tmp_path / "runs" / "torch" / "baseline" / "seed1" / "artifacts" / "confusion.json"
    write_json_atomic(odd, {**read_json(odd), "labels": ["dog", "cat"]})
    summary = write_clean_summary(tmp_path / "summary.json")
    with pytest.raises(CnnreproError, match=re.escape(str(odd))):
        build_report(tmp_path / "runs", summary, tmp_path / "out", settings(["baseline"], seeds=[0, 1]))


def test_fidelity_ledger_is_deduplicated_by_id(case_rows) -> None:
    runs, _ = case_rows
    ledger = {e.id: e for e in fidelity_ledger(collect_runs(runs, settings(VARIANT_ORDER)))}
    assert set(ledger) == {FIDELITY_LOSS["id"], FIDELITY_RMSPROP["id"], "override_epochs"}
    assert ledger["override_epochs"].variants == ["lenet"]  # train.overrides, as training writes it
    assert ledger[FIDELITY_LOSS["id"]].variants == ["baseline", "augmentation"]
    assert ledger[FIDELITY_RMSPROP["id"]].variants == ["augmentation", "feature_extraction"]
    assert ledger[FIDELITY_RMSPROP["id"]].reason == FIDELITY_RMSPROP["reason"]


def test_figures_by_subfolder_and_stale_runs_listed_not_scored(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed in range(2):
        write_synthetic_run(runs, "torch", "baseline", seed, val=0.7, test=0.7)
    out = tmp_path / "reports"
    for group in ("activations", "heatmaps"):
        (out / "figures" / group).mkdir(parents=True)
        Figure(figsize=(1, 1)).savefig(out / "figures" / group / f"{group}_0.png")
    stale = write_synthetic_run(runs, "torch", "augmentation", 0, val=0.8, test=0.8)  # not in this grid
    summary = write_clean_summary(tmp_path / "summary.json")
    report = build_report(runs, summary, out, settings(["baseline"], seeds=[0, 1]))
    assert report["unexpected_runs"] == [str(stale)]
    assert [r["variant"] for r in report["rows"]] == ["baseline"]
    assert report["figures"] == {
        "activations": ["figures/activations/activations_0.png"],
        "heatmaps": ["figures/heatmaps/heatmaps_0.png"],
    }
    md = (out / "comparison.md").read_text()
    assert "### activations" in md and "](figures/heatmaps/heatmaps_0.png)" in md
    assert "Not generated" not in md


def test_interval_column_agrees_with_scipy_in_the_csv(built: Path) -> None:
    with (built / "reports" / "comparison.csv").open(newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["variant"] == "mnist_dense")
    values = measured(built / "runs", "mnist_dense", "test_accuracy")
    low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=scipy_stats.sem(values))
    assert math.isclose(float(row["test_ci_low"]), low) and math.isclose(float(row["test_ci_high"]), high)


# ---- departures, collapses and the seeds that would decide (issue 24) ----------------------------------------


def _headline_row(md: str, variant: str) -> list[str]:
    start = md.index("| Variant | Framework | Documented %")
    line = next(line for line in md[start:].splitlines() if line.startswith(f"| `{variant}` |"))
    return [cell.strip() for cell in line.strip("|").split(" | ")]


def _csv_rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as f:
        return {r["variant"]: r for r in csv.DictReader(f)}


def test_an_overridden_row_is_marked_in_the_headline_and_not_comparable(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed, value in enumerate((0.9921, 0.9925, 0.9923)):  # 99.23 ± 0.02: reproduced, were it comparable
        write_synthetic_run(runs, "torch", "mnist_convnet", seed, test=value, labels=TEN_LABELS, epochs=2,
                            overrides={"epochs": 2})  # fmt: skip
        write_synthetic_run(runs, "torch", "mnist_dense", seed, test=0.9805 + seed / 1e4, labels=TEN_LABELS)
    out = tmp_path / "reports"
    build_report(runs, write_clean_summary(tmp_path / "s.json"), out, settings(["mnist_convnet", "mnist_dense"]))
    md = (out / "comparison.md").read_text()
    _, _, _, _, verdict, why = _headline_row(md, "mnist_convnet")
    assert verdict == "**not comparable**"
    assert why.startswith("departs: epochs 2 (documented 5), which changes what is measured; by the rule: +0.15 pp")
    assert _headline_row(md, "mnist_dense")[4:] == [
        "**reproduced**",
        _csv_rows(out / "comparison.csv")["mnist_dense"]["verdict_detail"],
    ]
    row = _csv_rows(out / "comparison.csv")["mnist_convnet"]
    assert (row["verdict"], row["departures"], row["departures_change_measurement"]) == (
        "not comparable", "epochs 2 (documented 5)", "True"
    )  # fmt: skip
    assert row["seeds_needed"] == ""  # no number of seeds makes a changed run comparable


def test_a_precision_departure_is_named_and_the_verdict_stands(tmp_path: Path) -> None:
    tf32 = {"id": "tf32", "setting": "arithmetic precision", "source": "float32", "port": "TF32", "reason": "speed"}
    for seed, value in enumerate((0.9921, 0.9925, 0.9923)):
        write_synthetic_run(tmp_path, "torch", "mnist_convnet", seed, test=value, labels=TEN_LABELS,
                            fidelity=[tf32] if seed != 1 else [])  # fmt: skip
    st = settings(["mnist_convnet"])
    (row,) = build_table(collect_runs(tmp_path, st), st)
    assert row.verdict == "reproduced"
    assert row.verdict_detail.startswith("departs: TF32 arithmetic (seed 0, 2); +0.15 pp, within")
    assert [(d.id, d.changes_measurement, d.seeds) for d in row.departures] == [("tf32", False, (0, 2))]


def test_every_ledger_entry_is_classified_as_a_departure_or_the_port() -> None:
    from cnnrepro.report.departures import CHANGES_MEASUREMENT, PORT, SAME_MEASUREMENT
    from cnnrepro.train.backends.keras.ledger import KERAS_LEDGER
    from cnnrepro.train.backends.torch.ledger import TORCH_LEDGER
    from cnnrepro.train.ledger import OVERRIDE_SETTINGS, SHARED

    known = PORT | set(CHANGES_MEASUREMENT) | set(SAME_MEASUREMENT)
    assert not {e.id for e in (*SHARED, *TORCH_LEDGER, *KERAS_LEDGER)} - known
    assert not (PORT & set(CHANGES_MEASUREMENT)) and not (PORT & set(SAME_MEASUREMENT))
    assert OVERRIDE_SETTINGS  # every override is a departure that changes what is measured (by its id prefix)


def test_the_lenet_triple_reads_inconclusive_with_the_seeds_that_would_decide(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed, value in enumerate((0.7936, 0.8233, 0.8212)):
        write_synthetic_run(runs, "torch", "lenet", seed, test=value, labels=TEN_LABELS, epochs=10)
    out = tmp_path / "reports"
    report = build_report(runs, write_clean_summary(tmp_path / "s.json"), out, settings(["lenet"]))
    _, _, documented, measured_cell, verdict, why = _headline_row((out / "comparison.md").read_text(), "lenet")
    assert (documented, measured_cell, verdict) == ("78.30 (test)", "81.27 ± 1.66 (n=3)", "**inconclusive**")
    assert why == (
        "seeds too spread: ±7.76 pp tolerance > 5 pp (seed sd 1.66 pp, binomial sd 0.41 pp on 10,000 images) "
        "→ 5 seeds would decide (2 more; reproduced at the measured mean)"
    )
    row = _csv_rows(out / "comparison.csv")["lenet"]
    assert (row["seeds_needed"], row["seeds_needed_basis"], row["seeds_collapsed"]) == ("5", "measured", "")
    # comparison.json holds the same, and reads back as the dataclass the pipeline gets from the runs directly.
    (need,) = read_seeds_needed(out / "comparison.json")
    assert need == seeds_to_decide(runs, settings(["lenet"]))[0]
    assert (need.framework, need.variant, need.ablation, need.completed, need.seeds) == ("torch", "lenet", None, 3, 5)
    assert report["seeds_needed"] == [asdict(need)]


def test_a_bad_seeds_needed_entry_is_refused_naming_the_key(tmp_path: Path) -> None:
    record = {"framework": "torch", "variant": "lenet", "ablation": None, "completed": 3, "seeds": "5",
              "faithful_seeds": None, "basis": "measured", "reason": "r", "would_read": None}  # fmt: skip
    path = tmp_path / "comparison.json"
    write_json_atomic(path, {"seeds_needed": [record]})
    with pytest.raises(CnnreproError, match=re.escape(f"{path}: seeds_needed[0].seeds: '5' is not int or NoneType")):
        read_seeds_needed(path)
    write_json_atomic(path, {"seeds_needed": [record | {"seeds": None}]})
    with pytest.raises(CnnreproError, match=r"seeds_needed\[0\]\.seeds: None does not fit basis 'measured'"):
        read_seeds_needed(path)
    write_json_atomic(path, {"rows": []})
    with pytest.raises(CnnreproError, match="'seeds_needed' must be a list"):
        read_seeds_needed(path)


def test_parity_compares_the_seeds_that_learned(tmp_path: Path) -> None:
    doc = DOCUMENTED_FIGURES["baseline"]
    torch_vals, keras_vals, jax_vals = [0.70, 0.72, 0.71], [0.71, 0.705, 0.50], [0.50, 0.49, 0.51]
    for seed in range(3):
        write_synthetic_run(tmp_path, "torch", "baseline", seed, val=torch_vals[seed], test=doc)
        write_synthetic_run(tmp_path, "keras", "baseline", seed, val=keras_vals[seed], test=doc)
        write_synthetic_run(tmp_path, "jax", "baseline", seed, val=jax_vals[seed], test=doc)
    st = settings(["baseline"], frameworks=["torch", "keras", "jax"])
    rows = {r.framework: r for r in build_table(collect_runs(tmp_path, st), st)}
    keras = rows["keras"]
    assert [c.seed for c in keras.decision.collapsed] == [2]  # type: ignore[union-attr]  # 50% of 2 classes
    assert keras.parity is not None and keras.parity.reason == "needs 3 seeds on each side, has 2 and 3"
    assert keras.parity.difference_pp == pytest.approx((np.mean(keras_vals[:2]) - np.mean(torch_vals)) * 100)
    # Every jax seed at chance: the row is "below", and it has nothing to compare in a parity test.
    assert rows["jax"].verdict == "below" and rows["jax"].parity is None
    assert rows["jax"].verdict_detail.startswith("3 of 3 seeds collapsed: seed 0 at 50.00%, chance;")
