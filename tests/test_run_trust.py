"""Training runs that cannot end "completed" on garbage, and `--out` folders nothing destroys (issue 23).

Each case builds its own data, params and MLflow store, runs `cnnrepro train` through the command's own
entry point (cnnrepro.cli.main: exit code and the one stderr line) and checks what is left on disk and
in MLflow.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from cnnrepro.report.collect import ReportSettings, collect_runs
from cnnrepro.report.table import FAILED, build_row
from cnnrepro.run_outputs import load_run
from cnnrepro.tracking.store import client as store_client
from cnnrepro.train.cli import TAG_DIVERGED_AT
from cnnrepro.train.engine import checkpoint as ckpt

from .helpers_train import make_npz, needs_tf, shared_store, tiny_overrides, write_params

VARIANT = "lenet"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return shared_store(tmp_path_factory)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prepared")
    make_npz(root / "fashion_mnist.npz", n_train=64, n_test=16)
    return root


def train_argv(params: Path, framework: str, data: Path, out: Path, seed: int = 0) -> list[str]:
    return [
        "train", "--params", str(params), "--framework", framework, "--variant", VARIANT, "--seed", str(seed),
        "--data", str(data), "--out", str(out), "--checkpoints", str(out.parent / "checkpoints"),
    ]  # fmt: skip


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], float]:
    """(exit code, stderr lines, seconds) of `cnnrepro <argv>` in this process."""
    import torch

    from cnnrepro.cli import main

    threads = torch.get_num_threads()
    capsys.readouterr()
    started = time.perf_counter()
    try:
        code = main(argv)
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - started
    # MLflow's and alembic's INFO logging (creating a new store's tables) is theirs, not the command's.
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip() and " INFO " not in line]
    return code, lines, seconds


def mlflow_run(store: str, out: Path) -> Any:
    run_id = json.loads((out / "run_info.json").read_text())["mlflow"]["run_id"]
    return store_client(store).get_run(run_id)


# --- a loss that turns non-finite stops the run as diverged -------------------------------------------------

# The schema refuses rates that cannot train (non-finite, above 10), so the test hands each backend's own
# optimizer factory the rate the issue saw pass the old schema, `.inf`: SGD's first update makes the weights
# inf/nan and the first epoch's loss (its second batch on) is nan: a real divergence, in the real loop.
TINY = tiny_overrides(**{VARIANT: {"epochs": 3, "batch_size": 8}})
OPTIMIZER_FACTORY = {
    "torch": "cnnrepro.train.backends.torch.trainer.make_optimizer",
    "keras": "cnnrepro.train.backends.keras.optimizers.make_optimizer",
}


def explode_optimizer(monkeypatch: pytest.MonkeyPatch, framework: str) -> None:
    import importlib

    module, name = OPTIMIZER_FACTORY[framework].rsplit(".", 1)
    real = getattr(importlib.import_module(module), name)
    if framework == "torch":
        monkeypatch.setattr(module + "." + name, lambda kind, params, lr: real(kind, params, lr * math.inf))
    else:
        monkeypatch.setattr(module + "." + name, lambda kind, lr: real(kind, lr * math.inf))


@pytest.mark.parametrize("framework", ["torch", pytest.param("keras", marks=needs_tf)])
def test_a_non_finite_loss_stops_the_run_as_diverged(
    framework: str,
    store: str,
    prepared: Path,
    work: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    explode_optimizer(monkeypatch, framework)
    params = write_params(work / "params.yaml", tracking_uri=store, overrides=TINY, frameworks=["torch", "keras"])
    out = work / "runs" / framework / VARIANT / "seed0"
    code, err, seconds = run_cli(train_argv(params, framework, prepared, out), capsys)

    assert code == 0  # as a not_run run: the pipeline goes on and keeps the outputs the report counts failed
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith(f"cnnrepro train: {framework}/{VARIANT}/seed0: diverged at epoch 1: loss ")
    record = load_run(out)  # the run contract holds for a diverged run too
    assert record.metrics.status == "diverged" and record.metrics.reason.startswith("diverged at epoch 1: loss ")
    assert record.metrics.epochs_run == len(record.history) == 1 and not math.isfinite(record.history[0]["loss"])
    assert record.info["status"] == "diverged" and record.info["diverged_epoch"] == 1
    assert not (out / "artifacts" / "model.safetensors").exists() and not (out / "artifacts" / "model.keras").exists()
    # The diverged epoch was never checkpointed: the checkpoint, if any, is an earlier finite epoch.
    assert not ckpt.checkpoint_path(out.parent / "checkpoints", framework, VARIANT, 0).exists()
    run = mlflow_run(store, out)
    assert run.info.status == "FAILED"
    assert run.data.tags["status"] == "diverged" and run.data.tags[TAG_DIVERGED_AT] == "1"

    # The report counts it as failed, with the reason.
    settings = ReportSettings(seeds=(0,), frameworks=(framework,), variants=(VARIANT,))
    slots = collect_runs(work / "runs", settings)
    row = build_row(VARIANT, framework, slots, settings)
    assert row.seeds_failed == [0] and row.seeds_completed == []
    assert row.verdict == FAILED and "diverged at epoch 1: loss" in row.verdict_detail
    left = sorted(p.name for p in out.iterdir())
    print(f"TABLE diverged/{framework} | {code} | {err[0]} | {seconds:.1f} s | - | {left}")


# --- --out: only a new or empty folder, or this run's own ------------------------------------------------


def params_for(work: Path, store: str, experiment: str) -> Path:
    """Tiny lenet params whose MLflow experiment is this test's alone (its runs can be counted)."""
    path = write_params(work / "params.yaml", tracking_uri=store, overrides=TINY)
    params = yaml.safe_load(path.read_text())
    params["tracking"]["experiment"] = experiment
    path.write_text(yaml.safe_dump(params))
    return path


def runs_named(store: str, experiment: str, name: str) -> list[Any]:
    client = store_client(store)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], max_results=100) if found else []
    return [r for r in runs if r.info.run_name == name]


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root (relative path -> bytes): what a refused command must leave as it was."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("a user's folder", "holds keep.bin, notes and no run_info.json, so not this run's outputs; nothing touched"),
        ("another run's outputs", "holds the outputs of torch/lenet/seed1 ("),
        ("an unreadable run_info.json", "cannot tell whose outputs it holds ("),
    ],
)
def test_out_that_is_not_this_runs_is_refused_untouched(
    case: str, expected: str, store: str, prepared: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = params_for(work, store, f"out-refused-{case}")
    out = work / "D"
    (out / "notes").mkdir(parents=True)
    (out / "keep.bin").write_bytes(b"\x00user data")
    (out / "notes" / "a.txt").write_text("mine")
    if case == "another run's outputs":
        (out / "run_info.json").write_text(json.dumps({"framework": "torch", "variant": VARIANT, "seed": 1}))
    elif case == "an unreadable run_info.json":
        (out / "run_info.json").write_text('{"framework": "torch", "vari')
    before = tree(out)

    code, err, seconds = run_cli(train_argv(params, "torch", prepared, out), capsys)
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith(f"cnnrepro train: error: --out {out}: ") and expected in err[0], err[0]
    assert tree(out) == before  # nothing written, nothing removed
    assert not runs_named(store, f"out-refused-{case}", f"torch/{VARIANT}/seed0")  # refused before MLflow
    print(f"TABLE --out {case} | {code} | {err[0]} | {seconds:.1f} s | - | {sorted(before)} unchanged")


def test_rerun_replaces_only_the_runs_own_files(
    store: str, prepared: Path, work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's files beside the run's (in artifacts/ and in the folder) survive a completed rerun, and a
    rerun that diverges removes the run's earlier model and confusion matrix, nothing else."""
    params = params_for(work, store, "out-own")
    out = work / "runs" / "torch" / VARIANT / "seed0"
    assert run_cli(train_argv(params, "torch", prepared, out), capsys)[0] == 0
    (out / "artifacts" / "keep.bin").write_bytes(b"user weights")
    (out / "notes.txt").write_text("user notes")
    first_model = (out / "artifacts" / "model.safetensors").stat().st_mtime_ns

    code, err, seconds = run_cli(train_argv(params, "torch", prepared, out), capsys)
    assert code == 0 and not err, err
    assert (out / "artifacts" / "keep.bin").read_bytes() == b"user weights"
    assert (out / "notes.txt").read_text() == "user notes"
    assert (out / "artifacts" / "model.safetensors").stat().st_mtime_ns != first_model  # the run's own: replaced
    assert load_run(out).metrics.status == "completed"
    run = mlflow_run(store, out)
    logged = {a.path for a in store_client(store).list_artifacts(run.info.run_id, "artifacts")}
    assert "artifacts/keep.bin" not in logged and "artifacts/model.safetensors" in logged
    table = f"TABLE --out own, rerun | {code} | - | {seconds:.1f} s | - | {sorted(tree(out))}"

    explode_optimizer(monkeypatch, "torch")
    code, err, _ = run_cli(train_argv(params, "torch", prepared, out), capsys)
    assert code == 0 and "diverged at epoch 1" in err[0]
    assert sorted(p.name for p in (out / "artifacts").iterdir()) == ["fidelity.json", "keep.bin"]
    assert (out / "notes.txt").read_text() == "user notes"
    print(f"{table}; after a diverged rerun: {sorted(tree(out))}")


# --- one training of a run at a time -------------------------------------------------------------------------


def test_a_second_training_of_the_same_run_refuses_while_the_first_runs(
    store: str, prepared: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The second training starts while the first is inside its epoch loop (from the first's epoch hook, so
    the timing is exact); it refuses in one line before opening an MLflow run, the first finishes."""
    from cnnrepro.cli import main
    from cnnrepro.params import load_params
    from cnnrepro.train import cli as train_cli

    params = params_for(work, store, "locked")
    out = work / "runs" / "torch" / VARIANT / "seed0"
    second: dict[str, Any] = {}

    def start_second(row: dict[str, float]) -> None:
        if row["epoch"] == 1:
            started = time.perf_counter()
            second["code"] = main(train_argv(params, "torch", prepared, out))
            second["seconds"] = time.perf_counter() - started
            second["checkpoint"] = ckpt.checkpoint_path(out.parent / "checkpoints", "torch", VARIANT, 0).exists()

    argv = train_argv(params, "torch", prepared, out)
    args = argparse.Namespace(
        params=str(params), framework="torch", variant=VARIANT, seed=0, data=prepared, out=out,
        init_from=None, checkpoints=out.parent / "checkpoints", ablation=None,
    )  # fmt: skip
    assert argv[argv.index("--out") + 1] == str(out)
    capsys.readouterr()
    assert train_cli.run(load_params(params), args, hooks=(start_second,)) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and " INFO " not in line]

    assert second["code"] == 1 and len(err) == 1, err
    assert err[0].startswith(
        f"cnnrepro train: error: --out {out}: another training of torch/{VARIANT}/seed0 is running"
    )
    assert second["checkpoint"]  # the first's live checkpoint was there to be taken, and was not
    assert load_run(out).metrics.status == "completed"
    (run,) = runs_named(store, "locked", f"torch/{VARIANT}/seed0")  # one MLflow run for one run
    assert run.info.status == "FINISHED"
    print(f"TABLE second training, same --out | 1 | {err[0]} | {second['seconds']:.1f} s | - | first run's outputs")


def test_two_out_folders_sharing_one_checkpoint_refuse_the_second(
    store: str, prepared: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cnnrepro.cli import main
    from cnnrepro.params import load_params
    from cnnrepro.train import cli as train_cli

    params = params_for(work, store, "locked-checkpoint")
    checkpoints = work / "checkpoints"
    second: dict[str, int] = {}

    def start_second(row: dict[str, float]) -> None:
        if row["epoch"] == 1:
            argv = train_argv(params, "torch", prepared, work / "other")
            argv[argv.index("--checkpoints") + 1] = str(checkpoints)
            second["code"] = main(argv)

    args = argparse.Namespace(
        params=str(params), framework="torch", variant=VARIANT, seed=0, data=prepared, out=work / "first",
        init_from=None, checkpoints=checkpoints, ablation=None,
    )  # fmt: skip
    capsys.readouterr()
    assert train_cli.run(load_params(params), args, hooks=(start_second,)) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and " INFO " not in line]
    assert second["code"] == 1 and len(err) == 1, err
    assert f"--checkpoints {checkpoints / 'torch' / VARIANT}: another training of torch/{VARIANT}/seed0" in err[0]
    assert not (work / "other" / "metrics.json").exists()


# --- folders other commands replace whole: the report's plots/, visualize's --out ------------------------------


def test_the_report_replaces_its_plots_folder_only_while_it_holds_only_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cnnrepro import cli
    from cnnrepro.variants.documented import DOCUMENTED

    from .helpers_report import write_clean_summary, write_synthetic_run
    from .helpers_report import write_params as write_report_params

    for seed in range(3):
        baseline = DOCUMENTED["baseline"].documented
        write_synthetic_run(tmp_path / "runs", "torch", "baseline", seed, val=baseline, test=baseline)
    write_clean_summary(tmp_path / "summary.json")
    write_report_params(tmp_path / "params.yaml", variants={"pets": ["baseline"]})
    argv = ["report", "--params", str(tmp_path / "params.yaml"), "--runs", str(tmp_path / "runs")]
    argv += ["--clean-summary", str(tmp_path / "summary.json"), "--out", str(tmp_path / "reports")]
    plots = tmp_path / "reports" / "plots"

    assert cli.main(argv) == 0  # a new folder
    assert cli.main(argv) == 0  # its own: replaced
    capsys.readouterr()
    (plots / "mine.png").write_bytes(b"a user's figure")
    before = tree(tmp_path / "reports")
    started = time.perf_counter()
    code = cli.main(argv)
    seconds = time.perf_counter() - started
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert err[0] == (
        f"cnnrepro report: error: --out {plots}: holds mine.png, which no earlier run of this command wrote; "
        "nothing touched (move them, or give another --out)"
    )
    assert tree(tmp_path / "reports") == before
    print(f"TABLE report, a user's file in plots/ | {code} | {err[0]} | {seconds:.1f} s | - | reports/ unchanged")


def test_a_folder_replaced_whole_keeps_a_users_file(tmp_path: Path) -> None:
    """atomic_dir(own_list=...) (visualize's --out, the report's plots/): a file put there while the command
    ran is not replaced either, and a folder from before the list existed is refused, not emptied."""
    from cnnrepro.errors import CnnreproError
    from cnnrepro.fsutil import atomic_dir

    target = tmp_path / "figures"
    with atomic_dir(target, own_list="--out") as tmp:
        (tmp / "a.png").write_bytes(b"1")
    with atomic_dir(target, own_list="--out") as tmp:  # its own: replaced
        (tmp / "b.png").write_bytes(b"2")
    assert sorted(p.name for p in target.iterdir()) == [".cnnrepro-outputs", "b.png"]
    with (
        pytest.raises(CnnreproError, match=r"holds late.txt, which no earlier run"),
        atomic_dir(target, own_list="--out") as tmp,
    ):
        (tmp / "c.png").write_bytes(b"3")
        (target / "late.txt").write_text("written while the command ran")
    assert sorted(p.name for p in target.iterdir()) == [".cnnrepro-outputs", "b.png", "late.txt"]
    assert not list(tmp_path.glob(".figures.*"))  # the temporary is gone
    legacy = tmp_path / "old"
    legacy.mkdir()
    (legacy / "index.json").write_text("{}")
    refused = pytest.raises(CnnreproError, match=r"--out .*old: holds index.json, which no earlier run")
    with refused, atomic_dir(legacy, own_list="--out"):
        raise AssertionError("refused before the body runs")
    assert (legacy / "index.json").read_text() == "{}"
