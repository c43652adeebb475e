"""Decode one image file with Pillow within a pixel limit, and turn any decoded mode into 8-bit RGB.

The pixel count comes from the header (`Image.open` reads no pixel data), so an image over
`clean.max_pixels` is dropped before a single pixel is decoded or converted. Pillow's own bomb check is
switched off meanwhile: the limit here is the one that decides, and its warning would otherwise be taken
for a decode warning.

Conversions keep what the pixels mean: 8-bit modes (L, P, CMYK, RGBA, LA, 1, ...) through Pillow's
`convert("RGB")`; 16-bit grey (`I;16`, `I;16B`, ...), which `convert` would clip to white above 255, is
scaled from 0..65535 to 0..255 with rounding (v / 257, 65535 = 255 x 257), so a full-range image stays
full range; modes with no defined 8-bit meaning (32-bit `I`, float `F`, signed `I;16S`, and any
conversion Pillow refuses) are dropped with the reason `unsupported_mode_<mode>`.

`model_image` is the same limit and the same conversions for one image a model reads (training splits,
`cnnrepro evaluate` and `cnnrepro predict`), refused in one line instead of quarantined.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cnnrepro.errors import CnnreproError

UNSIGNED_16_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
NO_8_BIT_MEANING = frozenset({"I", "F", "I;16S", "I;16BS", "I;16LS", "I;32", "I;32S"})


@dataclass
class Decoded:
    """What Pillow made of one member's bytes."""

    image: Image.Image | None = None
    detected_format: str = ""
    mode: str = ""
    size: tuple[int, int] | None = None
    failure: str = ""  # empty when it decoded in full
    warnings: list[str] = field(default_factory=list)


# Pillow's own bomb limit when this module was imported: the limit of readers that are given none.
PILLOW_MAX_PIXELS: int = Image.MAX_IMAGE_PIXELS or 89_478_485
_limit_lock = threading.Lock()
_limit_users = 0
_saved_limit: int | None = None


@contextlib.contextmanager
def _own_pixel_limit() -> Iterator[None]:
    """Pillow's limit off while any thread decodes here (training splits decode in threads): the first in
    saves it, the last out puts it back, so no interleaving can leave it off."""
    global _limit_users, _saved_limit
    with _limit_lock:
        if _limit_users == 0:
            _saved_limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
        _limit_users += 1
    try:
        yield
    finally:
        with _limit_lock:
            _limit_users -= 1
            if _limit_users == 0:
                Image.MAX_IMAGE_PIXELS = _saved_limit


def decode(path: Path, size: int, max_pixels: int) -> Decoded:
    """Open and fully decode the file at `path` (`size` bytes); any exception while decoding means undecodable."""
    result = Decoded()
    if size == 0:
        result.failure = "zero_bytes"
        return result
    with warnings.catch_warnings(record=True) as caught, _own_pixel_limit():
        warnings.simplefilter("always")
        try:
            image = Image.open(path)
        except UnidentifiedImageError:
            result.failure = "not_an_image"
        except Exception:  # Pillow raises many types on malformed headers (SyntaxError, struct.error, ...)
            result.failure = "decode_error"
        else:
            result.detected_format, result.mode, result.size = image.format or "", image.mode, image.size
            if image.size[0] * image.size[1] > max_pixels:
                result.failure = "over_pixel_limit"
            else:
                try:
                    image.load()
                    result.image = image
                except Exception as exc:
                    text = str(exc)
                    truncated = "truncated" in text or "broken data stream" in text or isinstance(exc, EOFError)
                    result.failure = "truncated" if truncated else "decode_error"
            if result.image is None:
                image.close()
    result.warnings = [str(w.message).strip() for w in caught]
    return result


def scale_16_to_8(values: np.ndarray) -> np.ndarray:
    """round(v * 255 / 65535) for uint16 `v`, in 16-bit arithmetic (no wider temporary)."""
    values = values.astype(np.uint16, copy=False)
    quotient, remainder = np.divmod(values, np.uint16(257))
    # v / 257 = q + r / 257; round half up: r / 257 >= 0.5 <=> r >= 129 (r is an integer, 257 odd).
    return (quotient + (remainder >= 129)).astype(np.uint8)


def to_rgb(image: Image.Image) -> tuple[Image.Image | None, str]:
    """(8-bit RGB image, "") or (None, the reason it cannot be converted faithfully)."""
    mode = image.mode
    if mode in UNSIGNED_16_BIT:
        grey = scale_16_to_8(np.asarray(image))
        return Image.fromarray(grey, "L").convert("RGB"), ""
    if mode in NO_8_BIT_MEANING:
        return None, f"unsupported_mode_{mode.lower().replace(';', '_')}"
    with warnings.catch_warnings():
        # e.g. "Palette images with Transparency ...": the conversion is the point here.
        warnings.simplefilter("ignore")
        try:
            return image.convert("RGB"), ""
        except (ValueError, OSError):
            return None, f"unsupported_mode_{mode.lower().replace(';', '_')}"


def model_image(path: str | Path, max_pixels: int, channels: int = 3) -> Image.Image:
    """One image as a model reads it: 8-bit RGB (or L when `channels` is 1) by `to_rgb`'s conversions,
    refused before a pixel is decoded when its header's width x height is over `max_pixels`. Every failure
    is one CnnreproError naming the file."""
    try:
        with _own_pixel_limit(), Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise CnnreproError(
                    f"{path}: {width}x{height} = {width * height} pixels, over the limit of {max_pixels} "
                    "(params clean.max_pixels); not decoded"
                )
            image.load()
            rgb, unsupported = to_rgb(image)
    except FileNotFoundError:
        raise CnnreproError(f"{path}: image missing") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CnnreproError(f"{path}: cannot decode image ({str(exc).splitlines()[0][:200]})") from None
    if rgb is None:
        raise CnnreproError(f"{path}: {image.mode} pixels have no 8-bit meaning ({unsupported})")
    return rgb if channels == 3 else rgb.convert("L")
