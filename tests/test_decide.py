"""`cnnrepro reproduce --decide` (issue 24): the added seeds file, the seeds a round adds and its caps, both
DAGs training the added runs, and a real round on a tiny pipeline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from cnnrepro.errors import ParamsError
from cnnrepro.orchestration.decide import DecideLimits, measured_durations, new_entries, plan_round, undecided_lines
from cnnrepro.orchestration.stages import TRAINING_GROUPS
from cnnrepro.report.build import seeds_to_decide
from cnnrepro.report.collect import ReportSettings, RunSlot, collect_runs, unexpected_runs
from cnnrepro.report.seeds_needed import MEASURED, SeedsNeeded
from cnnrepro.run_outputs import RunMetrics, RunRecord
from cnnrepro.variants.added_seeds import (
    AddedSeed,
    check_in_grid,
    data_dir_of,
    read_added_seeds,
    write_added_seeds,
)
from cnnrepro.variants.registry import get_variant, list_variants

from .dag import dvc_jobs, snakemake_jobs
from .helpers_report import TEN_LABELS, settings, write_synthetic_run
from .pipeline_project import make_mirror, make_project, run, tiny_params

LIMITS = DecideLimits(auto=False, max_seeds=10, max_hours=8.0)
LENET = {0: 0.7936, 1: 0.8233, 2: 0.8212}  # the triple: 5 seeds would decide it (test_report_verdict)


def lenet_runs(root: Path, values: dict[int, float] = LENET) -> ReportSettings:
    for seed, value in values.items():
        write_synthetic_run(root, "torch", "lenet", seed, test=value, labels=TEN_LABELS)
    return settings(["lenet"])


# ---- added_seeds.yaml ---------------------------------------------------------------------------------------


def test_the_file_round_trips_sorted(tmp_path: Path) -> None:
    path = tmp_path / "added_seeds.yaml"
    entries = [AddedSeed("torch", "lenet", 4, "data/prepared"), AddedSeed("torch", "lenet", 3, "data/prepared")]
    write_added_seeds(path, entries)
    assert read_added_seeds(path) == tuple(sorted(entries))
    # DVC reads the same file as `vars`: the plain YAML list of mappings its matrix iterates.
    assert yaml.safe_load(path.read_text())["added_seeds"][0] == {
        "framework": "torch",
        "variant": "lenet",
        "seed": 3,
        "data": "data/prepared",
    }
    write_added_seeds(path, [])
    assert read_added_seeds(path) == () and "added_seeds: []" in path.read_text()
    assert read_added_seeds(tmp_path / "absent.yaml") == ()


def test_every_variants_data_folder_is_its_groups() -> None:
    for variant in list_variants():
        assert data_dir_of(variant) == TRAINING_GROUPS[get_variant(variant).data_group].data_dir, variant


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"framework": "jax", "variant": "lenet", "seed": 3, "data": "data/prepared"}, "added_seeds[0].framework"),
        ({"framework": "torch", "variant": "lenett", "seed": 3, "data": "data/prepared"}, "added_seeds[0].variant"),
        ({"framework": "torch", "variant": "lenet", "seed": -1, "data": "data/prepared"}, "added_seeds[0].seed"),
        ({"framework": "torch", "variant": "lenet", "seed": True, "data": "data/prepared"}, "added_seeds[0].seed"),
        ({"framework": "torch", "variant": "lenet", "seed": 3, "data": "data/split/book"}, "added_seeds[0].data"),
        ({"framework": "torch", "variant": "lenet", "seed": 3}, "added_seeds[0]: expected a mapping"),
        (
            {"framework": "torch", "variant": "fine_tuning", "seed": 3, "data": "data/split/book"},
            "continues from feature_extraction_augmented",
        ),
    ],
)
def test_a_bad_entry_is_one_line_naming_it(tmp_path: Path, entry: dict[str, object], message: str) -> None:
    path = tmp_path / "added_seeds.yaml"
    path.write_text(yaml.safe_dump({"added_seeds": [entry]}))
    with pytest.raises(ParamsError, match=message.replace("[", r"\[").replace("]", r"\]")) as caught:
        read_added_seeds(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_a_duplicate_and_a_row_outside_the_grid_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "added_seeds.yaml"
    entry = {"framework": "torch", "variant": "lenet", "seed": 3, "data": "data/prepared"}
    path.write_text(yaml.safe_dump({"added_seeds": [entry, entry]}))
    with pytest.raises(ParamsError, match="listed twice"):
        read_added_seeds(path)
    path.write_text("added_seeds: {a: 1}\n")
    with pytest.raises(ParamsError, match="must be a list"):
        read_added_seeds(path)
    with pytest.raises(ParamsError, match=r"not a row of params\.yaml"):
        check_in_grid([AddedSeed("keras", "lenet", 3, "data/prepared")], ["torch"], ["lenet"], path)


def test_the_report_expects_the_added_seeds(tmp_path: Path) -> None:
    base = lenet_runs(tmp_path)
    added = ReportSettings(base.seeds, base.frameworks, base.variants, base.rule, base.validation_per_class, ())
    write_synthetic_run(tmp_path, "torch", "lenet", 3, test=0.81, labels=TEN_LABELS)
    assert unexpected_runs(tmp_path, added) == [str(tmp_path / "torch" / "lenet" / "seed3")]
    grown = ReportSettings(
        base.seeds,
        base.frameworks,
        base.variants,
        base.rule,
        base.validation_per_class,
        (AddedSeed("torch", "lenet", 3, "data/prepared"), AddedSeed("torch", "lenet", 4, "data/prepared")),
    )
    assert grown.seeds_of("torch", "lenet") == (0, 1, 2, 3, 4) and grown.seeds_of("keras", "lenet") == (0, 1, 2)
    slots = collect_runs(tmp_path, grown)
    assert [(s.seed, s.status) for s in slots] == [(0, "completed"), (1, "completed"), (2, "completed"),
                                                   (3, "completed"), (4, "missing")]  # fmt: skip
    assert unexpected_runs(tmp_path, grown) == []
    assert "seeds added: torch/lenet 3, 4" in grown.added_text()


# ---- a round's plan ---------------------------------------------------------------------------------------


def test_a_round_adds_exactly_the_seeds_the_report_asks_for(tmp_path: Path) -> None:
    st = lenet_runs(tmp_path)
    (need,) = seeds_to_decide(tmp_path, st)
    assert (need.basis, need.seeds, need.completed) == (MEASURED, 5, 3)
    (plan,) = plan_round([need], st, LIMITS, {("torch", "lenet"): 600.0}, 0.0)
    assert plan.added == (3, 4) and plan.seconds_per_run == 600.0
    assert new_entries([plan]) == (
        AddedSeed("torch", "lenet", 3, "data/prepared"),
        AddedSeed("torch", "lenet", 4, "data/prepared"),
    )
    assert "+2 seeds (3, 4), about 10 min each" in plan.line()


def test_the_caps_stop_a_round_and_say_so(tmp_path: Path) -> None:
    st = lenet_runs(tmp_path)
    needs = seeds_to_decide(tmp_path, st)
    (capped,) = plan_round(needs, st, DecideLimits(False, 4, 8.0), {}, 0.0)
    assert capped.added == (3,) and "decide.max_seeds = 4" in capped.note
    (full,) = plan_round(needs, st, DecideLimits(False, 3, 8.0), {}, 0.0)
    assert full.added == () and "still undecided" in full.note and "max_seeds = 3" in full.note
    # 2 runs of 1 h each against 1.5 h left of 2 h: one fits.
    (timed,) = plan_round(needs, st, DecideLimits(False, 10, 2.0), {("torch", "lenet"): 3600.0}, 1800.0)
    assert timed.added == (3,) and "decide.max_hours = 2 h" in timed.note
    (none,) = plan_round(needs, st, DecideLimits(False, 10, 2.0), {("torch", "lenet"): 3600.0}, 7200.0)
    assert none.added == ()


def test_durations_are_the_median_of_completed_runs_that_recorded_one(tmp_path: Path) -> None:
    def slot(seed: int, status: str, duration: object, variant: str = "lenet") -> RunSlot:
        metrics = RunMetrics("torch", variant, seed, status, reason=None if status == "completed" else "stopped")
        record = RunRecord(tmp_path, metrics, info={} if duration is None else {"duration_s": duration})
        return RunSlot("torch", variant, seed, tmp_path, record)

    slots = [
        slot(0, "completed", 10.0),
        slot(1, "completed", 30.0),
        slot(2, "completed", 20),
        slot(3, "failed", 1000.0),  # not completed: not a training's length
        slot(4, "completed", None),  # no duration recorded
        slot(5, "completed", -5.0),  # not a duration
        slot(6, "completed", "long"),
        RunSlot("torch", "lenet", 7, tmp_path, None),  # no outputs yet
        slot(0, "completed", None, variant="mnist_dense"),  # a row with no duration at all is left out
    ]
    assert measured_durations(slots) == {("torch", "lenet"): 20.0}


def test_effects_fine_tuning_and_hopeless_rows_are_not_run(tmp_path: Path) -> None:
    st = lenet_runs(tmp_path)
    effect = SeedsNeeded("torch", "lenet", "naive_torch_port", 3, 6, 6, MEASURED, "6 seeds a side would decide")
    tuned = SeedsNeeded("torch", "fine_tuning", None, 3, 5, None, MEASURED, "5 seeds would decide")
    never = SeedsNeeded("torch", "lenet", None, 3, None, None, "never", "never: the tolerance stays above ±6 pp")
    plans = plan_round([effect, tuned, never], st, LIMITS, {}, 0.0)
    assert [(p.variant, p.added) for p in plans] == [("fine_tuning", ()), ("lenet", ())]
    assert "continues from feature_extraction_augmented" in plans[0].note and plans[1].note.startswith("never")
    lines = undecided_lines([effect, never])
    assert "ablation naive_torch_port" in lines[0] and "never" in lines[1]


# ---- both DAGs train the added runs -------------------------------------------------------------------------


def test_both_dags_train_an_added_seed(tmp_path: Path) -> None:
    params = tiny_params(tmp_path / "mirror-unused")
    params["train"]["variants"] = {"pets": [], "pets_fine_tuning": [], "idx": ["lenet"], "keras_example": []}
    project = make_project(tmp_path, params)
    write_added_seeds(project / "added_seeds.yaml", [AddedSeed("torch", "lenet", 7, "data/prepared")])
    out = "runs/torch/lenet/seed7/metrics.json"
    (smk,) = [j for j in snakemake_jobs(project) if any(o.endswith(out) for o in j.outputs)]
    (dvc,) = [j for j in dvc_jobs(project) if any(o.endswith(out) for o in j.outputs)]
    assert smk.rule == "train_idx" and dvc.rule == "train_added"
    assert smk.cmd == dvc.cmd and "--seed 7 --data data/prepared" in smk.cmd
    report = next(j for j in snakemake_jobs(project) if j.rule == "report")
    assert out in report.inputs and "added_seeds.yaml" in report.inputs


# ---- a real round ---------------------------------------------------------------------------------------


@pytest.mark.slow  # two real rounds of `cnnrepro reproduce` under Snakemake: 2-3 minutes on a 2-core CPU
def test_decide_runs_the_seeds_the_report_asked_for_and_reports_again(tmp_path: Path) -> None:
    """mnist_dense at the book's settings on tiny learnable data, one seed: it learns, but one seed is fewer
    than report.min_seeds, so the row is inconclusive and the report asks for the seeds the rule needs;
    --decide adds exactly those, runs them through Snakemake, and the next report decides the row or says
    why it cannot. (No override: an override would make the row "not comparable", which seeds do not fix.)"""
    params = tiny_params(make_mirror(tmp_path, n_mnist_train=640, learnable=True))
    params["train"]["variants"] = {"pets": [], "pets_fine_tuning": [], "idx": ["mnist_dense"], "keras_example": []}
    params["train"]["frameworks"] = ["torch"]
    params["train"]["overrides"] = {}
    params["ablations"]["run"] = {"pets": [], "pets_fine_tuning": [], "idx": [], "keras_example": []}
    project = make_project(tmp_path, params)
    reproduce = [sys.executable, "-m", "cnnrepro.cli", "reproduce", "--cores", "2", "--no-estimate"]
    first = run([*reproduce], project, timeout=900)
    before = json.loads((project / "reports" / "comparison.json").read_text())
    (asked,) = [n for n in before["seeds_needed"] if n["ablation"] is None]
    assert asked["variant"] == "mnist_dense" and asked["completed"] == 1 and asked["seeds"] >= 3, first.stdout
    decided = run([*reproduce, "--decide"], project, timeout=900)
    entries = read_added_seeds(project / "added_seeds.yaml")
    # The first round adds exactly what the report asked for; a later round may add more at the new spread.
    first_round = decided.stdout.split("decide: round 2")[0]
    assert f"+{asked['seeds'] - 1} seeds" in first_round, decided.stdout
    assert [e.seed for e in entries][: asked["seeds"] - 1] == list(range(1, asked["seeds"]))
    for entry in entries:
        assert (project / "runs" / "torch" / "mnist_dense" / f"seed{entry.seed}" / "metrics.json").exists()
    after = json.loads((project / "reports" / "comparison.json").read_text())
    (row,) = after["rows"]
    assert after["settings"]["added_seeds"] == [e.record() for e in entries]
    still = [n for n in after["seeds_needed"] if n["ablation"] is None]
    if row["verdict"] == "inconclusive":  # then it says why, and --decide said it stopped
        assert still and ("nothing more to run" in decided.stdout or "stopped after" in decided.stdout)
    else:
        assert not still and "every row and effect is decided" in decided.stdout
