"""params.yaml is validated once, the same way for Snakemake and for the Python loader."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from cnnrepro.cli import main as cli_main
from cnnrepro.errors import ParamsError
from cnnrepro.params import load_params

from .conftest import PROJECT_ROOT


def _write_params(tmp_path: Path, mutate) -> Path:
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    mutate(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def test_shipped_params_are_valid() -> None:
    params = load_params(PROJECT_ROOT / "params.yaml")
    assert params["train"]["seeds"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda p: p["train"].update(epochs_typo=3), "train.epochs_typo: unknown key"),
        (lambda p: p["train"]["variants"]["pets"].append("resnet"), "train.variants.pets.4"),
        (lambda p: p["train"].update(seeds="0"), "train.seeds"),
        (lambda p: p["train"]["overrides"].update(baseline={"epochs": -1}), "train.overrides.baseline.epochs"),
        (lambda p: p["train"]["overrides"].update(resnet={"epochs": 1}), "train.overrides.resnet: unknown name"),
        (lambda p: p["download"]["petimages"].update(sha256="xyz"), "download.petimages.sha256"),
        (lambda p: p["report"].pop("min_seeds"), "report.min_seeds: missing key"),
        (lambda p: p.update(extra={}), "extra: unknown key"),
    ],
)
def test_bad_params_name_the_key(tmp_path: Path, mutate, expected: str) -> None:
    path = _write_params(tmp_path, mutate)
    with pytest.raises(ParamsError) as info:
        load_params(path)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_environment_overrides_mirror_and_tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNREPRO_DATA_MIRROR", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    params = load_params(PROJECT_ROOT / "params.yaml")
    assert params["data"]["mirror"] == str(tmp_path)
    assert params["tracking"]["uri"] == "http://127.0.0.1:5000"


def test_missing_mirror_is_an_error_naming_the_key(tmp_path: Path) -> None:
    from cnnrepro.params import mirror_dir

    path = _write_params(tmp_path, lambda p: p["data"].update(mirror=str(tmp_path / "nowhere")))
    with pytest.raises(ParamsError, match=r"data\.mirror: mirror directory .*nowhere does not exist"):
        mirror_dir(load_params(path))


def test_cli_reports_bad_params_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_params(tmp_path, lambda p: p["train"].update(device="tpu"))
    # Every stage validates params before touching its inputs or outputs.
    code = cli_main(["download", "--params", str(path), "--dataset", "mnist", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1
    assert "train.device" in err[0]
    assert not (tmp_path / "out").exists()


def test_snakemake_rejects_the_same_bad_params(tmp_path: Path) -> None:
    path = _write_params(tmp_path, lambda p: p["train"].update(epochs_typo=3))
    result = subprocess.run(
        ["snakemake", "-n", "--configfile", str(path), "--cores", "1"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "epochs_typo" in result.stdout + result.stderr
