"""What an MLflow user finds of a tiny pipeline (real SQLite store): the trained model as a logged model that
`mlflow.pyfunc.load_model` loads and that scores like `cnnrepro evaluate`, dataset inputs with the data hash,
params without "None", the run's images and system metrics, the `dvc exp run` experiment's name, and the
report's headline on the parent run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnnrepro.cli import main
from cnnrepro.report.ledger import mlflow_ui_line
from cnnrepro.tracking.dvc_experiment import DVC_EXP_TAG
from cnnrepro.tracking.pipeline import start_pipeline_run
from cnnrepro.tracking.store import client
from cnnrepro.tracking.tracked_run import param_values

from .helpers_mlflow import logged_model_of, model_files, parent_headline, pyfunc_scores
from .helpers_train import make_npz, needs_tf, shared_store, tiny_overrides, train, train_args, write_params

EXPERIMENT = "train-tests"  # helpers_train.write_params's experiment
DVC_EXPERIMENT = "tiny-exp"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One tiny mnist_dense run under a parent run, as a job of `dvc exp run` would see it, then the report."""
    root = tmp_path_factory.mktemp("mlflow-models")
    prepared = root / "prepared"
    make_npz(prepared / "mnist.npz")
    uri = shared_store(tmp_path_factory)
    variants = {"pets": [], "pets_fine_tuning": [], "idx": ["mnist_dense"], "keras_example": []}
    params = write_params(
        root / "params.yaml",
        tracking_uri=uri,
        overrides=tiny_overrides(mnist_dense={"batch_size": 32, "epochs": 2}),
        log_models=True,
        seeds=[0],
        frameworks=["torch"],
        variants=variants,
    )
    out = root / "runs" / "torch" / "mnist_dense" / "seed0"
    with pytest.MonkeyPatch.context() as env:
        # Opened before DVC names the experiment, as `make dvc-repro` wrapping `dvc exp run` does.
        parent = start_pipeline_run(uri, EXPERIMENT)
        env.setenv("CNNREPRO_PARENT_RUN_ID", parent)
        env.setenv("DVC_EXP_NAME", DVC_EXPERIMENT)
        assert train("mnist_dense", 0, prepared, out, params=params, checkpoints=root / "ck") == 0
        report = ["report", "--params", str(params), "--runs", str(root / "runs"), "--out", str(root / "reports")]
        assert main([*report, "--clean-summary", str(root / "no-summary.json")]) == 0
    run_id = json.loads((out / "run_info.json").read_text())["mlflow"]["run_id"]
    yield {"uri": uri, "root": root, "prepared": prepared, "out": out, "run_id": run_id, "parent": parent}


def test_the_logged_model_loads_with_pyfunc_and_scores_like_evaluate(
    pipeline: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from cnnrepro.inference.evaluate import load_trained
    from cnnrepro.train.engine.splits import load_npz

    model = logged_model_of(pipeline["uri"], pipeline["run_id"])
    assert model.name == "torch-mnist_dense-seed0" and str(model.status) == "READY"
    run = client(pipeline["uri"]).get_run(pipeline["run_id"])
    assert [m.model_id for m in run.outputs.model_outputs] == [model.model_id]
    # Models from code: the network is rebuilt from the registry and safetensors weights, nothing pickled.
    files = model_files(model)
    assert "model.safetensors" in files and "pyfunc_code.py" in files
    assert not [name for name in files if name.endswith((".pkl", ".pickle", ".pt", ".pth"))]

    argv = ["evaluate", "--run", str(pipeline["out"]), "--data", "mnist", "--prepared", str(pipeline["prepared"])]
    assert main(argv) == 0
    evaluated = json.loads(capsys.readouterr().out)
    test = load_npz(pipeline["prepared"] / "mnist.npz", tuple(str(i) for i in range(10)))["test"]
    accuracy, scored = pyfunc_scores(pipeline["uri"], model.model_id, test)
    # Same weights, same input pipeline, same batches of 64 (evaluate's default): the same predictions.
    trained, config = load_trained(pipeline["out"])
    expected = trained.class_probabilities(test.images)
    np.testing.assert_array_equal(scored[list(config.data.classes)].to_numpy(), expected)
    assert len(scored) == evaluated["n"] == 60
    assert accuracy == evaluated["accuracy"]


def test_the_run_has_dataset_inputs_typed_params_images_and_system_metrics(pipeline: dict[str, Any]) -> None:
    store = client(pipeline["uri"])
    run = store.get_run(pipeline["run_id"])
    info = json.loads((pipeline["out"] / "run_info.json").read_text())
    contexts = {
        d.dataset.name: (d.dataset.digest, json.loads(d.dataset.source)["uri"], [t.value for t in d.tags])
        for d in run.inputs.dataset_inputs
    }
    # MLflow keeps one dataset per (name, digest) in an experiment: the same data trained on from another
    # folder of this shared store (another test's copy of the same npz) keeps the source first logged.
    source = str(pipeline["prepared"] / "mnist.npz")
    digest = info["data_manifest_sha256"][:32]
    contexts = {name: (d, source if s.endswith("/mnist.npz") else s, tags) for name, (d, s, tags) in contexts.items()}
    assert contexts == {
        "mnist-train": (digest, source, ["training"]),
        "mnist-validation": (digest, source, ["validation"]),
        "mnist-test": (digest, source, ["test"]),
    }
    assert "None" not in run.data.params.values()
    assert run.data.params["batch_size"] == "32" and run.data.params["learning_rate"] == "0.001"
    assert run.data.params["input_shape"] == "[1, 28, 28]"
    plots = {a.path: a.file_size for a in store.list_artifacts(pipeline["run_id"], "plots")}
    assert set(plots) == {"plots/learning_curves.png", "plots/confusion_matrix.png"} and min(plots.values()) > 0
    assert any(key.startswith("system/cpu_utilization") for key in run.data.metrics)
    assert run.data.tags[DVC_EXP_TAG] == DVC_EXPERIMENT
    assert run.data.tags["mlflow.source.name"] == "cnnrepro train"


def test_the_parent_run_is_named_after_the_experiment_and_holds_the_headline(pipeline: dict[str, Any]) -> None:
    store = client(pipeline["uri"])
    parent = store.get_run(pipeline["parent"])
    assert parent.info.run_name == DVC_EXPERIMENT and parent.data.tags[DVC_EXP_TAG] == DVC_EXPERIMENT
    (row,) = json.loads((pipeline["root"] / "reports" / "comparison.json").read_text())["rows"]
    metrics = parent_headline(pipeline["uri"], pipeline["parent"])
    assert metrics["torch.mnist_dense.mean_accuracy"] == row["test_mean"]
    assert metrics["torch.mnist_dense.n"] == row["test_n"] == 1
    assert metrics["torch.mnist_dense.documented"] == row["documented"]
    assert "torch.mnist_dense.sd" not in metrics  # one seed has no spread: absent, not 0 or NaN
    assert parent.data.tags["verdict.torch.mnist_dense"] == row["verdict"]
    assert parent.data.params["report.seeds"] == "[0]" and parent.data.params["report.frameworks"] == '["torch"]'
    assert "report.rule.min_seeds" in parent.data.params
    logged = {a.path for a in store.list_artifacts(pipeline["parent"], "report")}
    assert {"report/comparison.json", "report/comparison.html", "report/plots"} <= logged


@needs_tf
def test_a_keras_run_is_a_logged_model_that_scores_like_its_run(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from cnnrepro.inference.evaluate import load_trained
    from cnnrepro.params import load_params
    from cnnrepro.train import cli as train_cli
    from cnnrepro.train.engine.splits import load_npz

    make_npz(tmp_path / "prepared" / "mnist.npz")
    uri = shared_store(tmp_path_factory)
    overrides = tiny_overrides(mnist_dense={"batch_size": 32, "epochs": 1})
    params = write_params(tmp_path / "params.yaml", tracking_uri=uri, overrides=overrides, log_models=True)
    args = train_args("mnist_dense", 0, tmp_path / "prepared", tmp_path / "run", params=params, checkpoints=tmp_path)
    args.framework = "keras"
    assert train_cli.run(load_params(params), args) == 0
    run_id = json.loads((tmp_path / "run" / "run_info.json").read_text())["mlflow"]["run_id"]
    model = logged_model_of(uri, run_id)
    requirements = (Path(model.artifact_location.removeprefix("file://")) / "requirements.txt").read_text().split()
    assert "keras_backend==tensorflow" not in requirements and any(r.startswith("keras==") for r in requirements)
    test = load_npz(tmp_path / "prepared" / "mnist.npz", tuple(str(i) for i in range(10)))["test"]
    accuracy, scored = pyfunc_scores(uri, model.model_id, test)
    trained, config = load_trained(tmp_path / "run")
    np.testing.assert_array_equal(
        scored[list(config.data.classes)].to_numpy(), trained.class_probabilities(test.images)
    )
    assert accuracy == json.loads((tmp_path / "run" / "metrics.json").read_text())["test_accuracy"]


def test_a_parent_opened_inside_an_experiment_is_named_at_once_and_keeps_its_name(
    pipeline: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnrepro.tracking.dvc_experiment import name_after_experiment

    monkeypatch.setenv("DVC_EXP_NAME", "exp-at-start")
    parent = start_pipeline_run(pipeline["uri"], EXPERIMENT)
    name_after_experiment(pipeline["uri"], parent, "another-exp")  # a later experiment's job renames nothing
    run = client(pipeline["uri"]).get_run(parent)
    assert run.info.run_name == "exp-at-start" and run.data.tags[DVC_EXP_TAG] == "exp-at-start"


def test_params_leave_out_none_and_write_lists_as_json() -> None:
    values = param_values({"a": None, "b": {"c": 0.001, "d": None}, "e": [1, 28, 28], "f": ["x"], "g": True})
    assert values == {"b.c": "0.001", "e": "[1, 28, 28]", "f": '["x"]', "g": "True"}


def test_the_report_links_to_the_model_training_runs_view() -> None:
    local = mlflow_ui_line("sqlite:////p/mlflow.db", "3")
    assert local.startswith("mlflow ui --backend-store-uri sqlite:////p/mlflow.db")
    assert "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning" in local
    server = mlflow_ui_line("http://tracking:5000", "3")
    assert server.startswith("http://tracking:5000/#/experiments/3/runs?workflowType=machine_learning")
