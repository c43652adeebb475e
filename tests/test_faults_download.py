"""Download faults tests/test_download.py does not script: a body that stalls past the read timeout, a
server that never answers, a connection reset mid-body, a body cut short with no Content-Length to
check against, and a corrupt mirror file that must give way to the URL. After every failure, nothing
is left at the output path.

A loopback server of its own here, since these faults need control of the socket itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cnnrepro.cli import main as cli_main
from cnnrepro.data.download import fetch
from cnnrepro.errors import CnnreproError

from .helpers_data import make_idx_gz_dir, make_petimages_zip, write_idx_pins, write_params

STALL_S = 2.0  # how long a stalling server waits; far beyond the client's timeout
TIMEOUT_S = 0.3


@dataclass
class FaultServer:
    """Serves `root`; `plan[name]` scripts successive answers: ok, stall_headers, stall_body, reset, unsized_cut."""

    root: Path
    plan: dict[str, list[str]] = field(default_factory=dict)
    hits: Counter = field(default_factory=Counter)
    url: str = ""
    stop: threading.Event = field(default_factory=threading.Event)

    def url_for(self, name: str) -> str:
        return f"{self.url}/{name}"


def _handler(server: FaultServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            name = self.path.lstrip("/")
            server.hits[name] += 1
            queue = server.plan.get(name, [])
            answer = queue.pop(0) if queue else "ok"
            data = (server.root / name).read_bytes()
            if answer == "stall_headers":
                server.stop.wait(STALL_S)  # accepted, read the request, never answers in time
                self.close_connection = True
                return
            if answer == "unsized_cut":
                # HTTP/1.0 style: the body ends when the connection closes, so the client cannot tell it is short.
                self.protocol_version = "HTTP/1.0"
                self.send_response(200)
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.close_connection = True
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if answer == "ok":
                self.wfile.write(data)
                return
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            if answer == "stall_body":
                server.stop.wait(STALL_S)
            elif answer == "reset":
                # SO_LINGER 0: close() sends RST instead of FIN, as a crashed proxy or middlebox does.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextlib.contextmanager
def fault_server(root: Path, plan: dict[str, list[str]] | None = None) -> Iterator[FaultServer]:
    server = FaultServer(root, dict(plan or {}))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    httpd.daemon_threads = True
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()  # release stalled handlers at once
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def www(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    (root / "blob.bin").write_bytes(bytes(range(256)) * 2000)  # 512 kB: more than one socket buffer
    return root


def _nothing_left(directory: Path) -> None:
    assert not directory.exists() or list(directory.iterdir()) == [], list(directory.iterdir())


def _one_line(text: str) -> str:
    assert "\n" not in text.strip(), text
    return text.strip()


def test_body_stalling_past_the_read_timeout_fails_fast_and_leaves_nothing(www: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "blob.bin"
    with fault_server(www, {"blob.bin": ["stall_body"]}) as server:
        url = server.url_for("blob.bin")
        started = time.monotonic()
        with pytest.raises(CnnreproError) as info:
            fetch([url], dest, timeout=TIMEOUT_S, retries=0, backoff=0)
        elapsed = time.monotonic() - started
    message = _one_line(str(info.value))
    assert message.startswith(f"{url}: truncated body: got ")
    assert message.endswith("(timed out)")
    assert elapsed < STALL_S, f"waited {elapsed:.1f} s: the timeout did not cut the stalled read"
    _nothing_left(dest.parent)


def test_server_that_never_answers_times_out_then_the_retry_succeeds(www: Path, tmp_path: Path) -> None:
    dest = tmp_path / "blob.bin"
    with fault_server(www, {"blob.bin": ["stall_headers", "stall_body"]}) as server:
        started = time.monotonic()
        record = fetch([server.url_for("blob.bin")], dest, timeout=TIMEOUT_S, retries=2, backoff=0)
        elapsed = time.monotonic() - started
        assert server.hits["blob.bin"] == 3
    assert elapsed < STALL_S, f"waited {elapsed:.1f} s: the timeouts did not cut the stalls"
    assert record.attempts == 3
    assert dest.read_bytes() == (www / "blob.bin").read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["blob.bin", "www"]  # no temporary left beside it


def test_connection_reset_mid_body_falls_back_to_the_next_source(www: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "blob.bin"
    dest.parent.mkdir()
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "blob.bin").write_bytes((www / "blob.bin").read_bytes())
    expected = hashlib.sha256((www / "blob.bin").read_bytes()).hexdigest()
    with fault_server(www, {"blob.bin": ["reset"]}) as server:
        url = server.url_for("blob.bin")
        record = fetch([url, str(backup / "blob.bin")], dest, expected_sha256=expected, timeout=5, retries=0, backoff=0)
    assert record.source == str(backup / "blob.bin")
    (failure,) = record.failed_sources
    assert failure.startswith(f"{url}: truncated body: got ")
    assert list(dest.parent.iterdir()) == [dest]


def test_reset_on_every_attempt_fails_in_one_line(www: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "blob.bin"
    with fault_server(www, {"blob.bin": ["reset"] * 3}) as server:
        url = server.url_for("blob.bin")
        with pytest.raises(CnnreproError) as info:
            fetch([url], dest, timeout=5, retries=2, backoff=0)
        assert server.hits["blob.bin"] == 3
    message = _one_line(str(info.value))
    assert message.startswith(f"{url}: truncated body: got ") and message.endswith("(after 3 attempts)")
    _nothing_left(dest.parent)


# ---------------------------------------------------------------- whole datasets through the CLI


def _pets_params(tmp_path: Path, mirror: Path | None, urls: list[str], sha256: str | None) -> Path:
    return write_params(
        tmp_path / "params.yaml",
        {
            "data.mirror": str(mirror) if mirror else None,
            "download.petimages.archive": "pets.zip",
            "download.petimages.urls": urls,
            "download.petimages.sha256": sha256,
            "download.retries": 0,
            "download.backoff_s": 0,
            "download.timeout_s": 5,
        },
    )


def test_unsized_body_cut_short_is_caught_by_the_zip_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No Content-Length and no pinned hash (the full Microsoft archive): only the zip check can tell."""
    served = tmp_path / "www"
    make_petimages_zip(served / "pets.zip", n_per_class=20)
    out = tmp_path / "data" / "raw" / "petimages"
    with fault_server(served, {"pets.zip": ["unsized_cut"]}) as server:
        url = server.url_for("pets.zip")
        params = _pets_params(tmp_path, None, [url], None)
        code = cli_main(["download", "--params", str(params), "--dataset", "petimages", "--out", str(out)])
    err = _one_line(capsys.readouterr().err)
    assert code == 1
    assert err.startswith(f"cnnrepro download: error: {url}: ")
    assert "zip" in err
    _nothing_left(out.parent)


def test_corrupt_mirror_file_gives_way_to_the_url(tmp_path: Path) -> None:
    served = tmp_path / "www"
    pets = make_petimages_zip(served / "pets.zip", n_per_class=2)
    mirror = tmp_path / "mirror"
    (mirror / "petimages").mkdir(parents=True)
    (mirror / "petimages" / "pets.zip").write_bytes(pets.path.read_bytes()[:-100])  # a torn copy
    out = tmp_path / "raw"
    with fault_server(served) as server:
        url = server.url_for("pets.zip")
        params = _pets_params(tmp_path, mirror, [url], pets.sha256)
        assert cli_main(["download", "--params", str(params), "--dataset", "petimages", "--out", str(out)]) == 0
        assert server.hits["pets.zip"] == 1
    (entry,) = json.loads((out / "manifest.json").read_text())["files"]
    assert entry["source"] == url
    (failure,) = entry["failed_sources"]
    assert failure.startswith(f"{mirror / 'petimages' / 'pets.zip'}: sha256 mismatch: expected {pets.sha256}")
    assert (out / "pets.zip").read_bytes() == pets.path.read_bytes()


def test_idx_file_stalled_then_good_on_retry_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fixture = make_idx_gz_dir(tmp_path / "www" / "mnist")
    monkeypatch.setenv("CNNREPRO_IDX_PINS", str(write_idx_pins(tmp_path / "pins.json", {"mnist": fixture.pins})))
    first = "train-images-idx3-ubyte.gz"
    with fault_server(tmp_path / "www", {f"mnist/{first}": ["stall_body"]}) as server:
        params = write_params(
            tmp_path / "params.yaml",
            {
                "data.mirror": None,
                "download.mnist.urls": [server.url + "/mnist/"],
                "download.retries": 1,
                "download.backoff_s": 0,
                "download.timeout_s": 1,
            },
        )
        out = tmp_path / "raw" / "mnist"
        assert cli_main(["download", "--params", str(params), "--dataset", "mnist", "--out", str(out)]) == 0, (
            capsys.readouterr().err
        )
        assert server.hits[f"mnist/{first}"] == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"][0]["source"] == f"{server.url}/mnist/{first}"
    assert (out / first).read_bytes() == (fixture.path / first).read_bytes()
