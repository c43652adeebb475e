"""cnnrepro.train.inputs.augment: ImageDataGenerator semantics, checked against scipy.ndimage (what Keras used)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.stats
import torch

from cnnrepro.errors import CnnreproError
from cnnrepro.train.engine.augmentation_spec import AugmentationSpec, book_augmentation
from cnnrepro.train.inputs.augment import apply_transforms, augment_batch, sample_transforms, transform_matrices

N_DRAWS = 4000


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pattern(n: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Random 0-255 RGB images: every pixel distinct enough that a misplaced sample shows."""
    return torch.randint(0, 256, (n, 3, height, width), generator=_generator(seed)).float()


def _params(n: int = 1, **values: float | bool) -> dict[str, torch.Tensor]:
    """Hand-set transform parameters (identity unless given)."""
    defaults = {"theta": 0.0, "tx": 0.0, "ty": 0.0, "shear": 0.0, "zx": 1.0, "zy": 1.0}
    params = {
        key: torch.full((n,), float(values.get(key, default)), dtype=torch.float64) for key, default in defaults.items()
    }
    params["flip"] = torch.full((n,), bool(values.get("flip", False)))
    return params


def _scipy_reference(images: torch.Tensor, matrices: torch.Tensor, order: int, mode: str) -> np.ndarray:
    """What Keras did: scipy.ndimage.affine_transform per channel with the output->input matrix."""
    out = np.empty(images.shape, dtype=np.float64)
    for i, image in enumerate(images.double().numpy()):
        matrix = matrices[i].numpy()
        for c, channel in enumerate(image):
            out[i, c] = ndi.affine_transform(channel, matrix[:2, :2], matrix[:2, 2], order=order, mode=mode, cval=0.0)
    return out


def test_sampled_parameters_ranges_and_uniformity() -> None:
    height, width = 100, 150  # unequal, so a swapped height/width shift would show
    params = sample_transforms(N_DRAWS, book_augmentation("2.0.8"), height, width, _generator(0))
    expected_bounds = {
        "theta": 40.0,
        "tx": 0.2 * height,
        "ty": 0.2 * width,
        "shear": float(np.degrees(0.2)),  # 2.0.8: 0.2 radians, reported in degrees
    }
    for key, bound in expected_bounds.items():
        values = params[key].numpy()
        assert values.min() >= -bound and values.max() <= bound, key
        assert values.max() > 0.98 * bound and values.min() < -0.98 * bound, key  # the whole range is used
        assert scipy.stats.kstest(values, scipy.stats.uniform(loc=-bound, scale=2 * bound).cdf).pvalue > 1e-3, key
        assert abs(values.mean()) < 4 * (2 * bound / np.sqrt(12)) / np.sqrt(N_DRAWS), key
        assert np.quantile(values, 0.25) == pytest.approx(-bound / 2, abs=0.05 * bound), key
    zx, zy = params["zx"].numpy(), params["zy"].numpy()
    for values in (zx, zy):
        assert values.min() >= 0.8 and values.max() <= 1.2
        assert scipy.stats.kstest(values, scipy.stats.uniform(loc=0.8, scale=0.4).cdf).pvalue > 1e-3
    assert abs(np.corrcoef(zx, zy)[0, 1]) < 0.08  # drawn independently, not one zoom for both axes
    assert abs(np.corrcoef(params["theta"].numpy(), params["tx"].numpy())[0, 1]) < 0.08
    flip_rate = params["flip"].double().mean().item()
    assert abs(flip_rate - 0.5) < 0.04
    assert params["flip"].dtype == torch.bool


def test_same_seed_same_draws_and_zero_ranges_are_exact() -> None:
    spec = book_augmentation()
    first = sample_transforms(16, spec, 32, 32, _generator(7))
    again = sample_transforms(16, spec, 32, 32, _generator(7))
    other = sample_transforms(16, spec, 32, 32, _generator(8))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["theta"], other["theta"])
    still = sample_transforms(16, AugmentationSpec(), 32, 32, _generator(7))
    assert torch.all(still["theta"] == 0) and torch.all(still["zx"] == 1) and not still["flip"].any()
    assert torch.allclose(transform_matrices(still, 32, 32), torch.eye(3, dtype=torch.float64).expand(16, 3, 3))


def _keras_matrix(theta: float, tx: float, ty: float, shear: float, zx: float, zy: float, h: int, w: int) -> np.ndarray:
    """Keras 2.0.8 `random_transform` + `transform_matrix_offset_center`, transcribed in numpy (radians)."""
    rotation = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    translation = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    shear_matrix = np.array([[1, -np.sin(shear), 0], [0, np.cos(shear), 0], [0, 0, 1]])
    zoom = np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
    matrix = np.dot(np.dot(np.dot(rotation, translation), shear_matrix), zoom)
    o_x, o_y = float(h) / 2 + 0.5, float(w) / 2 + 0.5
    offset = np.array([[1, 0, o_x], [0, 1, o_y], [0, 0, 1]])
    reset = np.array([[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1]])
    return np.dot(np.dot(offset, matrix), reset)


def test_matrices_match_keras_2_0_8() -> None:
    height, width = 20, 30
    params = sample_transforms(50, book_augmentation("2.0.8"), height, width, _generator(2))
    matrices = transform_matrices(params, height, width).numpy()
    for i in range(50):
        theta, tx, ty, shear, zx, zy = (params[k][i].item() for k in ("theta", "tx", "ty", "shear", "zx", "zy"))
        expected = _keras_matrix(np.radians(theta), tx, ty, np.radians(shear), zx, zy, height, width)
        np.testing.assert_allclose(matrices[i], expected, atol=1e-9)


def test_identity_spec_returns_the_input_exactly() -> None:
    images = _pattern(3, 17, 19) + 0.25  # non-integers too
    for dtype in (torch.float32, torch.bfloat16, torch.uint8):
        batch = images.to(dtype)
        out = augment_batch(batch, AugmentationSpec(), _generator())
        assert out.dtype == dtype and torch.equal(out, batch)
        assert out.data_ptr() != batch.data_ptr()  # a copy: the caller may rescale it in place
    # Zero ranges given explicitly, and a zoom pair of (1, 1), are the identity too.
    spec = AugmentationSpec(rotation_range=0, zoom_range=(1.0, 1.0), semantics="2.1.3")
    assert torch.equal(augment_batch(images, spec, _generator()), images)


def test_each_image_gets_its_own_transform() -> None:
    image = _pattern(1, 24, 24)
    batch = image.repeat(4, 1, 1, 1)
    out = augment_batch(batch, book_augmentation(), _generator(3))
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.equal(out[i], out[j]), (i, j)
    # And the batch used exactly the draws sample_transforms makes from the same generator state.
    params = sample_transforms(4, book_augmentation(), 24, 24, _generator(3))
    assert torch.equal(out, apply_transforms(batch, params, book_augmentation()))


def test_pure_shift_moves_a_pixel_where_keras_would() -> None:
    image = torch.zeros(1, 1, 12, 16)
    image[0, 0, 6, 8] = 255.0
    # Output (r, c) samples input (r + tx, c + ty): the dot moves up 3 rows and right 5 columns.
    out = apply_transforms(image, _params(tx=3, ty=-5), AugmentationSpec(height_shift_range=0.5))
    assert out[0, 0].nonzero().tolist() == [[3, 13]]


def test_pure_rotation_by_90_degrees_uses_keras_centre() -> None:
    image = torch.zeros(1, 1, 10, 10)
    image[0, 0, 2, 3] = 255.0
    out = apply_transforms(image, _params(theta=90), AugmentationSpec(rotation_range=90))
    # Input (ri, ci) lands at (ci - o + o, o + o - ri) with Keras' centre o = 10/2 + 0.5 = 5.5.
    assert out[0, 0].nonzero().tolist() == [[3, 9]]
    reference = _scipy_reference(image, transform_matrices(_params(theta=90), 10, 10), order=0, mode="nearest")
    assert np.array_equal(out.numpy(), reference)


@pytest.mark.parametrize(("semantics", "order"), [("2.0.8", 0), ("2.1.3", 1)])
def test_random_transforms_agree_with_scipy(semantics: str, order: int) -> None:
    spec = AugmentationSpec(
        rotation_range=40,
        width_shift_range=0.2,
        height_shift_range=0.2,
        shear_range=0.2 if semantics == "2.0.8" else 11.5,
        zoom_range=0.2,
        semantics=semantics,
    )
    images = _pattern(6, 21, 27)
    out = augment_batch(images, spec, _generator(5))
    matrices = transform_matrices(sample_transforms(6, spec, 21, 27, _generator(5)), 21, 27)
    reference = _scipy_reference(images, matrices, order=order, mode="nearest")
    agree = np.isclose(out.double().numpy(), reference, atol=0.01)
    assert agree.mean() > 0.99
    if order == 0:
        # Nearest resampling only copies input values; bilinear makes new ones.
        assert set(np.unique(out.numpy())) <= set(np.unique(images.numpy()))
    else:
        assert not set(np.unique(out.numpy())) <= set(np.unique(images.numpy()))


@pytest.mark.parametrize("kind", ["shift", "rotation"])
def test_single_transform_kinds_agree_with_scipy(kind: str) -> None:
    spec = {
        "shift": AugmentationSpec(width_shift_range=0.3, height_shift_range=0.3),
        "rotation": AugmentationSpec(rotation_range=180),
    }[kind]
    images = _pattern(8, 16, 20, seed=1)
    out = augment_batch(images, spec, _generator(11))
    matrices = transform_matrices(sample_transforms(8, spec, 16, 20, _generator(11)), 16, 20)
    reference = _scipy_reference(images, matrices, order=0, mode="nearest")
    assert np.isclose(out.numpy(), reference).mean() > 0.99


def test_shear_units_differ_between_semantics() -> None:
    old = sample_transforms(N_DRAWS, AugmentationSpec(shear_range=0.2, semantics="2.0.8"), 8, 8, _generator())
    new = sample_transforms(N_DRAWS, AugmentationSpec(shear_range=0.2, semantics="2.1.3"), 8, 8, _generator())
    assert old["shear"].abs().max() > 11.0  # 0.2 rad = 11.46 degrees
    assert new["shear"].abs().max() <= 0.2  # 0.2 degrees
    images = _pattern(32, 30, 30)
    moved_old = (augment_batch(images, AugmentationSpec(shear_range=0.2), _generator()) - images).abs().mean()
    spec_new = AugmentationSpec(shear_range=0.2, semantics="2.1.3")
    moved_new = (augment_batch(images, spec_new, _generator()) - images).abs().mean()
    assert moved_old > 5 * moved_new


def test_fill_modes_at_the_border() -> None:
    image = _pattern(1, 10, 12, seed=2)
    shifted = _params(ty=4)  # output column c samples input column c + 4: the last 4 columns fall outside
    nearest = apply_transforms(image, shifted, AugmentationSpec(width_shift_range=0.5))
    assert torch.equal(nearest[..., :8], image[..., 4:])
    assert torch.equal(nearest[..., 8:], image[..., 11:].expand(-1, -1, -1, 4))  # the edge column repeated
    constant = apply_transforms(image, shifted, AugmentationSpec(width_shift_range=0.5, fill_mode="constant"))
    assert torch.all(constant[..., 8:] == 0)
    reflect = apply_transforms(image, shifted, AugmentationSpec(width_shift_range=0.5, fill_mode="reflect"))
    assert torch.equal(reflect[..., 8:], image[..., 8:].flip(-1))  # d c b a | a b c d
    wrap = apply_transforms(image, shifted, AugmentationSpec(width_shift_range=0.5, fill_mode="wrap"))
    assert torch.equal(wrap, image.roll(-4, dims=-1))


def test_flip_reverses_columns_after_the_affine() -> None:
    image = _pattern(1, 9, 11)
    spec = AugmentationSpec(horizontal_flip=True, height_shift_range=0.5)
    out = apply_transforms(image, _params(tx=2, flip=True), spec)
    unflipped = apply_transforms(image, _params(tx=2), spec)
    assert torch.equal(out, unflipped.flip(-1))
    flips = augment_batch(image.repeat(64, 1, 1, 1), AugmentationSpec(horizontal_flip=True), _generator(4))
    flipped = [torch.equal(o, image[0].flip(-1)) for o in flips]
    kept = [torch.equal(o, image[0]) for o in flips]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))  # each image either flipped or untouched
    assert 10 < sum(flipped) < 54


def test_dtypes_and_bad_input() -> None:
    images = _pattern(2, 12, 12)
    spec = book_augmentation("2.1.3")
    reference = augment_batch(images, spec, _generator(1))
    for dtype in (torch.bfloat16, torch.float16):
        out = augment_batch(images.to(dtype), spec, _generator(1))
        assert out.dtype == dtype and out.shape == images.shape
        assert torch.allclose(out.float(), reference, atol=2.0)
    as_bytes = augment_batch(images.to(torch.uint8), spec, _generator(1))
    assert as_bytes.dtype == torch.uint8 and (as_bytes.float() - reference).abs().max() <= 0.51
    with pytest.raises(CnnreproError, match=r"\(N, C, H, W\)"):
        augment_batch(images[0], spec, _generator())
    with pytest.raises(CnnreproError, match="semantics"):
        AugmentationSpec(semantics="2.2")
    with pytest.raises(CnnreproError, match="fill_mode"):
        AugmentationSpec(fill_mode="mirror")
    with pytest.raises(CnnreproError, match="zoom_range"):
        AugmentationSpec(zoom_range=(1.2, 0.8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    images = _pattern(8, 150, 150)
    spec = book_augmentation("2.0.8")
    cpu = augment_batch(images, spec, _generator(9))
    # CPU generator, CUDA images: the same draws, so the same images (nearest: exact up to rare ties).
    cuda = augment_batch(images.cuda(), spec, _generator(9))
    assert cuda.device.type == "cuda"
    assert (cuda.cpu() == cpu).float().mean() > 0.999
    # A CUDA generator draws on the GPU.
    gpu_generator = torch.Generator(device="cuda").manual_seed(9)
    out = augment_batch(images.cuda().to(torch.bfloat16), spec, gpu_generator)
    assert out.device.type == "cuda" and out.dtype == torch.bfloat16 and out.shape == images.shape
