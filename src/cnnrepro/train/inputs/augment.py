"""Keras ImageDataGenerator augmentation, batched, one random draw per image, on any device.

What Keras 2.0.8 `ImageDataGenerator.random_transform` does to one image x (rows H, cols W), and so
what `augment_batch` does to every image of a batch independently:

    theta = U(-rotation_range, rotation_range)          degrees (radians for the matrix)
    tx    = U(-height_shift_range, height_shift_range) * H   continuous, pixels, along ROWS
    ty    = U(-width_shift_range,  width_shift_range)  * W   continuous, pixels, along COLUMNS
    shear = U(-shear_range, shear_range)                2.0.8: radians; 2.1.3 on: degrees
    zx, zy = two independent draws of U(zoom_lo, zoom_hi)   zoom_range z -> (1 - z, 1 + z)
                                                        zx scales ROWS, zy scales COLUMNS

All matrices act on (row, col) array coordinates, as scipy.ndimage does (Keras' names x/y follow the
array axes, not the picture: "tx" moves rows):

    R  = [[cos t, -sin t, 0], [sin t, cos t, 0], [0, 0, 1]]
    Tr = [[1, 0, tx], [0, 1, ty], [0, 0, 1]]
    Sh = [[1, -sin s, 0], [0, cos s, 0], [0, 0, 1]]      (also scales the column coordinate by cos s)
    Z  = [[zx, 0, 0], [0, zy, 0], [0, 0, 1]]
    M  = R @ Tr @ Sh @ Z
    centred (transform_matrix_offset_center), with Keras' centre o = (H/2 + 0.5, W/2 + 0.5):
    A  = [[1, 0, o_r], [0, 1, o_c], [0, 0, 1]] @ M @ [[1, 0, -o_r], [0, 1, -o_c], [0, 0, 1]]

A maps OUTPUT pixel (r, c) to the INPUT coordinate sampled there (so zoom z > 1 zooms out, and
a positive tx shows content from lower rows): x_out[r, c] = x_in(A[:2, :2] @ (r, c) + A[:2, 2]),
which is `scipy.ndimage.affine_transform(channel, A[:2, :2], A[:2, 2], order, mode=fill_mode, cval=0)`
per channel; order 0 (nearest) in 2.0.8, order 1 (bilinear) from 2.1.3. Pixel index i is the centre of
pixel i. Keras' centre is one pixel past the true centre ((H - 1) / 2, (W - 1) / 2); it is copied as is
(it shifts every rotated, sheared or zoomed image by up to about a pixel).
After the affine, horizontal_flip reverses the columns when U(0, 1) < 0.5.

Here the same A becomes a `grid_sample` grid (align_corners=False, where pixel c's centre sits at
x = (2c + 1) / W - 1). Fill modes, and the scipy mode each equals (checked pixel for pixel):
"nearest" -> padding "border", repeat the edge pixel (scipy "nearest");
"reflect" -> "reflection", half-sample symmetric (scipy "reflect");
"constant" -> "zeros", Keras' cval 0 (scipy "grid-constant": within half a pixel outside the edge the
edge pixel is still taken; scipy >= 1.6 "constant" gives cval already past the edge pixel's centre);
"wrap" -> periodic (scipy "grid-wrap"; scipy's "wrap" has a period of W - 1).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from cnnrepro.errors import CnnreproError
from cnnrepro.train.engine.augmentation_spec import AugmentationSpec

_PADDING = {"nearest": "border", "constant": "zeros", "reflect": "reflection", "wrap": "border"}
PARAM_KEYS = ("theta", "tx", "ty", "shear", "zx", "zy", "flip")


def _param_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


def sample_transforms(
    n: int, spec: AugmentationSpec, height: int, width: int, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Draw every image's random parameters, on the generator's device, in Keras' order.

    Returns n-vectors: theta (degrees), tx (pixels along rows = height_shift_range x height), ty (pixels
    along columns), shear (DEGREES here whatever the semantics: a 2.0.8 draw in radians is converted),
    zx (row zoom), zy (column zoom), flip (bool). All are drawn even when a range is 0 (then the value is
    exactly 0, or 1 for zoom), so one seed gives the same stream whatever the spec.
    """
    device = generator.device
    dtype = _param_dtype(device)

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator, device=device, dtype=dtype)

    theta = uniform(-spec.rotation_range, spec.rotation_range)
    tx = uniform(-spec.height_shift_range, spec.height_shift_range) * height
    ty = uniform(-spec.width_shift_range, spec.width_shift_range) * width
    shear = uniform(-spec.shear_range, spec.shear_range)
    if spec.semantics == "2.0.8":
        shear = torch.rad2deg(shear)
    zoom_low, zoom_high = spec.zoom_bounds
    zx = uniform(zoom_low, zoom_high)
    zy = uniform(zoom_low, zoom_high)
    flip_draw = torch.rand(n, generator=generator, device=device, dtype=dtype)
    flip = flip_draw < 0.5 if spec.horizontal_flip else torch.zeros(n, dtype=torch.bool, device=device)
    return {"theta": theta, "tx": tx, "ty": ty, "shear": shear, "zx": zx, "zy": zy, "flip": flip}


def _batched(rows: list[list[torch.Tensor | float]], like: torch.Tensor) -> torch.Tensor:
    """A (n, 3, 3) stack from 3x3 nested entries that are n-vectors or constants."""
    n = like.shape[0]
    entries = [
        entry
        if isinstance(entry, torch.Tensor)
        else torch.full((n,), float(entry), dtype=like.dtype, device=like.device)
        for row in rows
        for entry in row
    ]
    return torch.stack(entries, dim=-1).reshape(n, 3, 3)


def transform_matrices(params: dict[str, torch.Tensor], height: int, width: int) -> torch.Tensor:
    """(n, 3, 3) matrices A mapping output (row, col, 1) to input (row, col, 1) in pixel-index
    coordinates, centred as Keras does: A = C @ R @ Tr @ Sh @ Z @ C^-1 (see the module docstring).

    Directly comparable with scipy: `affine_transform(img, A[:2, :2], offset=A[:2, 2])`.
    """
    theta = torch.deg2rad(params["theta"])
    shear = torch.deg2rad(params["shear"])
    tx, ty, zx, zy = params["tx"], params["ty"], params["zx"], params["zy"]
    cos_t, sin_t = torch.cos(theta), torch.sin(theta)
    rotation = _batched([[cos_t, -sin_t, 0], [sin_t, cos_t, 0], [0, 0, 1]], theta)
    shift = _batched([[1, 0, tx], [0, 1, ty], [0, 0, 1]], theta)
    shearing = _batched([[1, -torch.sin(shear), 0], [0, torch.cos(shear), 0], [0, 0, 1]], theta)
    zoom = _batched([[zx, 0, 0], [0, zy, 0], [0, 0, 1]], theta)
    matrix = rotation @ shift @ shearing @ zoom
    fixed = _fixed_matrices(height, width, theta.dtype, theta.device)
    return fixed["to_centre"] @ matrix @ fixed["from_centre"]


@functools.lru_cache(maxsize=64)
def _fixed_matrices(height: int, width: int, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    """The per-size constant matrices, made once per size, dtype and device: built per batch on a GPU,
    each would be a host-to-GPU copy (and linalg.inv an error check) that waits for the GPU to drain.
    Callers only read them."""
    centre_r, centre_c = height / 2 + 0.5, width / 2 + 0.5
    to_pixels = torch.tensor(
        [[width / 2, 0, (width - 1) / 2], [0, height / 2, (height - 1) / 2], [0, 0, 1]], dtype=dtype, device=device
    )
    return {
        "to_centre": torch.tensor([[1, 0, centre_r], [0, 1, centre_c], [0, 0, 1]], dtype=dtype, device=device),
        "from_centre": torch.tensor([[1, 0, -centre_r], [0, 1, -centre_c], [0, 0, 1]], dtype=dtype, device=device),
        "to_pixels": to_pixels,
        "from_pixels": torch.linalg.inv(to_pixels),
        "swap": torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=dtype, device=device),
    }


def _normalized_theta(matrices: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The (n, 2, 3) `affine_grid` theta equal to pixel-space (row, col) matrices under align_corners=False.

    P maps normalized (x, y, 1) to pixel (col, row, 1): col = W/2 x + (W - 1)/2; S swaps (col, row) and
    (row, col). theta = P^-1 S A S P.
    """
    fixed = _fixed_matrices(height, width, matrices.dtype, matrices.device)
    swap = fixed["swap"]
    full = fixed["from_pixels"] @ swap @ matrices @ swap @ fixed["to_pixels"]
    return full[:, :2, :]


def _wrapped_grid(grid: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Grid coordinates taken modulo the size, addressed into the image circularly padded by one pixel,
    so bilinear sampling across the seam blends the opposite edges."""
    col = ((grid[..., 0] + 1) * width - 1) / 2
    row = ((grid[..., 1] + 1) * height - 1) / 2
    col = torch.remainder(col, width) + 1
    row = torch.remainder(row, height) + 1
    x = (2 * col + 1) / (width + 2) - 1
    y = (2 * row + 1) / (height + 2) - 1
    return torch.stack((x, y), dim=-1)


def _affine(images: torch.Tensor, matrices: torch.Tensor, spec: AugmentationSpec) -> torch.Tensor:
    n, channels, height, width = images.shape
    theta = _normalized_theta(matrices, height, width).to(device=images.device, dtype=torch.float32)
    # Under bf16 autocast affine_grid's internal bmm would run in bf16: sampling points off by up to
    # half a pixel at 150 wide. The warp is data preparation, not model arithmetic: always float32.
    with torch.autocast(images.device.type, enabled=False):
        grid = F.affine_grid(theta, [n, channels, height, width], align_corners=False)
        if spec.fill_mode == "wrap":
            grid = _wrapped_grid(grid, height, width)
            images = F.pad(images, (1, 1, 1, 1), mode="circular")
        return F.grid_sample(
            images, grid, mode=spec.interpolation, padding_mode=_PADDING[spec.fill_mode], align_corners=False
        )


def apply_transforms(images: torch.Tensor, params: dict[str, torch.Tensor], spec: AugmentationSpec) -> torch.Tensor:
    """Apply given per-image parameters (as `sample_transforms` returns them) to (N, C, H, W) images:
    the affine of `transform_matrices`, resampled as `spec` says (interpolation, fill), then the flip.

    Arithmetic runs in float32 whatever the input dtype (bf16/f16 are cast back at the end; integer
    images are rounded and clamped back).
    """
    if images.ndim != 4:
        raise CnnreproError(f"augmentation expects (N, C, H, W) images, got shape {tuple(images.shape)}")
    n, _, height, width = images.shape
    out = images.to(torch.float32)
    if spec.has_affine:
        out = _affine(out, transform_matrices(params, height, width), spec)
    flip = params["flip"].to(images.device).view(n, 1, 1, 1)
    out = torch.where(flip, out.flip(-1), out)
    if images.dtype.is_floating_point:
        return out.to(images.dtype)
    info = torch.iinfo(images.dtype)
    return out.round().clamp(info.min, info.max).to(images.dtype)


def augment_batch(images: torch.Tensor, spec: AugmentationSpec, generator: torch.Generator) -> torch.Tensor:
    """Augment (N, C, H, W) images (0-255, before the 1/255 rescale, as Keras did) with one random
    transform per image; same shape, dtype and device out.

    The draws are `sample_transforms(N, spec, H, W, generator)`, made on the generator's device (a CPU
    generator draws on the CPU; the parameters are then moved). The identity spec returns an exact copy.
    """
    if images.ndim != 4:
        raise CnnreproError(f"augment_batch expects (N, C, H, W) images, got shape {tuple(images.shape)}")
    if spec.is_identity or images.shape[0] == 0:
        return images.clone()
    n, _, height, width = images.shape
    if spec.draws == "per_batch":
        params = {k: v.expand(n) for k, v in sample_transforms(1, spec, height, width, generator).items()}
        return apply_transforms(images, params, spec)
    return apply_transforms(images, sample_transforms(n, spec, height, width, generator), spec)
