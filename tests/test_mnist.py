"""`cnnrepro prepare-mnist`: idx .gz files to a checked .npz, and the loader training uses."""

from __future__ import annotations

import gzip
import hashlib
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cnnrepro.cli import main as cli_main
from cnnrepro.data import idx
from cnnrepro.data.mnist import ARRAY_KEYS, load_idx_arrays, load_raw, write_npz
from cnnrepro.errors import CnnreproError

from .helpers_data import IdxFixture, idx_bytes, make_idx_gz_dir, write_idx_pins, write_params

SHARED_MIRROR = Path("/work/shared/datasets")


def _replace_file(fixture: IdxFixture, name: str, array: np.ndarray) -> dict[str, idx.IdxSpec]:
    """Rewrite one idx file with `array`; return pins that accept the new contents."""
    raw = idx_bytes(array)
    (fixture.path / idx.gz_name(name)).write_bytes(gzip.compress(raw, mtime=0))
    return {**fixture.pins, name: idx.IdxSpec(hashlib.sha256(raw).hexdigest(), len(array))}


@pytest.mark.parametrize("compress", [True, False])
def test_prepare_round_trip(tmp_path: Path, compress: bool) -> None:
    fixture = make_idx_gz_dir(tmp_path / "raw", n_train=30, n_test=20)
    arrays = load_raw(fixture.path, "mnist", pins=fixture.pins)
    out = tmp_path / "prepared" / "mnist.npz"
    write_npz(arrays, out, compress=compress)
    assert sorted(p.name for p in out.parent.iterdir()) == ["mnist.npz"]
    loaded = load_idx_arrays(out)
    assert list(loaded) == list(ARRAY_KEYS)
    for key in ARRAY_KEYS:
        assert loaded[key].dtype == np.uint8
        np.testing.assert_array_equal(loaded[key], fixture.arrays[key])
    assert loaded["x_train"].shape == (30, 28, 28) and loaded["y_test"].shape == (20,)
    with zipfile.ZipFile(out) as zf:
        methods = {info.compress_type for info in zf.infolist()}
    assert methods == {zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED}


def test_label_out_of_range(tmp_path: Path) -> None:
    fixture = make_idx_gz_dir(tmp_path)
    labels = fixture.arrays["y_test"].copy()
    labels[0] = 10
    pins = _replace_file(fixture, "t10k-labels-idx1-ubyte", labels)
    with pytest.raises(CnnreproError, match=r"t10k-labels-idx1-ubyte.gz: label 10 out of range 0-9"):
        load_raw(fixture.path, "mnist", pins=pins)


def test_implausible_class_counts(tmp_path: Path) -> None:
    fixture = make_idx_gz_dir(tmp_path, n_train=20)
    labels = fixture.arrays["y_train"].copy()
    labels[labels == 3] = 4
    pins = _replace_file(fixture, "train-labels-idx1-ubyte", labels)
    with pytest.raises(CnnreproError, match=r"train-labels-idx1-ubyte.gz: class 3 has 0 of 20 labels, expected 1 to 3"):
        load_raw(fixture.path, "mnist", pins=pins)


def test_images_and_labels_disagree(tmp_path: Path) -> None:
    fixture = make_idx_gz_dir(tmp_path, n_train=20)
    pins = _replace_file(fixture, "train-images-idx3-ubyte", fixture.arrays["x_train"][:10])
    with pytest.raises(CnnreproError, match=r"train has 10 images but 20 labels"):
        load_raw(fixture.path, "mnist", pins=pins)


def test_pins_are_checked(tmp_path: Path) -> None:
    fixture = make_idx_gz_dir(tmp_path)
    name = "train-images-idx3-ubyte"
    wrong_count = {**fixture.pins, name: replace(fixture.pins[name], count=21)}
    with pytest.raises(CnnreproError, match=r"idx item count mismatch: expected 21, got 20"):
        load_raw(fixture.path, "mnist", pins=wrong_count)
    wrong_hash = {**fixture.pins, name: replace(fixture.pins[name], sha256="a" * 64)}
    with pytest.raises(
        CnnreproError, match=rf"uncompressed sha256 mismatch: expected {'a' * 64}, got {fixture.pins[name].sha256}"
    ):
        load_raw(fixture.path, "mnist", pins=wrong_hash)
    # The table pinned in code (real MNIST) rejects the fixture.
    with pytest.raises(CnnreproError, match=r"expected 60000, got 20"):
        load_raw(fixture.path, "mnist")


def test_loader_rejects_foreign_npz(tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    np.savez(path, x_train=np.zeros((2, 28, 28), np.uint8), y_train=np.zeros(2, np.uint8))
    with pytest.raises(CnnreproError, match=r"other.npz: missing arrays x_test, y_test"):
        load_idx_arrays(path)
    np.savez(path, **{k: np.zeros((2, 28, 28) if k[0] == "x" else 2, np.float32) for k in ARRAY_KEYS})
    with pytest.raises(CnnreproError, match=r"not idx arrays"):
        load_idx_arrays(path)
    with pytest.raises(CnnreproError, match=r"missing"):
        load_idx_arrays(tmp_path / "absent.npz")


def test_cli_prepare_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fixture = make_idx_gz_dir(tmp_path / "data" / "raw" / "fashion_mnist", n_train=40, n_test=20)
    params = write_params(tmp_path / "params.yaml", {"prepare_mnist.compress": False})
    out = tmp_path / "data" / "prepared" / "fashion_mnist.npz"
    argv = ["prepare-mnist", "--params", str(params), "--dataset", "fashion_mnist", "--raw", str(fixture.path)]
    # Without pins for the fixture, the real ones reject it and nothing is written.
    assert cli_main([*argv, "--out", str(out)]) == 1
    assert "train-images-idx3-ubyte.gz: idx item count mismatch: expected 60000, got 40" in capsys.readouterr().err
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    monkeypatch.setenv(idx.PINS_ENV, str(write_idx_pins(tmp_path / "pins.json", {"fashion_mnist": fixture.pins})))
    assert cli_main([*argv, "--out", str(out)]) == 0
    np.testing.assert_array_equal(load_idx_arrays(out)["y_train"], fixture.arrays["y_train"])


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_MIRROR / "mnist").is_dir(), reason="no shared data mirror here")
@pytest.mark.parametrize(("dataset", "folder"), [("mnist", "mnist"), ("fashion_mnist", "fashion-mnist")])
def test_real_sets_from_the_shared_mirror(dataset: str, folder: str) -> None:
    arrays = load_raw(SHARED_MIRROR / folder, dataset)
    assert arrays["x_train"].shape == (60000, 28, 28) and arrays["x_test"].shape == (10000, 28, 28)
    assert np.bincount(arrays["y_test"]).sum() == 10000
