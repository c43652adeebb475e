"""Snakefile and dvc.yaml both exist, so they must describe the same DAG: same jobs, commands, inputs, outputs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cnnrepro.orchestration.stages import stage_of
from cnnrepro.variants.registry import DATA_GROUPS

from .conftest import PROJECT_ROOT
from .dag import Job, covers, dvc_jobs, snakemake_jobs
from .pipeline_project import make_project


def _by_outputs(jobs: list[Job]) -> dict[frozenset[str], Job]:
    return {job.outputs: job for job in jobs if job.rule != "all"}


def assert_same_dag(root: Path) -> int:
    smk = _by_outputs(snakemake_jobs(root))
    dvc = _by_outputs(dvc_jobs(root))
    assert set(smk) == set(dvc), (
        f"only in Snakemake: {sorted(map(sorted, set(smk) - set(dvc)))}; "
        f"only in DVC: {sorted(map(sorted, set(dvc) - set(smk)))}"
    )
    for outputs, s_job in smk.items():
        d_job = dvc[outputs]
        where = f"job producing {sorted(outputs)[0]}"
        # An added seed's run: DVC's train_added stage, Snakemake's rule of the variant's data group.
        if d_job.rule != "train_added" or not s_job.rule.startswith("train_"):
            assert s_job.rule == d_job.rule, f"{where}: rule {s_job.rule} vs stage {d_job.rule}"
        assert s_job.cmd == d_job.cmd, f"{where}: commands differ\n  snakemake: {s_job.cmd}\n  dvc:       {d_job.cmd}"
        uncovered = [i for i in s_job.inputs if not any(covers(d, i) for d in d_job.inputs)]
        assert not uncovered, f"{where}: Snakemake inputs missing from DVC deps: {uncovered}"
        unused = [d for d in d_job.inputs if not any(covers(d, i) for i in s_job.inputs)]
        assert not unused, f"{where}: DVC deps missing from Snakemake inputs: {unused}"
    return len(smk)


def test_shipped_dag_is_the_same_in_both_tools() -> None:
    assert assert_same_dag(PROJECT_ROOT) > 10


def test_ablation_jobs_are_in_both_dags_with_their_chain(pipeline_copy: Path) -> None:
    params = yaml.safe_load((pipeline_copy / "params.yaml").read_text())
    params["train"]["seeds"] = [3]
    params["ablations"]["run"] = {
        "pets": [{"variant": "feature_extraction_augmented", "ablation": "frozen_base"}],
        "pets_fine_tuning": [{"variant": "fine_tuning", "ablation": "frozen_base"}],
        "idx": [{"variant": "mnist_convnet", "ablation": "keras3_rmsprop"}],
        "keras_example": [{"variant": "cam_convnet", "ablation": "naive_torch_port"}],
    }
    (pipeline_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert_same_dag(pipeline_copy)
    jobs = {job.rule: job for job in snakemake_jobs(pipeline_copy) if job.rule.startswith("ablate_")}
    assert set(jobs) == {"ablate_pets", "ablate_pets_fine_tuning", "ablate_idx", "ablate_keras_example"}
    fine = jobs["ablate_pets_fine_tuning"]
    assert "runs/torch/fine_tuning/ablation-frozen_base/seed3/metrics.json" in fine.outputs
    assert "runs/torch/feature_extraction_augmented/ablation-frozen_base/seed3/artifacts" in fine.inputs
    assert fine.cmd.endswith(
        "--ablation frozen_base --init-from runs/torch/feature_extraction_augmented/ablation-frozen_base/seed3"
    )
    assert "--ablation keras3_rmsprop" in jobs["ablate_idx"].cmd


def test_an_ablation_run_that_cannot_be_trained_fails_the_snakemake_parse(pipeline_copy: Path) -> None:
    params = yaml.safe_load((pipeline_copy / "params.yaml").read_text())
    params["ablations"]["run"]["idx"] = [{"variant": "lenet", "ablation": "keras3_rmsprop"}]
    (pipeline_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(AssertionError, match="lenet/keras3_rmsprop: the ablation does not apply to lenet"):
        snakemake_jobs(pipeline_copy)


@pytest.fixture
def pipeline_copy(tmp_path: Path) -> Path:
    return make_project(tmp_path)


def test_params_change_moves_both_dags_together(pipeline_copy: Path) -> None:
    params = yaml.safe_load((pipeline_copy / "params.yaml").read_text())
    params["train"]["seeds"] = [7]
    params["train"]["variants"] = {"pets": ["baseline"], "pets_fine_tuning": [], "idx": ["lenet"], "keras_example": []}
    (pipeline_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    jobs = {job.rule: job for job in snakemake_jobs(pipeline_copy)}
    assert "runs/torch/baseline/seed7/metrics.json" in jobs["train_pets"].outputs
    assert "train_pets_fine_tuning" not in jobs
    assert "runs/torch/lenet/ablation-naive_torch_port/seed7/metrics.json" in jobs["ablate_idx"].outputs
    # download x3, clean, split, prepare_mnist x2, one training job per group left, the one ablation job
    # of the test params (lenet/naive_torch_port), visualize, report.
    assert assert_same_dag(pipeline_copy) == 3 + 1 + 1 + 2 + 1 + 1 + 1 + 1 + 1


def test_drift_is_detected(pipeline_copy: Path) -> None:
    dvc_yaml = pipeline_copy / "dvc.yaml"
    dvc_yaml.write_text(dvc_yaml.read_text().replace("--out data/split", "--out data/splits"))
    with pytest.raises(AssertionError, match="commands differ"):
        assert_same_dag(pipeline_copy)


def test_every_rule_tracks_the_params_its_dvc_stage_tracks() -> None:
    """The params a job depends on are listed once, in cnnrepro.orchestration.stages: dvc.yaml's lists are
    written from it and each Snakemake rule takes its stage's list as its `params` (workflow/rules/common.smk:
    tracked_params), so both tools rerun on the same keys."""
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        listed = stage.get("do", stage).get("params")
        assert listed == [key.replace("{dataset}", "${item}") for key in stage_of(name).params], name
    rules: dict[str, str] = {}
    for smk in sorted((PROJECT_ROOT / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        for match in re.finditer(r"^rule (\w+):\n(.*?)(?=^rule |^for |\Z)", text, re.MULTILINE | re.DOTALL):
            rules[match.group(1)] = match.group(2)
        # Rules written once per data group: `rule:` with `name: f"<family>_{group}"` in a loop over the groups.
        for match in re.finditer(r'name:\s*f"(\w+)_\{group\}"(.*?)(?=^\S|\Z)', text, re.MULTILINE | re.DOTALL):
            for group in DATA_GROUPS:
                rules[f"{match.group(1)}_{group}"] = match.group(2).replace("{group}", group)
    # train_added (the seeds `reproduce --decide` adds) has no rule of its own: the train_<group> rules
    # make those runs (tests/test_decide.py: test_both_dags_train_an_added_seed).
    assert set(rules) - {"all"} == set(stages) - {"train_added"}
    for name, body in rules.items():
        if name == "all":
            continue
        assert f'tracked=tracked_params("{name}")' in body or 'tracked=tracked_params(f"' in body, name


@pytest.mark.slow
def test_a_tracked_param_reruns_the_job_in_both_tools_and_another_does_not(pipeline_copy: Path) -> None:
    from .pipeline_project import run

    run(["snakemake", "--cores", "1", "data/raw/mnist"], pipeline_copy)
    run(["dvc", "commit", "-f", "download@mnist"], pipeline_copy)

    def stale() -> tuple[bool, bool]:
        smk = run(["snakemake", "-n", "--cores", "1", "data/raw/mnist"], pipeline_copy).stdout
        dvc = run(["dvc", "status", "download@mnist"], pipeline_copy).stdout
        return "Nothing to be done" not in smk, "up to date" not in dvc

    assert stale() == (False, False)
    params = yaml.safe_load((pipeline_copy / "params.yaml").read_text())
    params["report"]["max_tolerance_pp"] = params["report"]["max_tolerance_pp"] + 1
    params["train"]["seeds"] = [5]  # neither tracked by the download stage
    (pipeline_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert stale() == (False, False)
    params["download"]["timeout_s"] = params["download"]["timeout_s"] + 1
    (pipeline_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert stale() == (True, True)
