"""The MLflow UI opens our experiment in its model-training view, runs sorted by test accuracy."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from cnnrepro.run_outputs import summarize_final
from cnnrepro.tracking.store import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, ensure_experiment
from cnnrepro.tracking.ui import SORT_METRIC, runs_page_url


def test_the_experiment_is_tagged_model_training(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = ensure_experiment(uri, "view-test")
    assert MlflowClient(uri).get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


def test_the_runs_page_address_sets_the_view_and_the_sort() -> None:
    url = runs_page_url("http://127.0.0.1:5001/", "7")
    parts = urlsplit(url)
    assert parts.netloc == "127.0.0.1:5001"
    route, _, query = parts.fragment.partition("?")
    assert route == "/experiments/7/runs"
    fields = parse_qs(query)
    assert fields["workflowType"] == ["machine_learning"]
    assert unquote(fields["orderByKey"][0]) == f"metrics.`{SORT_METRIC}`"
    assert fields["orderByAsc"] == ["false"]


def test_the_sort_metric_is_a_run_summary_figure() -> None:
    history = [{"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.5}]
    final = {"accuracy": 0.75, "loss": 0.5, "targets": [0, 1], "predictions": [0, 0]}
    metrics, _ = summarize_final(history, final, ["a", "b"], "test", True)
    assert metrics[SORT_METRIC] == 0.75
