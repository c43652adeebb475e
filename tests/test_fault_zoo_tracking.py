"""The second fault zoo, tracking side: unusable or corrupt MLflow stores fail fast, in one line.

Checked when params load (every stage), when the Snakefile is parsed (`snakemake -n` too), in the store
lock (a missing path is an error, not a lock to retry), and the pipeline's start hook ends on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cnnrepro.errors import CnnreproError, ParamsError
from cnnrepro.params import load_params
from cnnrepro.tracking.store import ensure_experiment

from .helpers_data import write_params
from .helpers_faults import wait_for
from .pipeline_project import SHIPPED_PARAMS, make_project

HANG_GUARD_S = 120  # far below the 600 s lock retry this replaces; the time itself is measured, not asserted


def _params_with_uri(tmp_path: Path, uri: str) -> Path:
    return write_params(tmp_path / "params.yaml", {"tracking.uri": uri})


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def _scrambled_store(tmp_path: Path) -> Path:
    """A real MLflow store whose pages after the first are garbage (the SQLite header still valid)."""
    database = tmp_path / "store" / "mlflow.db"
    database.parent.mkdir()
    ensure_experiment(f"sqlite:///{database}", "e")
    data = bytearray(database.read_bytes())
    for i in range(4096, len(data), 7):
        data[i] = (data[i] * 31 + 7) & 255
    for suffix in ("-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    database.write_bytes(data)
    return database


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("sqlite:////proc/cnnrepro-test.db", "cannot create files in /proc (No such file or directory)"),
        ("sqlite:////nonexistent/dir/x.db", "directory /nonexistent/dir does not exist"),
        ("mlruns", "unknown tracking URI scheme '(none)'"),
        ("ftp://host/x", "unknown tracking URI scheme 'ftp'"),
        ("sqlite:/x.db", "expected sqlite:///relative/path.db"),
    ],
)
def test_unusable_uri_fails_when_params_load(tmp_path: Path, uri: str, message: str) -> None:
    with pytest.raises(ParamsError) as raised:
        load_params(_params_with_uri(tmp_path, uri))
    text = str(raised.value)
    assert text.startswith(f"{tmp_path / 'params.yaml'}: tracking.uri: {uri}: ") and message in text
    assert not Path("/nonexistent").exists()  # never created as a side effect


def test_environment_override_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNREPRO_TRACKING_URI", f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    with pytest.raises(ParamsError, match=r"^CNNREPRO_TRACKING_URI: sqlite:///.*/missing/x\.db: directory .* does not"):
        load_params(write_params(tmp_path / "params.yaml"))


def test_store_file_checks(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(ParamsError, match=r"dir\.db is not a regular file$"):
        load_params(_params_with_uri(tmp_path, f"sqlite:///{tmp_path / 'dir.db'}"))
    (tmp_path / "html.db").write_text("<html>not a database</html>\n")
    with pytest.raises(
        ParamsError,
        match=r"html\.db is not an SQLite database \(file is not a database: corrupt, or another kind of file\)$",
    ):
        load_params(_params_with_uri(tmp_path, f"sqlite:///{tmp_path / 'html.db'}"))
    (tmp_path / "empty.db").touch()  # an empty file becomes a new store
    assert load_params(_params_with_uri(tmp_path, f"sqlite:///{tmp_path / 'empty.db'}"))


def test_store_lock_fails_at_once_on_a_missing_path(tmp_path: Path) -> None:
    # Past the params check (a caller handing the URI straight in): no mkdir, no 600 s lock retry.
    start = time.monotonic()
    with pytest.raises(CnnreproError, match=r"tracking store sqlite:////proc/x\.db: cannot create files in /proc"):
        ensure_experiment("sqlite:////proc/x.db", "e")
    missing = tmp_path / "a" / "b" / "mlflow.db"
    with pytest.raises(CnnreproError, match=r"directory .*/a/b does not exist"):
        ensure_experiment(f"sqlite:///{missing}", "e")
    assert not (tmp_path / "a").exists()
    assert time.monotonic() - start < HANG_GUARD_S


def test_corrupt_store_is_one_line_naming_it(tmp_path: Path) -> None:
    database = _scrambled_store(tmp_path)
    params = _params_with_uri(tmp_path, f"sqlite:///{database}")
    result = subprocess.run(
        ["cnnrepro", "tracking", "--params", str(params), "init"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert result.returncode == 1
    line = _one_line("\n".join(x for x in result.stderr.splitlines() if " INFO mlflow." not in x))
    assert line.startswith(f"cnnrepro tracking: error: tracking store sqlite:///{database}: ")
    assert "database disk image is malformed" in line


def test_train_fails_on_the_uri_before_anything(tmp_path: Path) -> None:
    params = _params_with_uri(tmp_path, "sqlite:////proc/x.db")
    args = ["--framework", "torch", "--variant", "mnist_dense", "--seed", "0", "--data", "d", "--out", "runs/x"]
    result = subprocess.run(
        ["cnnrepro", "train", "--params", str(params), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert result.returncode == 1 and result.stdout == ""  # not even the config is printed
    assert _one_line(result.stderr) == (
        f"cnnrepro train: error: {params}: tracking.uri: sqlite:////proc/x.db: "
        "cannot create files in /proc (No such file or directory)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_snakemake_dry_run_rejects_the_uri(tmp_path: Path) -> None:
    params = {**SHIPPED_PARAMS, "tracking": {"uri": "sqlite:////proc/x.db", "experiment": "e"}}
    project = make_project(tmp_path, params)
    result = subprocess.run(
        ["snakemake", "-n", "--cores", "1"], cwd=project, capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert result.returncode == 1
    errors = [line for line in (result.stdout + result.stderr).splitlines() if "error" in line.lower()]
    assert errors == [
        "cnnrepro pipeline: error: params.yaml: tracking.uri: sqlite:////proc/x.db: "
        "cannot create files in /proc (No such file or directory)"
    ]
    assert not (project / ".cnnrepro").exists() and not (project / "logs").exists()


# What the Snakefile's onstart hook runs, in a process of its own.
START_HOOK = "from cnnrepro.orchestration import pipeline_run; pipeline_run.run_hook('snakemake', 'start')"


def test_start_hook_ends_on_sigterm(tmp_path: Path) -> None:
    # A tracking server nobody answers: MLflow retries it with backoff for minutes. SIGTERM ends the wait.
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**SHIPPED_PARAMS, "data": {"mirror": None}}))
    for raw in ("data/raw/petimages", "data/raw/mnist", "data/raw/fashion_mnist"):
        (tmp_path / raw).mkdir(parents=True)
    env = {**os.environ, "CNNREPRO_TRACKING_URI": "http://127.0.0.1:9"}
    hook = subprocess.Popen(
        [sys.executable, "-c", START_HOOK], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_for(lambda: (tmp_path / ".cnnrepro" / "pipeline.lock").exists(), 60, "the pipeline lock", proc=hook)
        time.sleep(1.0)  # inside MLflow's retries by now
        assert hook.poll() is None
        hook.send_signal(signal.SIGTERM)
        _, stderr = hook.communicate(timeout=30)
    finally:
        if hook.poll() is None:
            hook.kill()
            hook.wait()
    assert hook.returncode == 1
    line = _one_line(stderr.decode())
    assert line.startswith("cnnrepro pipeline: error: ") and "terminated (SIGTERM) while starting the pipeline" in line
