"""The book's own framework: every variant in Keras 3, trained by `cnnrepro train --framework keras`.

TensorFlow/Keras is an optional extra (`pip install -e .[keras]`). Nothing here imports it at
package import time: `import_keras()` does, on first use, so `--framework torch` never pays for it
and a missing install fails with one line that says how to get it.

Keras 3 fixes its backend when it is imported, so `choose_backend` picks it first, from the device the
run asks for (cnnrepro.train.backends.load_backend calls it): TensorFlow on a CPU (the locks install
TensorFlow's CPU build, which trains these models faster on a CPU than torch does), and Keras 3's torch
backend where the run will be on CUDA, on the CUDA torch the project already installs (no CUDA
TensorFlow in any lock). $KERAS_BACKEND (and $KERAS_TORCH_DEVICE), when set, win. The backend a run
trained on is in run_info.json `prepared.keras_backend` and in its ledger (keras_torch_backend).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from cnnrepro.errors import CnnreproError

BACKEND_ENV = "KERAS_BACKEND"
TORCH_DEVICE_ENV = "KERAS_TORCH_DEVICE"  # Keras' own: where its torch backend puts every tensor
DEFAULT_BACKEND = "tensorflow"
INSTALL_HINT = "pip install -e .[keras]"


def choose_backend(requested_device: str = "auto", preferred: str | None = None) -> str:
    """The Keras backend for a run on params train.device `requested_device` (auto, cpu, cuda[:N]), set in
    $KERAS_BACKEND before keras is imported: $KERAS_BACKEND if set, else `preferred` (the backend a
    finished run trained on, for evaluate/predict), else torch when the run will be on CUDA, else
    tensorflow. Once keras is imported its backend is fixed, and that is the answer."""
    if (imported := sys.modules.get("keras")) is not None:
        return str(imported.backend.backend())
    if not os.environ.get(BACKEND_ENV):
        cuda = requested_device.startswith("cuda") or (requested_device == "auto" and _cuda_available())
        os.environ[BACKEND_ENV] = preferred or ("torch" if cuda else DEFAULT_BACKEND)
    if os.environ[BACKEND_ENV] == "torch" and not os.environ.get(TORCH_DEVICE_ENV):
        auto = "cuda" if _cuda_available() else "cpu"
        os.environ[TORCH_DEVICE_ENV] = auto if requested_device == "auto" else requested_device
    return os.environ[BACKEND_ENV]


def _cuda_available() -> bool:
    import torch  # the project's torch (every Keras run feeds its inputs through it too)

    return torch.cuda.is_available()


def import_keras() -> Any:
    """The keras module (3.x), its backend chosen by choose_backend (or $KERAS_BACKEND; default tensorflow)."""
    os.environ.setdefault(BACKEND_ENV, DEFAULT_BACKEND)
    # TensorFlow's C++ INFO lines (CPU feature notes, oneDNN banners) would fill every training log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    backend = os.environ[BACKEND_ENV]
    try:
        import keras
    except ImportError as exc:
        raise CnnreproError(
            f"--framework keras needs Keras 3 with the {backend} backend ({BACKEND_ENV}), which is not importable "
            f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); install the extra: {INSTALL_HINT}"
        ) from None
    major = int(str(keras.__version__).split(".")[0])
    if major < 3:
        raise CnnreproError(f"--framework keras needs Keras >= 3, found keras {keras.__version__}; {INSTALL_HINT}")
    return keras
