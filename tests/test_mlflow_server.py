"""scripts/mlflow-server.sh asks who you are beyond loopback (issue 23), tried on a real server.

Refusals need no server and run everywhere. The authenticated server needs MLflow's basic-auth app, which
needs Flask-WTF (`pip install 'mlflow[auth]'`); without it those tests skip, saying so. Before the change, an
anonymous `experiments/delete` and a PUT of attacker/evil.txt both got 200.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from .conftest import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "mlflow-server.sh"
USER = "cnnrepro-jobs"
PASSWORD = "tr0ub4dor-and-3-horses"
HAS_AUTH_APP = importlib.util.find_spec("flask_wtf") is not None
needs_auth_app = pytest.mark.skipif(not HAS_AUTH_APP, reason="Flask-WTF not installed (pip install 'mlflow[auth]')")
CLIENT_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def script_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A home without credentials unless the test writes some, and no client variables from outside."""
    (tmp / "home").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_VARIABLES and not k.startswith("CNNREPRO_")}
    env |= {"HOME": str(tmp / "home"), "CNNREPRO_MLFLOW_DIR": str(tmp / "server"), "CNNREPRO_MLFLOW_PORT": "0"}
    return env | extra


def script(action: str, env: dict[str, str], timeout: int = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), action], capture_output=True, text=True, env=env, timeout=timeout)


def write_credentials(home: Path, mode: int, user: str = USER, password: str = PASSWORD) -> Path:
    """MLflow's own credentials file, as its client reads it (~/.mlflow/credentials)."""
    path = home / ".mlflow" / "credentials"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"[mlflow]\nmlflow_tracking_username = {user}\nmlflow_tracking_password = {password}\n")
    path.chmod(mode)
    return path


def refused(run: subprocess.CompletedProcess[str], tmp: Path, port: int) -> str:
    """The one line of a refused start, after checking nothing started and nothing was written."""
    assert run.returncode == 1 and run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert not (tmp / "server").exists() and not listening(port)
    return lines[0]


# ---- refusals (no server) -----------------------------------------------------------------------------


def test_every_interface_without_credentials_is_refused_in_one_line(tmp_path: Path) -> None:
    port = free_port()
    env = script_env(tmp_path, CNNREPRO_MLFLOW_HOST="0.0.0.0", CNNREPRO_MLFLOW_PORT=str(port))
    line = refused(script("start", env), tmp_path, port)
    assert line.startswith(f"mlflow-server: refusing to listen on 0.0.0.0:{port} without authentication: ")
    assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in line and ".mlflow/credentials" in line


def test_no_authentication_off_loopback_is_refused_even_when_asked_for(tmp_path: Path) -> None:
    port = free_port()
    env = script_env(tmp_path, CNNREPRO_MLFLOW_HOST="10.0.0.7", CNNREPRO_MLFLOW_PORT=str(port))
    line = refused(script("start", env | {"CNNREPRO_MLFLOW_AUTH": "none"}), tmp_path, port)
    assert line.startswith(f"mlflow-server: refusing to listen on 10.0.0.7:{port} without authentication (")


def test_a_credentials_file_others_can_read_is_refused(tmp_path: Path) -> None:
    port = free_port()
    path = write_credentials(tmp_path / "home", 0o644)
    env = script_env(tmp_path, CNNREPRO_MLFLOW_HOST="0.0.0.0", CNNREPRO_MLFLOW_PORT=str(port))
    line = refused(script("start", env), tmp_path, port)
    assert line == f"mlflow-server: {path}: mode 644 lets other users read the password; chmod 600 it"


@pytest.mark.parametrize(
    ("variables", "problem"),
    [
        ({"MLFLOW_TRACKING_USERNAME": USER}, "set both MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"),
        ({"MLFLOW_TRACKING_USERNAME": USER, "MLFLOW_TRACKING_PASSWORD": "short"}, "shorter than the 12 characters"),
        ({"MLFLOW_TRACKING_USERNAME": "a\nb", "MLFLOW_TRACKING_PASSWORD": PASSWORD}, "use letters, digits and"),
    ],
)
def test_unusable_credentials_in_the_environment_are_one_line(
    tmp_path: Path, variables: dict[str, str], problem: str
) -> None:
    port = free_port()
    env = script_env(tmp_path, CNNREPRO_MLFLOW_AUTH="basic", CNNREPRO_MLFLOW_PORT=str(port)) | variables
    assert problem in refused(script("start", env), tmp_path, port)


def test_a_database_password_on_the_servers_command_line_is_refused(tmp_path: Path) -> None:
    port = free_port()
    backend = "postgresql://mlflow:hunter2@db-host:5432/mlflow"
    env = script_env(tmp_path, CNNREPRO_MLFLOW_BACKEND_URI=backend, CNNREPRO_MLFLOW_PORT=str(port))
    line = refused(script("start", env), tmp_path, port)
    assert line.startswith("mlflow-server: CNNREPRO_MLFLOW_BACKEND_URI holds a password") and "hunter2" not in line


@pytest.mark.skipif(HAS_AUTH_APP, reason="Flask-WTF is installed: the auth app can run")
def test_a_missing_auth_app_is_named(tmp_path: Path) -> None:
    port = free_port()
    write_credentials(tmp_path / "home", 0o600)
    env = script_env(tmp_path, CNNREPRO_MLFLOW_AUTH="basic", CNNREPRO_MLFLOW_PORT=str(port))
    line = refused(script("start", env), tmp_path, port)
    assert line == "mlflow-server: MLflow's basic-auth app needs Flask-WTF, missing from this environment " + (
        "(pip install 'mlflow[auth]')"
    )


# ---- a real server with basic auth, on loopback ---------------------------------------------------------


@dataclass(frozen=True)
class Server:
    url: str
    env: dict[str, str]
    root: Path  # CNNREPRO_MLFLOW_DIR
    pid: int


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not HAS_AUTH_APP:
        pytest.skip("Flask-WTF not installed (pip install 'mlflow[auth]')")
    tmp = tmp_path_factory.mktemp("auth-server")
    write_credentials(tmp / "home", 0o600)
    env = script_env(tmp, CNNREPRO_MLFLOW_AUTH="basic", CNNREPRO_MLFLOW_PORT=str(free_port()))
    started = script("start", env)
    assert started.returncode == 0, started.stderr + (tmp / "server" / "server.log").read_text()[-3000:]
    url = started.stdout.strip()
    yield Server(url, env, tmp / "server", int((tmp / "server" / "server.pid").read_text()))
    stopped = script("stop", env)
    assert stopped.returncode == 0 and not (tmp / "server" / "server.pid").exists()


def anonymous(method: str, url: str, **kwargs: object) -> int:
    return requests.request(method, url, timeout=30, **kwargs).status_code  # type: ignore[arg-type]


def authenticated(method: str, url: str, password: str = PASSWORD, **kwargs: object) -> int:
    return requests.request(method, url, auth=(USER, password), timeout=30, **kwargs).status_code  # type: ignore[arg-type]


@needs_auth_app
def test_anonymous_requests_get_401_and_change_nothing(server: Server) -> None:
    api = f"{server.url}/api/2.0/mlflow"
    assert anonymous("POST", f"{api}/experiments/delete", json={"experiment_id": "0"}) == 401
    assert anonymous("POST", f"{api}/experiments/create", json={"name": "anonymous"}) == 401
    assert anonymous("GET", f"{api}/experiments/search", params={"max_results": 1}) == 401
    assert anonymous("PUT", f"{server.url}/api/2.0/mlflow-artifacts/artifacts/attacker/evil.txt", data=b"x") == 401
    assert anonymous("POST", f"{api}/users/create", json={"username": "eve", "password": "e" * 12}) == 401
    assert authenticated("GET", f"{api}/experiments/search", password="not-the-password", params={"x": 1}) == 401
    assert not (server.root / "artifacts" / "attacker").exists()
    found = requests.get(f"{api}/experiments/get", params={"experiment_id": "0"}, auth=(USER, PASSWORD), timeout=30)
    assert found.status_code == 200 and found.json()["experiment"]["lifecycle_stage"] == "active"
    assert anonymous("GET", f"{server.url}/health") == 200  # what `status` and schedulers probe


@needs_auth_app
def test_the_user_mlflows_client_logs_in_as_may_write(server: Server) -> None:
    api = f"{server.url}/api/2.0/mlflow"
    assert authenticated("POST", f"{api}/experiments/create", json={"name": "by-the-jobs-user"}) == 200
    assert authenticated("PUT", f"{server.url}/api/2.0/mlflow-artifacts/artifacts/jobs/ok.txt", data=b"ok") == 200
    assert (server.root / "artifacts" / "jobs" / "ok.txt").read_bytes() == b"ok"


@needs_auth_app
def test_the_pipeline_authenticates_with_the_credentials_mlflows_client_reads(server: Server, tmp_path: Path) -> None:
    """The pipeline runner opens its parent run through the server, the login coming from ~/.mlflow/credentials
    as in every job; with no credentials it stops in one line (401) and runs nothing."""
    for raw in ("petimages", "mnist", "fashion_mnist"):  # raw data present: no mirror needed
        (tmp_path / "data" / "raw" / raw).mkdir(parents=True)
    (tmp_path / "params.yaml").write_text((PROJECT_ROOT / "params.yaml").read_text())
    env = {**server.env, "CNNREPRO_TRACKING_URI": server.url, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "cnnrepro.orchestration.pipeline_run", "--", "touch", "ran"]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "ran").exists()
    runs = requests.post(
        f"{server.url}/api/2.0/mlflow/runs/search",
        json={"experiment_ids": [experiment_id(server, "cnnrepro")]},
        auth=(USER, PASSWORD),
        timeout=30,
    ).json()["runs"]
    assert [r["info"]["status"] for r in runs] == ["FINISHED"]

    (tmp_path / "ran").unlink()
    without = {**env, "HOME": str(tmp_path / "nobody")}
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=without, timeout=300)
    assert run.returncode == 1 and not (tmp_path / "ran").exists()
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "failed with error code 401" in lines[0], run.stderr


def experiment_id(server: Server, name: str) -> str:
    found = requests.get(
        f"{server.url}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": name},
        auth=(USER, PASSWORD),
        timeout=30,
    )
    assert found.status_code == 200, found.text
    return found.json()["experiment"]["experiment_id"]


@needs_auth_app
def test_the_password_is_on_no_command_line_and_the_store_is_private(server: Server) -> None:
    group = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _in_group(int(p.name), server.pid)]
    assert group  # the server and its uvicorn worker
    for process in group:
        assert PASSWORD.encode() not in (process / "cmdline").read_bytes()
    assert stat.S_IMODE(server.root.stat().st_mode) == 0o700
    for name in ("basic_auth.db", "basic_auth.ini", "flask-secret-key", "mlflow.db"):
        assert stat.S_IMODE((server.root / name).stat().st_mode) == 0o600, name
    assert PASSWORD not in (server.root / "basic_auth.ini").read_text()


def _in_group(pid: int, group: int) -> bool:
    try:
        return os.getpgid(pid) == group
    except ProcessLookupError:
        return False


@needs_auth_app
def test_a_start_with_another_password_is_refused_in_one_line(server: Server) -> None:
    """The auth app keeps the password it was first started with: a start (here against the running server)
    whose login it refuses says so, instead of printing a URL the jobs could not use."""
    env = {**server.env, "MLFLOW_TRACKING_USERNAME": USER, "MLFLOW_TRACKING_PASSWORD": "another-password-here"}
    run = script("start", env)
    assert run.returncode == 1 and run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mlflow-server: {server.url} refused {USER} (HTTP 401): ")
    assert script("status", server.env).stdout.strip() == server.url  # still serving
