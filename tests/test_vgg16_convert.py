"""VGG16: Keras h5 -> PyTorch conversion, checked tensor by tensor and against a NumPy forward pass;
finding the weights file (path, Keras cache, project cache, download) and failing honestly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import sha256_file
from cnnrepro.train import vgg16_weights
from cnnrepro.train.backends.torch.models import vgg16
from cnnrepro.train.engine.run_config import VGG16Settings

from .helpers_parity import forward_rounding_bound
from .helpers_train import UNREACHABLE_URL, keras_vgg16_weights, write_keras_h5


@pytest.fixture(scope="module")
def weights() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return keras_vgg16_weights(seed=3)


def _numpy_vgg16(x_nhwc: np.ndarray, weights: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Keras' forward pass written out in NumPy, in Keras' own layout: NHWC, kernels (kh, kw, in, out),
    3x3 'same' cross-correlation + bias + ReLU, 2x2 max pool (floor). Independent of PyTorch."""
    x = x_nhwc.astype(np.float64)
    for b, (n, _) in enumerate(vgg16_weights.BLOCKS, start=1):
        for i in range(1, n + 1):
            kernel, bias = weights[f"block{b}_conv{i}"]
            batch, h, w, _ = x.shape
            padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
            out = np.zeros((batch, h, w, kernel.shape[3]))
            for dy in range(3):
                for dx in range(3):
                    out += padded[:, dy : dy + h, dx : dx + w, :] @ kernel[dy, dx].astype(np.float64)
            x = np.maximum(out + bias, 0)
        batch, h, w, c = x.shape
        x = x[:, : h // 2 * 2, : w // 2 * 2].reshape(batch, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
    return x


@pytest.mark.parametrize("style", ["keras2", "keras1"])
def test_every_layer_is_converted_exactly(tmp_path: Path, weights: dict, style: str) -> None:
    path = write_keras_h5(tmp_path / f"{style}.h5", weights, style=style)
    state = vgg16.convert_keras_vgg16(path)
    assert set(state) == set(vgg16.VGG16Base().state_dict())
    for name, (kernel, bias) in weights.items():
        converted = state[f"{name}.weight"].numpy()
        # (kh, kw, in, out) -> (out, in, kh, kw): element [o, c, y, x] is Keras' [y, x, c, o].
        assert converted.shape == (kernel.shape[3], kernel.shape[2], 3, 3)
        assert converted[5 % kernel.shape[3], 1, 2, 0] == kernel[2, 0, 1, 5 % kernel.shape[3]]
        np.testing.assert_array_equal(converted, kernel.transpose(3, 2, 0, 1))
        np.testing.assert_array_equal(state[f"{name}.bias"].numpy(), bias)


def test_converted_base_computes_what_keras_computes(tmp_path: Path, weights: dict) -> None:
    path = write_keras_h5(tmp_path / "w.h5", weights)
    base = vgg16.VGG16Base()
    vgg16.load_keras_vgg16_(base, path)
    x = np.random.default_rng(0).random((1, 32, 32, 3)).astype(np.float32)
    expected = _numpy_vgg16(x, weights)  # (1, 1, 1, 512)
    x_torch = torch.from_numpy(x).permute(0, 3, 1, 2)
    with torch.no_grad():
        got = base(x_torch).permute(0, 2, 3, 1).numpy()
    assert got.shape == expected.shape == (1, 1, 1, 512)
    assert np.abs(expected).max() > 0  # the comparison is not between two zero maps
    # float32 PyTorch against the float64 NumPy pass: within the forward chain's rounding (tests/tolerances.py).
    bound = forward_rounding_bound(base, x_torch)
    assert np.abs(got - expected).max() <= bound < 0.1 * np.abs(expected).max()


def test_a_file_missing_a_layer_or_with_wrong_shapes_is_named(tmp_path: Path, weights: dict) -> None:
    partial = {k: v for k, v in weights.items() if k != "block4_conv2"}
    path = write_keras_h5(tmp_path / "partial.h5", partial)
    with pytest.raises(CnnreproError, match=r"partial\.h5: layer block4_conv2 has no weights"):
        vgg16.convert_keras_vgg16(path)
    wrong = dict(weights)
    kernel, bias = weights["block1_conv1"]
    wrong["block1_conv1"] = (kernel[:, :, :, :32], bias[:32])
    with pytest.raises(CnnreproError, match=r"block1_conv1\.weight: shape"):
        vgg16.convert_keras_vgg16(write_keras_h5(tmp_path / "wrong.h5", wrong))
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(CnnreproError, match=r"junk\.h5: not a readable HDF5"):
        vgg16.convert_keras_vgg16(tmp_path / "junk.h5")


def _vgg_params(**kw: object) -> VGG16Settings:
    defaults = {"source": "keras", "path": None, "url": UNREACHABLE_URL, "sha256": None, "preprocessing": "book"}
    return VGG16Settings(**(defaults | kw))


@pytest.fixture
def no_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No Keras cache and an empty project cache: the working directory is a fresh temp dir."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_weights_are_found_in_the_documented_order(tmp_path: Path, weights: dict, no_caches: Path) -> None:
    h5 = write_keras_h5(tmp_path / "src.h5", weights)
    cached = vgg16_weights.keras_cache_path()
    assert cached == tmp_path / "keras_home" / "models" / vgg16_weights.KERAS_WEIGHTS_NAME
    # 1. the params path wins over the cache
    write_keras_h5(cached, weights)
    assert vgg16_weights.resolve_keras_weights(_vgg_params(path=str(h5))) == h5
    # 2. the Keras cache
    assert vgg16_weights.resolve_keras_weights(_vgg_params()) == cached
    cached.unlink()
    # 3. the download (a file:// URL here), saved into the project cache and verified
    got = vgg16_weights.resolve_keras_weights(_vgg_params(url=h5.as_uri(), sha256=sha256_file(h5)))
    assert got == Path(".cnnrepro/weights") / vgg16_weights.KERAS_WEIGHTS_NAME
    assert sha256_file(got) == sha256_file(h5)
    assert not list(got.parent.glob("*.part"))
    # ... and found there the next time, without the URL
    assert vgg16_weights.resolve_keras_weights(_vgg_params()) == got


def test_unavailable_weights_say_what_was_tried(no_caches: Path) -> None:
    with pytest.raises(vgg16_weights.WeightsUnavailable) as info:
        vgg16_weights.resolve_keras_weights(_vgg_params(path="missing.h5"), timeout_s=5)
    message = str(info.value)
    assert message.startswith("ImageNet weights unavailable: tried train.vgg16.path missing.h5 (missing)")
    assert "Keras cache" in message and UNREACHABLE_URL in message and "\n" not in message
    assert not (Path(".cnnrepro/weights") / vgg16_weights.KERAS_WEIGHTS_NAME).exists()


def test_a_checksum_mismatch_stops_and_leaves_nothing(tmp_path: Path, weights: dict, no_caches: Path) -> None:
    h5 = write_keras_h5(tmp_path / "src.h5", weights)
    with pytest.raises(CnnreproError, match=r"does not match train\.vgg16\.sha256"):
        vgg16_weights.resolve_keras_weights(_vgg_params(url=h5.as_uri(), sha256="0" * 64))
    assert not (Path(".cnnrepro/weights") / vgg16_weights.KERAS_WEIGHTS_NAME).exists()
    with pytest.raises(CnnreproError, match=r"train.vgg16.path .*src\.h5: sha256"):
        vgg16_weights.resolve_keras_weights(_vgg_params(path=str(h5), sha256="0" * 64))
