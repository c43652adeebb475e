"""Snakefile and dvc.yaml both exist, so they must describe the same DAG: same jobs, commands, inputs, outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

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
        assert s_job.rule == d_job.rule, f"{where}: rule {s_job.rule} vs stage {d_job.rule}"
        assert s_job.cmd == d_job.cmd, f"{where}: commands differ\n  snakemake: {s_job.cmd}\n  dvc:       {d_job.cmd}"
        uncovered = [i for i in s_job.inputs if not any(covers(d, i) for d in d_job.inputs)]
        assert not uncovered, f"{where}: Snakemake inputs missing from DVC deps: {uncovered}"
        unused = [d for d in d_job.inputs if not any(covers(d, i) for i in s_job.inputs)]
        assert not unused, f"{where}: DVC deps missing from Snakemake inputs: {unused}"
    return len(smk)


def test_shipped_dag_is_the_same_in_both_tools() -> None:
    assert assert_same_dag(PROJECT_ROOT) > 10


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
    # download x3, clean, split, prepare_mnist x2, one training job per group left, visualize, report.
    assert assert_same_dag(pipeline_copy) == 3 + 1 + 1 + 2 + 1 + 1 + 1 + 1


def test_drift_is_detected(pipeline_copy: Path) -> None:
    dvc_yaml = pipeline_copy / "dvc.yaml"
    dvc_yaml.write_text(dvc_yaml.read_text().replace("--out data/split", "--out data/splits"))
    with pytest.raises(AssertionError, match="commands differ"):
        assert_same_dag(pipeline_copy)
