"""`cnnrepro download`: mirror first, retries, verification, and nothing at the output path after a failure."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from cnnrepro.cli import main as cli_main
from cnnrepro.data import idx
from cnnrepro.data.download import download_dataset, fetch
from cnnrepro.errors import CnnreproError
from cnnrepro.params import load_params

from .helpers_data import (
    closed_port_url,
    make_idx_gz_dir,
    make_petimages_zip,
    petimages_params,
    serve_directory,
    write_idx_pins,
    write_params,
)

FAST = {"timeout": 5, "retries": 0, "backoff": 0}


@pytest.fixture
def served(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    (root / "blob.bin").write_bytes(bytes(range(256)) * 400)
    return root


def _only_line(message: str) -> str:
    assert "\n" not in message.strip(), message
    return message.strip()


def _nothing_left(directory: Path) -> None:
    """No output and no temporary files in `directory` (which the stage may have created)."""
    assert not directory.exists() or list(directory.iterdir()) == []


def test_fetch_http_success(served: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "blob.bin"
    dest.parent.mkdir()
    expected = hashlib.sha256((served / "blob.bin").read_bytes()).hexdigest()
    with serve_directory(served) as server:
        record = fetch([server.url_for("blob.bin")], dest, expected_sha256=expected, **FAST)
    assert dest.read_bytes() == (served / "blob.bin").read_bytes()
    assert (record.size, record.sha256, record.attempts) == (dest.stat().st_size, expected, 1)
    assert list(dest.parent.iterdir()) == [dest]


@pytest.mark.parametrize("status", ["404", "403"])
def test_fetch_http_error_is_not_retried(served: Path, tmp_path: Path, status: str) -> None:
    dest = tmp_path / "out" / "blob.bin"
    with serve_directory(served, plan={"blob.bin": [status] * 5}) as server:
        url = server.url_for("blob.bin")
        with pytest.raises(CnnreproError) as info:
            fetch([url], dest, timeout=5, retries=3, backoff=0)
        assert server.hits["blob.bin"] == 1
    assert _only_line(str(info.value)) == f"{url}: HTTP {status}"
    _nothing_left(dest.parent)


def test_fetch_truncated_body_fails(served: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "blob.bin"
    size = (served / "blob.bin").stat().st_size
    with serve_directory(served, plan={"blob.bin": ["truncate"]}) as server:
        url = server.url_for("blob.bin")
        with pytest.raises(CnnreproError) as info:
            fetch([url], dest, **FAST)
    message = _only_line(str(info.value))
    assert message.startswith(f"{url}: truncated body: got ")
    assert f"of {size} bytes" in message
    _nothing_left(dest.parent)


def test_fetch_sha256_mismatch_names_both_hashes(served: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "blob.bin"
    actual = hashlib.sha256((served / "blob.bin").read_bytes()).hexdigest()
    with serve_directory(served) as server:
        url = server.url_for("blob.bin")
        with pytest.raises(CnnreproError) as info:
            fetch([url], dest, expected_sha256="0" * 64, **FAST)
    assert _only_line(str(info.value)) == f"{url}: sha256 mismatch: expected {'0' * 64}, got {actual}"
    _nothing_left(dest.parent)


def test_fetch_retries_transient_failures_then_succeeds(served: Path, tmp_path: Path) -> None:
    dest = tmp_path / "blob.bin"
    with serve_directory(served, plan={"blob.bin": ["503", "truncate"]}) as server:
        record = fetch([server.url_for("blob.bin")], dest, timeout=5, retries=2, backoff=0)
        assert server.hits["blob.bin"] == 3
    assert record.attempts == 3
    assert dest.read_bytes() == (served / "blob.bin").read_bytes()


def test_fetch_gives_up_after_the_retries(served: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "blob.bin"
    with serve_directory(served, plan={"blob.bin": ["503"] * 5}) as server:
        url = server.url_for("blob.bin")
        with pytest.raises(CnnreproError) as info:
            fetch([url], dest, timeout=5, retries=1, backoff=0)
        assert server.hits["blob.bin"] == 2
    assert _only_line(str(info.value)) == f"{url}: HTTP 503 (after 2 attempts)"
    _nothing_left(dest.parent)


def test_fetch_falls_through_to_the_next_source(served: Path, tmp_path: Path) -> None:
    dest = tmp_path / "blob.bin"
    missing_mirror = str(tmp_path / "mirror" / "blob.bin")
    with serve_directory(served, plan={"blob.bin": ["404"]}) as server:
        good = server.url_for("blob.bin")
        record = fetch([missing_mirror, good, good], dest, **FAST)
    assert record.source == good
    assert record.failed_sources == [f"{missing_mirror}: no such file", f"{good}: HTTP 404"]


def test_fetch_all_sources_failing_lists_each_on_one_line(served: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "blob.bin"
    refused = closed_port_url() + "/blob.bin"
    with serve_directory(served) as server:
        missing = server.url_for("nope.bin")
        with pytest.raises(CnnreproError) as info:
            fetch([refused, missing], dest, **FAST)
    message = _only_line(str(info.value))
    assert message.startswith("blob.bin: all 2 sources failed: ")
    assert f"{refused}: unreachable (" in message
    assert f"{missing}: HTTP 404" in message
    _nothing_left(dest.parent)


def test_fetch_copies_local_and_file_url_sources(served: Path, tmp_path: Path) -> None:
    original = (served / "blob.bin").read_bytes()
    record = fetch([(served / "blob.bin").as_uri()], tmp_path / "a.bin", **FAST)
    assert (tmp_path / "a.bin").read_bytes() == original
    assert record.sha256 == hashlib.sha256(original).hexdigest()
    fetch([str(served / "blob.bin")], tmp_path / "b.bin", **FAST)
    assert (tmp_path / "b.bin").read_bytes() == original


# ---------------------------------------------------------------- datasets through the CLI


def test_cli_petimages_takes_the_mirror_first(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    pets = make_petimages_zip(mirror / "petimages" / "pets.zip", n_per_class=2)
    with serve_directory(mirror / "petimages") as server:
        params = petimages_params(tmp_path, mirror, [server.url_for("pets.zip")], pets.sha256)
        out = tmp_path / "data" / "raw" / "petimages"
        assert cli_main(["download", "--params", str(params), "--dataset", "petimages", "--out", str(out)]) == 0
        assert server.hits["pets.zip"] == 0
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "pets.zip"]
    manifest = json.loads((out / "manifest.json").read_text())
    (entry,) = manifest["files"]
    assert entry["source"] == str(mirror / "petimages" / "pets.zip")
    assert (entry["sha256"], entry["sha256_pinned"], entry["size"]) == (pets.sha256, True, pets.path.stat().st_size)


def test_cli_petimages_without_mirror_file_downloads_and_records_unpinned_hash(tmp_path: Path) -> None:
    served = tmp_path / "www"
    pets = make_petimages_zip(served / "pets.zip", n_per_class=2)
    mirror = tmp_path / "mirror"
    (mirror / "petimages").mkdir(parents=True)
    with serve_directory(served) as server:
        url = server.url_for("pets.zip")
        params = petimages_params(tmp_path, mirror, [url], None)
        out = tmp_path / "raw"
        assert cli_main(["download", "--params", str(params), "--dataset", "petimages", "--out", str(out)]) == 0
        assert server.hits["pets.zip"] == 1
    (entry,) = json.loads((out / "manifest.json").read_text())["files"]
    assert (entry["source"], entry["sha256"], entry["sha256_pinned"]) == (url, pets.sha256, False)
    assert entry["failed_sources"] == [f"{mirror / 'petimages' / 'pets.zip'}: no such file"]
    assert (out / "pets.zip").read_bytes() == pets.path.read_bytes()


def test_cli_petimages_rejects_a_non_zip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    served = tmp_path / "www"
    served.mkdir()
    (served / "pets.zip").write_bytes(b"<html>moved</html>")
    with serve_directory(served) as server:
        url = server.url_for("pets.zip")
        params = petimages_params(tmp_path, None, [url], None)
        out = tmp_path / "raw" / "petimages"
        assert cli_main(["download", "--params", str(params), "--dataset", "petimages", "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip() == f"cnnrepro download: error: {url}: not a zip archive"
    _nothing_left(out.parent)


def test_cli_unreachable_source_without_mirror_fails_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = closed_port_url() + "/pets.zip"
    params = petimages_params(tmp_path, None, [url], None)
    out = tmp_path / "raw" / "petimages"
    assert cli_main(["download", "--params", str(params), "--dataset", "petimages", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert _only_line(err).startswith(f"cnnrepro download: error: {url}: unreachable (")
    _nothing_left(out.parent)


def _idx_params(tmp_path: Path, mirror: Path | None, base_url: str) -> Path:
    return write_params(
        tmp_path / "params.yaml",
        {
            "data.mirror": str(mirror) if mirror else None,
            "download.mnist.urls": [base_url],
            "download.fashion_mnist.urls": [base_url],
            "download.retries": 0,
            "download.backoff_s": 0,
            "download.timeout_s": 5,
        },
    )


@pytest.mark.parametrize(("dataset", "folder"), [("mnist", "mnist"), ("fashion_mnist", "fashion-mnist")])
def test_idx_download_verifies_uncompressed_contents(tmp_path: Path, dataset: str, folder: str) -> None:
    mirror = tmp_path / "mirror"
    fixture = make_idx_gz_dir(mirror / folder, n_train=20, n_test=10)
    params = load_params(_idx_params(tmp_path, mirror, closed_port_url() + "/"))
    out = tmp_path / "out"
    out.mkdir()
    manifest = download_dataset(dataset, params, out, pins=fixture.pins)
    assert [entry["name"] for entry in manifest["files"]] == [idx.gz_name(n) for n in idx.IDX_FILES]
    for name, entry in zip(idx.IDX_FILES, manifest["files"], strict=True):
        assert entry["source"] == str(mirror / folder / idx.gz_name(name))
        assert entry["uncompressed_sha256"] == fixture.pins[name].sha256
        assert (out / entry["name"]).read_bytes() == (fixture.path / entry["name"]).read_bytes()


def test_idx_download_falls_back_to_urls(tmp_path: Path) -> None:
    fixture = make_idx_gz_dir(tmp_path / "www" / "mnist")
    with serve_directory(tmp_path / "www") as server:
        params = load_params(_idx_params(tmp_path, None, server.url + "/mnist"))
        out = tmp_path / "out"
        out.mkdir()
        manifest = download_dataset("mnist", params, out, pins=fixture.pins)
    assert [e["source"] for e in manifest["files"]] == [f"{server.url}/mnist/{idx.gz_name(n)}" for n in idx.IDX_FILES]


def test_idx_download_rejects_a_wrong_file(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    fixture = make_idx_gz_dir(mirror / "mnist")
    labels = mirror / "mnist" / "train-labels-idx1-ubyte.gz"
    (mirror / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(labels.read_bytes())
    params = load_params(_idx_params(tmp_path, mirror, closed_port_url() + "/"))
    with pytest.raises(CnnreproError, match=r"train-images-idx3-ubyte.gz: idx magic mismatch: expected 2051, got 2049"):
        download_dataset("mnist", params, tmp_path, pins=fixture.pins)


def test_cli_idx_real_pins_reject_other_contents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mirror = tmp_path / "mirror"
    fixture = make_idx_gz_dir(mirror / "mnist")
    params = _idx_params(tmp_path, mirror, closed_port_url() + "/")
    out = tmp_path / "raw" / "mnist"
    assert cli_main(["download", "--params", str(params), "--dataset", "mnist", "--out", str(out)]) == 1
    err = _only_line(capsys.readouterr().err)
    # The mirror's file fails its pin, then the unreachable URL: both named.
    real = idx.PINNED["mnist"]["train-images-idx3-ubyte"]
    assert f"item count mismatch: expected {real.count}, got {len(fixture.arrays['x_train'])}" in err
    assert "unreachable (" in err
    _nothing_left(out.parent)


def test_cli_idx_pins_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    fixture = make_idx_gz_dir(mirror / "fashion-mnist")
    monkeypatch.setenv(idx.PINS_ENV, str(write_idx_pins(tmp_path / "pins.json", {"fashion_mnist": fixture.pins})))
    params = _idx_params(tmp_path, mirror, closed_port_url() + "/")
    out = tmp_path / "raw" / "fashion_mnist"
    assert cli_main(["download", "--params", str(params), "--dataset", "fashion_mnist", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([*map(idx.gz_name, idx.IDX_FILES), "manifest.json"])
