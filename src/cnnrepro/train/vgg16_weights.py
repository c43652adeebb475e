"""The VGG16 conv base as the book used it, for every framework: its layer names (what each backend
builds and converts), the layers fine-tuning trains, and the Keras ImageNet weights file
vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5, found in order: train.vgg16.path, the Keras cache
(~/.keras/models, or $KERAS_HOME/models), this project's cache (.cnnrepro/weights), then a download from
train.vgg16.url into that cache. A run that cannot have it is not_run (WeightsUnavailable), never trained
on random weights.
"""

from __future__ import annotations

import os
import re
import shutil
import urllib.parse
from pathlib import Path

from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import atomic_path, sha256_file
from cnnrepro.train.engine.run_config import VGG16Settings

KERAS_WEIGHTS_NAME = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


PROJECT_CACHE = Path(".cnnrepro") / "weights"


# (convs, channels) per block; every conv is 3x3 'same' + ReLU, every block ends in a 2x2 max pool.
BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))


CONV_NAMES = tuple(f"block{b}_conv{i}" for b, (n, _) in enumerate(BLOCKS, start=1) for i in range(1, n + 1))


FINE_TUNED_LAYERS = ("block5_conv1", "block5_conv2", "block5_conv3")


class WeightsUnavailable(CnnreproError):
    """The ImageNet weights cannot be had here; the run is written as not_run with this reason."""


def keras_cache_path() -> Path:
    home = Path(os.environ["KERAS_HOME"]) if os.environ.get("KERAS_HOME") else Path.home() / ".keras"
    return home / "models" / KERAS_WEIGHTS_NAME


def _check_sha256(path: Path, sha256: str | None, where: str) -> None:
    if sha256 and (actual := sha256_file(path)) != sha256:
        raise CnnreproError(f"{where} {path}: sha256 {actual} does not match train.vgg16.sha256 {sha256}")


def _download(url: str, target: Path, timeout_s: float) -> None:
    """Fetch url to target atomically (a half download never lands at target)."""
    parsed = urllib.parse.urlparse(url)
    with atomic_path(target) as tmp:
        if parsed.scheme == "file":
            shutil.copyfile(urllib.parse.unquote(parsed.path), tmp)
        else:
            import requests

            with requests.get(url, stream=True, timeout=timeout_s) as response:
                response.raise_for_status()
                with tmp.open("wb") as f:
                    for chunk in response.iter_content(1 << 20):
                        f.write(chunk)


def _short_error(exc: BaseException) -> str:
    """The innermost useful line of a download error (requests wraps urllib3's reason twice)."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    inner = reason if isinstance(reason, BaseException) else exc
    text = str(inner).splitlines()[0] if str(inner) else ""
    text = re.sub(r"^<[^>]*>: ", "", text)  # urllib3 starts with the connection object's repr
    return f"{type(inner).__name__}: {text[:160]}" if text else type(inner).__name__


def resolve_keras_weights(settings: VGG16Settings, *, timeout_s: float = 20.0) -> Path:
    """The Keras h5, from the first place that has it; WeightsUnavailable lists everything tried."""
    tried: list[str] = []
    sha256 = settings.sha256
    candidates: list[tuple[str, Path]] = []
    if settings.path:
        candidates.append(("train.vgg16.path", Path(settings.path)))
    else:
        tried.append("train.vgg16.path (unset)")
    candidates += [("Keras cache", keras_cache_path()), ("project cache", PROJECT_CACHE / KERAS_WEIGHTS_NAME)]
    for where, path in candidates:
        if path.is_file():
            _check_sha256(path, sha256, where)
            return path
        tried.append(f"{where} {path} (missing)")
    target = PROJECT_CACHE / KERAS_WEIGHTS_NAME
    url = settings.url
    try:
        _download(url, target, timeout_s)
    except Exception as exc:  # no network, 404, refused: all mean "unavailable here"
        tried.append(f"{url} ({_short_error(exc)})")
        raise WeightsUnavailable("ImageNet weights unavailable: tried " + "; ".join(tried)) from None
    try:
        _check_sha256(target, sha256, "downloaded")
    except CnnreproError:
        target.unlink(missing_ok=True)
        raise
    return target
