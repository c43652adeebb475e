"""`cnnrepro evaluate` and `cnnrepro predict` on tiny trained runs, and their one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnrepro.cli import main

from .helpers_train import make_image_folder, make_npz, shared_store, tiny_overrides, train, write_params


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny baseline run (image folders) and a tiny mnist_dense run (arrays), trained once."""
    root = tmp_path_factory.mktemp("runs")
    book = make_image_folder(root / "book", {"train": 4, "validation": 2, "test": 3})
    prepared = root / "prepared"
    make_npz(prepared / "mnist.npz")
    overrides = tiny_overrides(baseline={"epochs": 1}, mnist_dense={"batch_size": 32, "epochs": 1})
    params = write_params(root / "params.yaml", tracking_uri=shared_store(tmp_path_factory), overrides=overrides)
    runs = {"book": book, "prepared": prepared, "params": params}
    for variant, data in (("baseline", book), ("mnist_dense", prepared)):
        out = root / "runs" / variant
        assert train(variant, 0, data, out, params=params, checkpoints=root / "ck") == 0
        runs[variant] = out
    return runs


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_evaluate_reproduces_the_runs_own_test_figures(trained: dict[str, Path], capsys) -> None:
    assert main(["evaluate", "--run", str(trained["baseline"]), "--data", str(trained["book"] / "test")]) == 0
    result = json.loads(capsys.readouterr().out)
    metrics = json.loads((trained["baseline"] / "metrics.json").read_text())
    assert result["n"] == 6
    assert result["accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert result["loss"] == pytest.approx(metrics["test_loss"], rel=1e-5)
    argv = ["evaluate", "--run", str(trained["mnist_dense"]), "--data", "mnist", "--prepared", str(trained["prepared"])]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    metrics = json.loads((trained["mnist_dense"] / "metrics.json").read_text())
    assert result["n"] == 60 and result["accuracy"] == pytest.approx(metrics["test_accuracy"])


def test_predict_labels_each_image_consistently_with_evaluate(trained: dict[str, Path], capsys) -> None:
    images = sorted((trained["book"] / "test").rglob("*.jpg"))
    assert main(["predict", "--run", str(trained["baseline"]), *map(str, images)]) == 0
    lines = _json_lines(capsys.readouterr().out)
    assert [line["image"] for line in lines] == [str(p) for p in images]
    for line in lines:
        assert line["label"] in ("cats", "dogs")
        assert sum(line["probabilities"].values()) == pytest.approx(1.0)
        assert line["probability"] == max(line["probabilities"].values())
    correct = sum(line["label"] == Path(line["image"]).parent.name for line in lines)
    main(["evaluate", "--run", str(trained["baseline"]), "--data", str(trained["book"] / "test")])
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(correct / len(images))


def test_predict_on_a_digit_run_reads_grayscale(trained: dict[str, Path], tmp_path: Path, capsys) -> None:
    digit = tmp_path / "digit.png"
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8), mode="L").save(digit)
    assert main(["predict", "--run", str(trained["mnist_dense"]), str(digit)]) == 0
    (line,) = _json_lines(capsys.readouterr().out)
    assert line["label"] in [str(d) for d in range(10)] and len(line["probabilities"]) == 10


def _error(argv: list[str], capsys) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    return err


def test_bad_runs_and_images_fail_in_one_line(trained: dict[str, Path], tmp_path: Path, capsys) -> None:
    test_dir = str(trained["book"] / "test")
    err = _error(["evaluate", "--run", str(tmp_path / "nope"), "--data", test_dir], capsys)
    assert err.startswith("cnnrepro evaluate: error:") and "run directory missing" in err
    broken = tmp_path / "broken"
    shutil.copytree(trained["baseline"], broken)
    (broken / "metrics.json").write_text("{not json")
    assert "metrics.json: corrupt JSON" in _error(["evaluate", "--run", str(broken), "--data", test_dir], capsys)
    shutil.copy(trained["baseline"] / "metrics.json", broken / "metrics.json")
    (broken / "artifacts" / "model.safetensors").write_bytes(b"garbage")
    assert "model.safetensors: cannot load" in _error(["predict", "--run", str(broken), test_dir], capsys)
    image = next((trained["book"] / "test" / "cats").iterdir())
    err = _error(["predict", "--run", str(trained["baseline"]), str(image), str(tmp_path / "missing.jpg")], capsys)
    assert err == f"cnnrepro predict: error: {tmp_path / 'missing.jpg'}: image missing"
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    assert "bad.jpg: cannot decode image" in _error(
        ["predict", "--run", str(trained["baseline"]), str(tmp_path / "bad.jpg")], capsys
    )
    err = _error(["evaluate", "--run", str(trained["mnist_dense"]), "--data", "fashion_mnist"], capsys)
    assert "the run was trained on mnist" in err


def test_a_not_run_run_has_no_model_to_use(trained: dict[str, Path], tmp_path: Path, capsys) -> None:
    run = tmp_path / "not_run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"status": "not_run", "reason": "ImageNet weights unavailable"}))
    err = _error(["evaluate", "--run", str(run), "--data", str(trained["book"] / "test")], capsys)
    assert "run is not_run, no trained model (ImageNet weights unavailable)" in err


def test_the_installed_command_runs(trained: dict[str, Path]) -> None:
    """The console script end to end (argument parsing, exit codes, stdout) in a fresh process."""
    done = subprocess.run(
        ["cnnrepro", "evaluate", "--run", str(trained["baseline"]), "--data", str(trained["book"] / "test")],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)) == {"accuracy", "loss", "n"}
