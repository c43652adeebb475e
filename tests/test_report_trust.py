"""The report reads run outputs as untrusted input (issue 23): each hostile file is built here, then
`cnnrepro report` either refuses it in one line naming the file and the key, leaving the previous report as
it was, or (a completed run without the row's figure) reports it with counts and words that agree."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from cnnrepro import cli
from cnnrepro.fsutil import read_json
from cnnrepro.run_outputs import RunInfo, RunMetrics
from cnnrepro.variants.documented import DOCUMENTED

from .helpers_report import TEN_LABELS, write_clean_summary, write_params, write_synthetic_run

Damage = Callable[[Path], None]
BASELINE = DOCUMENTED["baseline"].documented
PREVIOUS = "previous report\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Three good baseline seeds, params, a cleaning summary, and a previous report in reports/."""
    for seed, offset in enumerate((0.004, -0.006, 0.010)):
        write_synthetic_run(tmp_path / "runs", "torch", "baseline", seed, val=BASELINE + offset, test=BASELINE)
    write_clean_summary(tmp_path / "summary.json")
    write_params(tmp_path / "params.yaml", variants={"pets": ["baseline"]})
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "comparison.md").write_text(PREVIOUS)
    return tmp_path


def report(project: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    args = ["report", "--params", str(project / "params.yaml"), "--runs", str(project / "runs")]
    args += ["--clean-summary", str(project / "summary.json"), "--out", str(project / "reports")]
    code = cli.main(args)
    return code, capsys.readouterr().err.strip()


def seed_dir(project: Path, seed: int) -> Path:
    return project / "runs" / "torch" / "baseline" / f"seed{seed}"


def edit_json(path: Path, change: Callable[[Any], Any]) -> None:
    """Rewrite a JSON file as Python's json writes it (NaN and Infinity included, as a buggy writer would)."""
    path.write_text(json.dumps(change(read_json(path))))


def set_keys(**values: Any) -> Callable[[Any], Any]:
    return lambda raw: {**raw, **values}


def every_seed(file: str, change: Callable[[Any], Any]) -> Damage:
    def apply(project: Path) -> None:
        for seed in range(3):
            edit_json(seed_dir(project, seed) / file, change)

    return apply


def seed1(file: str, change: Callable[[Any], Any]) -> Damage:
    return lambda project: edit_json(seed_dir(project, 1) / file, change)


def write_seed1(file: str, content: bytes) -> Damage:
    return lambda project: (seed_dir(project, 1) / file).write_bytes(content)


def history_row(column: str, value: str) -> Damage:
    def apply(project: Path) -> None:
        path = seed_dir(project, 1) / "history.csv"
        header, first, *rest = path.read_text().splitlines()
        cells = dict(zip(header.split(","), first.split(","), strict=True))
        cells[column] = value
        path.write_text("\n".join([header, ",".join(cells.values()), *rest]) + "\n")

    return apply


# (case, what to break, the file named in the error, the key and problem the line must name)
HOSTILE = [
    ("accuracy 1.70 on every seed", every_seed("metrics.json", set_keys(val_accuracy=1.70)), "seed0/metrics.json",
     "val_accuracy: 1.7 is out of range (expected [0, 1])"),
    ("NaN accuracy", seed1("metrics.json", set_keys(val_accuracy=float("nan"))), "seed1/metrics.json",
     "val_accuracy: nan is not a finite number"),
    ("infinite loss", seed1("metrics.json", set_keys(test_loss=float("inf"))), "seed1/metrics.json",
     "test_loss: inf is not a finite number"),
    ("accuracy as a string", seed1("metrics.json", set_keys(val_accuracy="0.72")), "seed1/metrics.json",
     "val_accuracy: '0.72' is a string, expected a number"),
    ("negative epochs_run", seed1("metrics.json", set_keys(epochs_run=-3)), "seed1/metrics.json",
     "epochs_run: -3 is out of range (expected >= 0)"),
    ("epochs_run that is not the history", seed1("metrics.json", set_keys(epochs_run=40)), "seed1/metrics.json",
     "epochs_run: 40, but history.csv has 4 epochs"),
    ("a boolean seed", seed1("metrics.json", set_keys(seed=True)), "seed1/metrics.json",
     "seed: True is a boolean, expected an integer"),
    ("unknown status", seed1("metrics.json", set_keys(status="done")), "seed1/metrics.json",
     "status: 'done' is not one of completed, not_run, failed"),
    ("metrics.json a list", seed1("metrics.json", lambda raw: [raw]), "seed1/metrics.json",
     "is a list, expected a JSON object"),
    ("run_info.json a list", seed1("run_info.json", lambda raw: list(raw)), "seed1/run_info.json",
     "is a list, expected a JSON object"),
    ("run_info config a string", seed1("run_info.json", set_keys(config="{}")), "seed1/run_info.json",
     "config: is a string, expected an object"),
    ("validation steps as text", seed1("run_info.json", lambda r: {**r, "config": {**r["config"], "batch_size": "32"}}),
     "seed1/run_info.json", "config.batch_size: '32' is a string, expected an integer"),
    ("fidelity entry a number", seed1("run_info.json", set_keys(fidelity=[7])), "seed1/run_info.json",
     "fidelity.0: is a number, expected an object"),
    ("duration negative", seed1("run_info.json", set_keys(train_duration_s=-1.0)), "seed1/run_info.json",
     "train_duration_s: -1.0 is out of range (expected >= 0)"),
    ("history accuracy over 1", history_row("val_accuracy", "1.5"), "seed1/history.csv",
     "row 1: val_accuracy: 1.5 is out of range (expected [0, 1])"),
    ("history loss infinite", history_row("loss", "1e999"), "seed1/history.csv", "row 1: loss: inf is not a finite"),
    ("history cell not a number", history_row("accuracy", "high"), "seed1/history.csv",
     "row 1: accuracy: 'high' is not a number"),
    ("history with a cell past csv's limit", history_row("loss", "9" * 200_000), "seed1/history.csv",
     "corrupt CSV (field larger than field limit"),
    ("history columns renamed", write_seed1("history.csv", b"epoch,loss\n1,2\n"), "seed1/history.csv",
     "expected columns epoch,loss,accuracy,val_loss,val_accuracy"),
    ("confusion counts as text", seed1("artifacts/confusion.json", lambda r: {**r, "matrix": [["500", 0], [0, 1]]}),
     "seed1/artifacts/confusion.json", "matrix.0.0: '500' is a string, expected an integer"),
    ("confusion not square", seed1("artifacts/confusion.json", lambda r: {**r, "matrix": [[1, 2, 3], [4, 5, 6]]}),
     "seed1/artifacts/confusion.json", "matrix: expected 2 x 2 counts"),
    ("confusion counts negative", seed1("artifacts/confusion.json", lambda r: {**r, "matrix": [[-1, 0], [0, 1]]}),
     "seed1/artifacts/confusion.json", "matrix.0.0: -1 is out of range"),
    ("binary metrics.json", write_seed1("metrics.json", b"\xff\xfe\x00{"), "seed1/metrics.json",
     "not UTF-8 text (byte 0)"),
    ("JSON nested past the parser", write_seed1("metrics.json", b"[" * 200_000), "seed1/metrics.json",
     "corrupt JSON (nested too deeply)"),
    ("a 9 MB metrics.json", write_seed1("metrics.json", b" " * (9 << 20) + b"{}"), "seed1/metrics.json",
     "larger than 8 MiB"),
    ("cleaning count as text", lambda p: edit_json(p / "summary.json", set_keys(kept="many")), "summary.json",
     "kept: 'many' is a string, expected an integer"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "damage", "file", "problem"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_run_output_is_one_line_and_the_old_report_stays(
    project: Path, capsys: pytest.CaptureFixture[str], case: str, damage: Damage, file: str, problem: str
) -> None:
    damage(project)
    code, err = report(project, capsys)
    assert code == 1
    assert len(err.splitlines()) == 1, err  # one line, no traceback
    assert err.startswith("cnnrepro report: error: ") and f"{file}: " in err and problem in err, err
    # Nothing was written: the previous report is as it was, and no plots or tables appeared beside it.
    assert sorted(p.name for p in (project / "reports").iterdir()) == ["comparison.md"]
    assert (project / "reports" / "comparison.md").read_text() == PREVIOUS


def test_the_good_grid_still_reports(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The fixture itself passes every check (so each failure above is the damage, not the fixture)."""
    code, err = report(project, capsys)
    assert (code, err) == (0, "")
    assert read_json(project / "reports" / "comparison.json")["verdict_counts"] == {"reproduced": 1}


def test_a_completed_run_without_the_rows_figure_is_named_where_the_count_drops(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """mnist_convnet is measured on test_accuracy: seed 2 completed with test_accuracy null (a run without a
    test split may do so) is not among n, and the report says so instead of "Every expected run completed"."""
    documented = DOCUMENTED["mnist_convnet"].documented
    for seed in range(3):
        test = None if seed == 2 else documented + 0.0005 * seed
        write_synthetic_run(tmp_path / "runs", "torch", "mnist_convnet", seed, val=0.99, test=test, labels=TEN_LABELS)
    assert read_json(tmp_path / "runs/torch/mnist_convnet/seed2/metrics.json")["test_accuracy"] is None
    write_clean_summary(tmp_path / "summary.json")
    write_params(tmp_path / "params.yaml", variants={"idx": ["mnist_convnet"]})
    code, err = report(tmp_path, capsys)
    assert (code, err) == (0, "")
    result = read_json(tmp_path / "reports" / "comparison.json")
    row = result["rows"][0]
    assert row["test_n"] == 2 and row["seeds_completed"] == [0, 1, 2]
    assert "completed without test_accuracy: seed 2" in row["notes"]
    markdown = (tmp_path / "reports" / "comparison.md").read_text()
    assert "Every expected run completed" not in markdown
    assert "completed without test_accuracy: seed 2" in markdown
    assert "(n=2)" in markdown


@pytest.mark.parametrize("record", [RunMetrics, RunInfo])
def test_every_field_of_the_run_contract_names_its_check(record: type) -> None:
    """A field added to the contract without a check would be read back unchecked."""
    unchecked = [f.name for f in fields(record) if "check" not in f.metadata]
    assert unchecked == []
