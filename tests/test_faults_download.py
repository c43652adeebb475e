"""Download faults tests/test_download.py does not script: a body that stalls past the read timeout, a
server that never answers, a connection reset mid-body, a body cut short with no Content-Length to
check against, and a corrupt mirror file that must give way to the URL. After every failure, nothing
is left at the output path.

The loopback server is helpers_data's serve_directory, whose scripted answers include these faults.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from cnnrepro.cli import main as cli_main
from cnnrepro.data.download import fetch
from cnnrepro.errors import CnnreproError

from .helpers_data import (
    STALL_S,
    make_idx_gz_dir,
    make_petimages_zip,
    petimages_params,
    serve_directory,
    write_idx_pins,
    write_params,
)

TIMEOUT_S = 0.3


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
    with serve_directory(www, {"blob.bin": ["stall_body"]}) as server:
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
    with serve_directory(www, {"blob.bin": ["stall_headers", "stall_body"]}) as server:
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
    with serve_directory(www, {"blob.bin": ["reset"]}) as server:
        url = server.url_for("blob.bin")
        record = fetch([url, str(backup / "blob.bin")], dest, expected_sha256=expected, timeout=5, retries=0, backoff=0)
    assert record.source == str(backup / "blob.bin")
    (failure,) = record.failed_sources
    assert failure.startswith(f"{url}: truncated body: got ")
    assert list(dest.parent.iterdir()) == [dest]


def test_reset_on_every_attempt_fails_in_one_line(www: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "blob.bin"
    with serve_directory(www, {"blob.bin": ["reset"] * 3}) as server:
        url = server.url_for("blob.bin")
        with pytest.raises(CnnreproError) as info:
            fetch([url], dest, timeout=5, retries=2, backoff=0)
        assert server.hits["blob.bin"] == 3
    message = _one_line(str(info.value))
    assert message.startswith(f"{url}: truncated body: got ") and message.endswith("(after 3 attempts)")
    _nothing_left(dest.parent)


# ---------------------------------------------------------------- whole datasets through the CLI


def test_unsized_body_cut_short_is_caught_by_the_zip_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No Content-Length and no pinned hash (the full Microsoft archive): only the zip check can tell."""
    served = tmp_path / "www"
    make_petimages_zip(served / "pets.zip", n_per_class=20)
    out = tmp_path / "data" / "raw" / "petimages"
    with serve_directory(served, {"pets.zip": ["unsized_cut"]}) as server:
        url = server.url_for("pets.zip")
        params = petimages_params(tmp_path, None, [url], None)
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
    with serve_directory(served) as server:
        url = server.url_for("pets.zip")
        params = petimages_params(tmp_path, mirror, [url], pets.sha256)
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
    with serve_directory(tmp_path / "www", {f"mnist/{first}": ["stall_body"]}) as server:
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
