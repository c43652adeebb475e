"""The decode-once image cache: bit-identical to decoding, keyed so a changed split is never read
stale, atomic, shared by parallel loaders, and wired into the runner by train.image_cache."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnrepro.errors import CnnreproError
from cnnrepro.params import load_params
from cnnrepro.train.configure import configure_run
from cnnrepro.train.engine import cache
from cnnrepro.train.engine import checkpoint as ckpt
from cnnrepro.train.engine.lifecycle import load_splits
from cnnrepro.train.engine.splits import load_image_split, manifest_sha256

from .helpers_train import make_image_folder, write_params

SIZE = (150, 150)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """train/ with JPEGs of two sizes, a grayscale PNG and an RGBA PNG (every conversion path)."""
    root = make_image_folder(tmp_path / "split", {"train": 3}, size=(37, 53))
    make_image_folder(tmp_path / "other", {"train": 2}, size=(180, 120), seed=1)
    for cls in ("cats", "dogs"):
        for i in range(2):
            os.replace(tmp_path / "other" / "train" / cls / f"{i}.jpg", root / "train" / cls / f"big{i}.jpg")
    Image.fromarray(np.full((20, 30), 90, np.uint8), mode="L").save(root / "train" / "dogs" / "gray.png")
    rgba = np.random.default_rng(2).integers(0, 256, (25, 25, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(root / "train" / "cats" / "alpha.png")
    return root / "train"


def _npy_files(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / cache.CACHE_SUBDIR).glob("*.npy")) if (cache_dir / cache.CACHE_SUBDIR).is_dir() else []


def _no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded although the cache holds this split")

    monkeypatch.setattr(cache, "load_images", refuse)


@pytest.mark.parametrize("resample", ["nearest", "bilinear"])
def test_cache_returns_exactly_what_decoding_returns(
    folder: Path, tmp_path: Path, resample: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    direct = load_image_split(folder, SIZE, resample, ("cats", "dogs"))
    first = load_image_split(folder, SIZE, resample, ("cats", "dogs"), cache_dir=tmp_path / "c", manifest_sha256="m")
    assert len(_npy_files(tmp_path / "c")) == 1
    _no_decoding(monkeypatch)
    second = load_image_split(folder, SIZE, resample, ("cats", "dogs"), cache_dir=tmp_path / "c", manifest_sha256="m")
    for split in (first, second):
        assert split.images.dtype == np.uint8 and split.images.shape == direct.images.shape == (12, 150, 150, 3)
        assert np.array_equal(split.images, direct.images)
        assert np.array_equal(split.labels, direct.labels) and split.labels.dtype == direct.labels.dtype
        assert split.classes == direct.classes and split.paths == direct.paths


def test_a_changed_split_gets_a_new_key(folder: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "c"
    base = load_image_split(folder, SIZE, "nearest", cache_dir=cache_dir, manifest_sha256="a")
    load_image_split(folder, SIZE, "nearest", cache_dir=cache_dir, manifest_sha256="b")  # manifest changed
    assert len(_npy_files(cache_dir)) == 2
    load_image_split(folder, (64, 64), "nearest", cache_dir=cache_dir, manifest_sha256="a")  # size
    load_image_split(folder, SIZE, "bilinear", cache_dir=cache_dir, manifest_sha256="a")  # filter
    assert len(_npy_files(cache_dir)) == 4
    # The same manifest, but an image replaced on disk: the listing (size, mtime) changes the key.
    target = folder / "cats" / "0.jpg"
    Image.fromarray(np.zeros((37, 53, 3), np.uint8)).save(target)
    os.utime(target, ns=(1, 1))
    changed = load_image_split(folder, SIZE, "nearest", cache_dir=cache_dir, manifest_sha256="a")
    assert len(_npy_files(cache_dir)) == 5
    assert changed.images[0].max() == 0 and base.images[0].max() > 0
    # A removed image too.
    (folder / "dogs" / "gray.png").unlink()
    fewer = load_image_split(folder, SIZE, "nearest", cache_dir=cache_dir, manifest_sha256="a")
    assert len(fewer) == len(base) - 1 and len(_npy_files(cache_dir)) == 6


def test_the_runner_keys_the_cache_by_the_split_manifest(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "book", {"train": 2, "validation": 1, "test": 1})
    (data / "manifest.csv").write_text("split,class,id\ntrain,cats,0\n")
    first = manifest_sha256(data, "dogs_vs_cats")
    (data / "manifest.csv").write_text("split,class,id\ntrain,cats,1\n")
    assert manifest_sha256(data, "dogs_vs_cats") != first
    cache_dir = str(tmp_path / "cc")
    params = load_params(write_params(tmp_path / "p.yaml", tracking_uri="sqlite:///x.db", image_cache_dir=cache_dir))
    config = configure_run(params, framework="torch", variant="baseline", seed=0, data_dir=data, out_dir="o")
    assert config.data.image_cache == cache_dir
    load_splits(config)
    (data / "manifest.csv").write_text("split,class,id\ntrain,cats,2\n")
    load_splits(config)
    assert len(_npy_files(tmp_path / "cc")) == 6  # three splits, two manifests


def test_a_failed_decode_leaves_no_cache_file(folder: Path, tmp_path: Path) -> None:
    (folder / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(CnnreproError, match=r"broken\.jpg: cannot decode image"):
        load_image_split(folder, SIZE, "nearest", cache_dir=tmp_path / "c")
    leftovers = [p.name for p in (tmp_path / "c" / cache.CACHE_SUBDIR).iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []


def test_a_corrupt_or_wrong_cache_file_is_rebuilt(folder: Path, tmp_path: Path) -> None:
    direct = load_image_split(folder, SIZE, "nearest")
    cache_dir = tmp_path / "c"
    load_image_split(folder, SIZE, "nearest", cache_dir=cache_dir)
    (target,) = _npy_files(cache_dir)
    target.write_bytes(target.read_bytes()[:1000])  # a truncated file (e.g. a disk filled up)
    assert np.array_equal(load_image_split(folder, SIZE, "nearest", cache_dir=cache_dir).images, direct.images)
    np.save(target, np.zeros((2, 3), np.uint8))  # a valid array of the wrong shape
    assert np.array_equal(load_image_split(folder, SIZE, "nearest", cache_dir=cache_dir).images, direct.images)
    assert np.load(target).shape == direct.images.shape
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".part")]


def test_parallel_loaders_decode_once_and_agree(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decodes = []
    real = cache.load_images

    def counted(*args: object, **kwargs: object) -> np.ndarray:
        decodes.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cache, "load_images", counted)
    results: list[np.ndarray] = []

    def load() -> None:
        results.append(load_image_split(folder, SIZE, "nearest", cache_dir=tmp_path / "c").images)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and len(decodes) == 1
    assert all(np.array_equal(r, results[0]) for r in results)


def test_image_cache_param_and_checkpoint_hash(tmp_path: Path) -> None:
    # channels_last off in both: its default (auto) is on for a CPU run, which hashes as a changed arithmetic.
    on = load_params(
        write_params(
            tmp_path / "on.yaml", tracking_uri="sqlite:///x.db", image_cache_dir="somewhere", channels_last=False
        )
    )
    off = load_params(
        write_params(tmp_path / "off.yaml", tracking_uri="sqlite:///x.db", image_cache=False, channels_last=False)
    )
    kw = dict(framework="torch", seed=0, data_dir="d", out_dir="o")
    cached = configure_run(on, variant="baseline", **kw).as_record()
    plain = configure_run(off, variant="baseline", **kw).as_record()
    assert cached["image_cache"] == "somewhere" and plain["image_cache"] is None
    assert configure_run(on, variant="mnist_convnet", **kw).data.image_cache is None  # arrays, nothing to decode
    # Where images are cached never changes a result: the checkpoint of one resumes under the other.
    assert ckpt.config_hash(cached) == ckpt.config_hash(plain)
    # Speed options at their defaults hash as if absent (checkpoints written before they existed resume) ...
    legacy = {k: v for k, v in plain.items() if k not in ("channels_last", "compile", "image_cache")}
    assert ckpt.config_hash(legacy) == ckpt.config_hash(plain)
    # ... and switched on they change the arithmetic, so the hash.
    assert ckpt.config_hash(plain | {"channels_last": True}) != ckpt.config_hash(plain)
    assert ckpt.config_hash(plain | {"compile": True}) != ckpt.config_hash(plain)
