"""Issue 22's Done-when with the real tools on a tiny config (mnist_dense, two seeds, torch): DVC compares the
results of a commit and an experiment and restores the first without training; Snakemake's report has the
results; the two tools agree on what is up to date."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .pipeline_project import make_mirror, make_project, run, tiny_params

RUN = "runs/torch/mnist_dense/seed{seed}"
SEEDS = (0, 1)
EPOCHS_KEY = "train.overrides.mnist_dense.epochs"
WRAPPED = [sys.executable, "-m", "cnnrepro.orchestration.pipeline_run", "--"]


def _params(tmp_path: Path) -> dict:
    params = tiny_params(make_mirror(tmp_path))
    params["train"]["frameworks"] = ["torch"]
    params["train"]["seeds"] = list(SEEDS)
    params["train"]["variants"] = {"pets": [], "pets_fine_tuning": [], "idx": ["mnist_dense"], "keras_example": []}
    params["ablations"]["run"] = {group: [] for group in params["ablations"]["run"]}
    return params


def _run_state(project: Path) -> dict[int, tuple[str, str]]:
    """Per seed: the model's sha256 and metrics.json's text."""
    return {
        seed: (
            hashlib.sha256((project / RUN.format(seed=seed) / "artifacts/model.safetensors").read_bytes()).hexdigest(),
            (project / RUN.format(seed=seed) / "metrics.json").read_text(),
        )
        for seed in SEEDS
    }


def _set_epochs(project: Path, epochs: int) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["overrides"]["mnist_dense"]["epochs"] = epochs
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _exp_show_metrics(project: Path) -> dict[str, dict]:
    """`dvc exp show --json`: the metrics of each commit and experiment, by name (the commit by its branch)."""
    found = {}
    for entry in json.loads(run(["dvc", "exp", "show", "--json"], project).stdout):
        if entry["rev"] == "workspace":
            continue
        found[entry.get("name") or entry["rev"]] = entry["data"]["metrics"]
        for experiment in entry.get("experiments") or []:
            for rev in experiment["revs"]:
                found[rev["name"]] = rev["data"]["metrics"]
    return found


def _report_data(html: str) -> tuple[dict, dict, str]:
    """The results, categories and workflow description Snakemake's report embeds in its page."""
    results = json.loads(re.search(r"var results = (\{.*?\});?\s*\n", html).group(1))
    categories = json.loads(re.search(r"var categories = (\{.*?\});?\s*\n", html).group(1))
    description = json.loads(re.search(r"var workflow_desc = (\".*?\");?\s*\n", html).group(1))
    return results, categories, description


@pytest.mark.slow
def test_dvc_and_snakemake_see_compare_and_restore_the_results(tmp_path: Path) -> None:
    project = make_project(tmp_path, _params(tmp_path))
    for key, value in (("user.name", "cnnrepro test"), ("user.email", "test@cnnrepro.invalid")):
        run(["git", "config", key, value], project)

    # DVC: a commit, an experiment, both compared; the commit restored without training.
    repro = run([*WRAPPED, "dvc", "repro"], project)
    assert "is empty" not in repro.stdout + repro.stderr
    first = _run_state(project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "one epoch"], project)
    run([*WRAPPED, "dvc", "exp", "run", "-n", "two-epochs", "-S", f"{EPOCHS_KEY}=2"], project)

    shown = _exp_show_metrics(project)
    branch = run(["git", "branch", "--show-current"], project).stdout.strip()
    assert set(shown) == {branch, "two-epochs"}, shown.keys()
    for name, epochs in ((branch, 1), ("two-epochs", 2)):
        for seed in SEEDS:
            assert shown[name][f"{RUN.format(seed=seed)}/metrics.json"]["data"]["epochs_run"] == epochs
        headline = shown[name]["reports/summary.json"]["data"]["torch"]["mnist_dense"]
        assert headline["n"] == 2 and 0 <= headline["mean"] <= 1, headline
    diff = json.loads(run(["dvc", "metrics", "diff", "--json", "HEAD", "two-epochs"], project).stdout)
    assert diff[f"{RUN.format(seed=0)}/metrics.json"]["epochs_run"] == {"old": 1, "new": 2, "diff": 1}
    assert {"old", "new"} <= set(diff["reports/summary.json"]["torch.mnist_dense.mean"])

    plots = json.loads(run(["dvc", "plots", "diff", "--json", "HEAD", "two-epochs"], project).stdout)["data"]
    [curves] = plots["reports/curves/torch/mnist_dense.csv"]
    assert curves["type"] == "vega" and curves["revisions"] == ["HEAD", "two-epochs"]
    epochs = {
        rev: {int(p["epoch"]) for p in curves["content"]["data"]["values"] if p["rev"] == rev}
        for rev in curves["revisions"]
    }
    assert epochs == {"HEAD": {1}, "two-epochs": {1, 2}}
    images = plots["reports/plots/history_mnist_dense.png"]
    assert sorted(rev for image in images for rev in image["revisions"]) == ["HEAD", "two-epochs"]

    run(["git", "checkout", "--", "."], project)
    run(["dvc", "checkout"], project)
    assert _run_state(project) == first  # the first run's model and its own metrics, together
    assert "up to date" in run(["dvc", "status"], project).stdout
    _set_epochs(project, 2)  # the experiment's params: its runs come back from DVC's run cache
    cached = run([*WRAPPED, "dvc", "repro"], project).stdout
    assert "Running stage 'train_idx" not in cached and "is cached - skipping run" in cached, cached
    run(["git", "checkout", "--", "."], project)
    run(["dvc", "checkout"], project)

    # Snakemake after DVC: it trains nothing DVC made; a param edit reruns the trainings in both tools.
    dry = run(["snakemake", "-n"], project)
    assert "rule train_idx:" not in dry.stdout, dry.stdout
    _set_epochs(project, 3)
    status = json.loads(run(["dvc", "status", "--json"], project).stdout)
    assert sorted(status) == [f"train_idx@torch-mnist_dense-{seed}" for seed in SEEDS], status
    dry = run(["snakemake", "-n"], project)
    assert re.search(r"^train_idx\s+2$", dry.stdout, re.MULTILINE), dry.stdout
    done = run(["snakemake", "--cores", "2"], project)
    assert "recorded in dvc.lock" in done.stderr
    assert "Data and pipelines are up to date." in run(["dvc", "status"], project).stdout
    assert json.loads((project / RUN.format(seed=0) / "metrics.json").read_text())["epochs_run"] == 3

    lint = run(["snakemake", "--lint"], project, check=False)
    titles = set(re.findall(r"^    \* (.+?):$", lint.stdout + lint.stderr, re.MULTILINE))
    assert titles == {"Specify a conda environment or container for each rule."}, titles  # answered in the Snakefile

    run(["snakemake", "--report", "report.html"], project)
    results, categories, description = _report_data((project / "report.html").read_text())
    assert sorted(categories["Results"]) == ["Comparison", "Plots"]
    assert {"reports/comparison.html", "reports/comparison.csv", "reports/summary.json"} == set(
        categories["Results"]["Comparison"]
    )
    assert "reports/plots/history_mnist_dense.png" in categories["Results"]["Plots"]
    assert all(results[path]["caption"] for group in categories["Results"].values() for path in group)
    assert "cnnrepro reproduces classic convnet results" in description
    if shutil.which("chromium"):
        shot, page = tmp_path / "report.png", (project / "report.html").as_uri()
        subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--window-size=1280,900", f"--screenshot={shot}", page],
            capture_output=True,
            timeout=120,
            check=True,
        )
        assert shot.stat().st_size > 10_000
