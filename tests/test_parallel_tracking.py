"""Many jobs, one tracking place: a real `mlflow server` on loopback (SQLite backend in tmp, proxied
artifacts), and four job processes that find it through CNNREPRO_TRACKING_URI, as jobs on cluster nodes do.

Eight processes writing one SQLite store directly (no server) is tests/test_tracking.py's
test_eight_processes_share_a_fresh_store: no "database is locked", no lost run or metric.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from cnnrepro.tracking.pipeline import end_pipeline_run, start_pipeline_run
from cnnrepro.tracking.store import client as store_client
from cnnrepro.tracking.tracked_run import PARENT_RUN_ENV

from .conftest import PROJECT_ROOT

WORKERS = 4
STEPS = 15

# One job: tracking settings exactly as `cnnrepro train` resolves them (params + environment overrides).
WORKER = """
import sys
from pathlib import Path
from cnnrepro.tracking.pipeline import end_pipeline_run, start_pipeline_run
from cnnrepro.tracking.store import client as store_client, ensure_experiment, tracking_settings
from cnnrepro.tracking.tracked_run import PARENT_RUN_ENV, parent_run_id_from_env, tracked_run
from cnnrepro.params import load_params

params_path, index, notes, steps = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
uri, experiment = tracking_settings(load_params(params_path))
notes.write_text(f"notes of worker {index}\\n")
tags, parent = {"worker": str(index)}, parent_run_id_from_env()
with tracked_run(uri, experiment, run_name=f"node{index}", tags=tags, parent_run_id=parent) as run:
    run.log_params({"index": index, "nested": {"steps": steps}})
    for step in range(steps):
        run.log_metrics({"loss": index + step / 100, "val_accuracy": step / 100}, step=step)
    run.log_artifact(notes, "notes")
print(uri, run.run_id, flush=True)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """`mlflow server` as the README documents it, with SQLite standing in for PostgreSQL (one per module:
    it takes seconds to start)."""
    tmp_path = tmp_path_factory.mktemp("server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "server.log").open("w")
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination", str(tmp_path / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mlflow server did not come up:\n{(tmp_path / 'server.log').read_text()}")
            time.sleep(0.5)
        yield url, tmp_path / "artifacts"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn worker: the group this test started
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_four_processes_log_to_one_tracking_server(tmp_path: Path, mlflow_server: tuple[str, Path]) -> None:
    url, artifacts = mlflow_server
    work = tmp_path / "work"
    work.mkdir()
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    # What params.yaml says is overridden by the environment, as on a cluster.
    params["tracking"] = {"uri": "sqlite:///not-used.db", "experiment": "cluster"}
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    parent = start_pipeline_run(url, "cluster", name="pipeline on the cluster")
    env = os.environ | {"CNNREPRO_TRACKING_URI": url, PARENT_RUN_ENV: parent}
    # All at once against an experiment that exists already (the parent created it) ...
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, "params.yaml", str(i), f"notes{i}.txt", str(STEPS)],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(WORKERS)
    ]
    outcomes = [proc.communicate(timeout=300) for proc in procs]
    for proc, (_, err) in zip(procs, outcomes, strict=True):
        assert proc.returncode == 0, err
    # Each job's last line: its URI and run id (MLflow prints its own "View run" lines before).
    reported = [out.strip().splitlines()[-1].split() for out, _ in outcomes]
    run_ids = {run_id for _, run_id in reported}
    assert {uri for uri, _ in reported} == {url}
    assert not (work / "not-used.db").exists()
    end_pipeline_run(url, parent)

    client = store_client(url)
    experiment = client.get_experiment_by_name("cluster")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    children = [run for run in runs if run.info.run_id != parent]
    assert {run.info.run_id for run in children} == run_ids and len(children) == WORKERS
    for run in children:
        index = int(run.data.tags["worker"])
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.params == {"index": str(index), "nested.steps": str(STEPS)}
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted((m.step, m.value) for m in history) == [(s, pytest.approx(index + s / 100)) for s in range(STEPS)]
        # Artifacts went through the server into its --artifacts-destination, not to the job's disk.
        stored = list(artifacts.rglob(f"{run.info.run_id}/artifacts/notes/notes{index}.txt"))
        assert [p.read_text() for p in stored] == [f"notes of worker {index}\n"]
    assert client.get_run(parent).info.status == "FINISHED"
    assert not (work / "mlartifacts").exists() and not (work / "mlruns").exists()


@pytest.mark.slow
def test_processes_race_to_create_the_experiment_on_a_server(tmp_path: Path, mlflow_server: tuple[str, Path]) -> None:
    """No file lock can serialize experiment creation on a server: the losers must find the winner's."""
    url, _ = mlflow_server
    code = (
        "import sys; from cnnrepro.tracking.store import ensure_experiment; "
        "print(ensure_experiment(sys.argv[1], 'raced'), flush=True)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(WORKERS)
    ]
    outcomes = [proc.communicate(timeout=300) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err for _, err in outcomes]
    ids = {out.strip().splitlines()[-1] for out, _ in outcomes}
    assert len(ids) == 1
    names = [e.name for e in store_client(url).search_experiments()]
    assert names.count("raced") == 1
