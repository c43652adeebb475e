"""cnnrepro.tracking against real temporary SQLite stores: runs, statuses, parallel writers, stale runs."""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from cnnrepro import cli
from cnnrepro.errors import CnnreproError
from cnnrepro.tracking.liveness import mark_stale_runs_failed
from cnnrepro.tracking.pipeline import end_pipeline_run, start_pipeline_run
from cnnrepro.tracking.store import client, ensure_experiment, tracking_settings
from cnnrepro.tracking.tracked_run import tracked_run

TESTS_DIR = Path(__file__).resolve().parent

# A job that opens a run, reports its id on stdout, then waits to be signalled.
VICTIM_CODE = """
import sys, time
from cnnrepro.tracking.tracked_run import tracked_run
with tracked_run(sys.argv[1], sys.argv[2], run_name="victim", tags={"role": "victim"}) as run:
    print(run.run_id, flush=True)
    time.sleep(300)
"""


@pytest.fixture
def helpers(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """tests/helpers_tracking.py as a top-level module, importable by spawned workers in any import mode."""
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    return importlib.import_module("helpers_tracking")


def start_victim(uri: str, experiment: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", VICTIM_CODE, uri, experiment], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def write_params(project_root: Path, target: Path, uri: str, experiment: str) -> Path:
    """The project's params.yaml with the tracking section pointed at a test store."""
    params = yaml.safe_load((project_root / "params.yaml").read_text())
    params["tracking"] = {"uri": uri, "experiment": experiment}
    target.write_text(yaml.safe_dump(params))
    return target


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One store for the module: creating one (schema migrations) costs seconds."""
    root = tmp_path_factory.mktemp("store")
    return f"sqlite:///{root / 'mlflow.db'}"


def _client(uri: str):
    return client(uri)


def _status(uri: str, run_id: str) -> str:
    return _client(uri).get_run(run_id).info.status


def test_tracking_settings_makes_sqlite_path_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    uri, experiment = tracking_settings({"tracking": {"uri": "sqlite:///sub/m.db", "experiment": "e"}})
    assert uri == f"sqlite:///{tmp_path.resolve() / 'sub' / 'm.db'}"
    assert experiment == "e"
    server = tracking_settings({"tracking": {"uri": "http://host:5000", "experiment": "e"}})
    assert server == ("http://host:5000", "e")


def test_run_written_and_read_back(store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Artifacts must land beside the database whatever the job's working directory.
    monkeypatch.chdir(tmp_path)
    parent_id = start_pipeline_run(store, "readback", name="pipeline test")
    (tmp_path / "weights.bin").write_bytes(b"\x00\x01\x02")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "curve.csv").write_text("epoch,loss\n1,0.5\n")
    long_value = "x" * 10_000
    with tracked_run(store, "readback", run_name="child", tags={"variant": "baseline"}, parent_run_id=parent_id) as run:
        run.log_params({"optimizer": {"name": "rmsprop", "lr": 1e-4}, "epochs": 30, "long": long_value})
        for step in range(5):
            run.log_metrics({"loss": 1.0 / (step + 1), "val_accuracy": 0.5 + step / 10, "skipped": None}, step=step)
        run.log_artifact(tmp_path / "weights.bin", artifact_path="model")
        run.log_artifact(tmp_path / "plots")
        run.log_dict({"confusion": [[1, 2], [3, 4]]}, "confusion.json")
        run.set_tags({"cnnrepro.status": "completed"})
    end_pipeline_run(store, parent_id)

    client = _client(store)
    got = client.get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert got.info.run_name == "child"
    assert got.data.params["optimizer.name"] == "rmsprop"
    assert float(got.data.params["optimizer.lr"]) == pytest.approx(1e-4)
    assert got.data.params["epochs"] == "30"
    assert 0 < len(got.data.params["long"]) < len(long_value)
    assert got.data.tags["variant"] == "baseline"
    assert got.data.tags["cnnrepro.status"] == "completed"
    assert got.data.tags["cnnrepro.pid"] == str(os.getpid())
    assert got.data.tags["mlflow.parentRunId"] == parent_id
    assert client.get_run(parent_id).info.status == "FINISHED"
    history = client.get_metric_history(run.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(s, pytest.approx(1.0 / (s + 1))) for s in range(5)]
    assert "skipped" not in got.data.metrics

    artifact_root = Path(store.removeprefix("sqlite:///")).parent / "mlartifacts" / run.run_id / "artifacts"
    assert (artifact_root / "model" / "weights.bin").read_bytes() == b"\x00\x01\x02"
    assert (artifact_root / "curve.csv").exists()
    assert json.loads((artifact_root / "confusion.json").read_text()) == {"confusion": [[1, 2], [3, 4]]}
    assert not (tmp_path / "mlartifacts").exists()
    assert not (tmp_path / "mlruns").exists()


def test_exception_ends_failed_interrupt_ends_killed(store: str) -> None:
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(ZeroDivisionError), tracked_run(store, "statuses", run_name="bad", tags={}) as run:
        1 / 0  # noqa: B018
    failed_id = run.run_id
    with pytest.raises(KeyboardInterrupt), tracked_run(store, "statuses", run_name="stop", tags={}) as run:
        raise KeyboardInterrupt
    assert _status(store, failed_id) == "FAILED"
    assert _status(store, run.run_id) == "KILLED"
    # The SIGTERM handler is ours only for the duration of the run.
    assert signal.getsignal(signal.SIGTERM) is previous


def test_unknown_parent_and_status_are_one_line_errors(store: str) -> None:
    orphan = tracked_run(store, "statuses", run_name="orphan", tags={}, parent_run_id="0123")
    with pytest.raises(CnnreproError, match="parent run 0123 not found"), orphan:
        pass
    with pytest.raises(CnnreproError, match="not one of"):
        end_pipeline_run(store, "0123", status="DONE")
    with pytest.raises(CnnreproError, match="run 0123 not found"):
        end_pipeline_run(store, "0123")


def test_eight_processes_share_a_fresh_store(tmp_path: Path, helpers: ModuleType) -> None:
    (tmp_path / "fresh").mkdir()  # the store's directory must exist: it is never created silently
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    workers, steps = 8, 20
    # Fresh processes, as spawn gives (nothing inherited from this test process), but started by a
    # forkserver that imports MLflow once: eight spawned imports cost ~55 CPU-seconds on their own.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["mlflow.tracking", "mlflow.store.tracking.sqlalchemy_store", "cnnrepro.tracking"])
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=helpers.log_run_worker, args=(uri, "parallel", i, steps, barrier, results))
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=180) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    errors = [f"worker {i}: {err}" for i, _, err in outcomes if err]
    assert not errors, errors
    assert all(proc.exitcode == 0 for proc in procs)

    client = _client(uri)
    experiment = client.get_experiment_by_name("parallel")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert sorted(r.info.run_id for r in runs) == sorted(run_id for _, run_id, _ in outcomes)
    assert len(runs) == workers
    for run in runs:
        assert run.info.status == "FINISHED"
        index = int(run.data.tags["worker"])
        assert run.data.params["nested.steps"] == str(steps)
        for key in helpers.METRIC_KEYS:
            history = client.get_metric_history(run.info.run_id, key)
            assert sorted(m.step for m in history) == list(range(steps))
            assert {m.value for m in history} == {index + s / 100 for s in range(steps)}
    # Exactly one experiment of that name despite eight processes creating it at once.
    names = [e.name for e in client.search_experiments()]
    assert names.count("parallel") == 1


def _victim_run_id(proc: subprocess.Popen[str]) -> str:
    line = proc.stdout.readline().strip()
    if not line:
        proc.kill()
        raise AssertionError(f"victim printed no run id: {proc.stderr.read()}")
    return line


def test_sigterm_ends_killed_and_sigkill_is_marked_stale(store: str) -> None:
    # Warm the store (and its experiment) so the victims only open it.
    ensure_experiment(store, "victims")
    termed, killed = start_victim(store, "victims"), start_victim(store, "victims")
    termed_id, killed_id = _victim_run_id(termed), _victim_run_id(killed)
    assert _status(store, killed_id) == "RUNNING"

    termed.send_signal(signal.SIGTERM)
    killed.send_signal(signal.SIGKILL)
    assert termed.wait(timeout=60) == 128 + signal.SIGTERM
    assert killed.wait(timeout=60) == -signal.SIGKILL
    assert _status(store, termed_id) == "KILLED"
    assert _status(store, killed_id) == "RUNNING"

    assert mark_stale_runs_failed(store, "victims") == [killed_id]
    got = _client(store).get_run(killed_id)
    assert got.info.status == "FAILED"
    assert "is gone" in got.data.tags["cnnrepro.stale_reason"]
    # Idempotent: nothing left to mark.
    assert mark_stale_runs_failed(store, "victims") == []


def test_old_pipeline_runs_marked_only_past_the_age_limit(store: str) -> None:
    run_id = start_pipeline_run(store, "ages")
    time.sleep(0.05)
    assert mark_stale_runs_failed(store, "ages") == []  # no pid recorded: never "dead"
    assert mark_stale_runs_failed(store, "ages", older_than_s=3600) == []
    assert mark_stale_runs_failed(store, "ages", older_than_s=0.01) == [run_id]
    assert _status(store, run_id) == "FAILED"
    assert mark_stale_runs_failed(store, "no such experiment") == []


def test_cli_init_start_end(store: str, tmp_path: Path, project_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = write_params(project_root, tmp_path / "params.yaml", store, "cli")
    assert cli.main(["tracking", "init", "--params", str(params)]) == 0
    experiment_id = capsys.readouterr().out.strip()
    assert experiment_id == ensure_experiment(store, "cli")

    # As the pipeline calls it: `export CNNREPRO_PARENT_RUN_ID=$(cnnrepro tracking start)` captures the id alone.
    started = subprocess.run(
        ["cnnrepro", "tracking", "--params", str(params), "start", "--name", "from shell"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    assert started.stdout == run_id + "\n"
    assert _client(store).get_run(run_id).info.run_name == "from shell"

    assert cli.main(["tracking", "--params", str(params), "end", "--run-id", run_id, "--status", "FAILED"]) == 0
    assert _status(store, run_id) == "FAILED"
    assert cli.main(["tracking", "--params", str(params), "end", "--run-id", "nope"]) == 1
    assert "run nope not found" in capsys.readouterr().err


def test_cli_end_without_run_id_names_the_variable(
    tmp_path: Path, project_root: Path, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    params = write_params(project_root, tmp_path / "params.yaml", store, "cli")
    assert cli.main(["tracking", "end", "--params", str(params)]) == 1
    assert "CNNREPRO_PARENT_RUN_ID" in capsys.readouterr().err
