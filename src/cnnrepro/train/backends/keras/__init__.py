"""The book's own framework: every variant in Keras 3, trained by `cnnrepro train --framework keras`.

TensorFlow/Keras is an optional extra (`pip install -e .[keras]`). Nothing here imports it at
package import time: `import_keras()` does, on first use, so `--framework torch` never pays for it
and a missing install fails with one line that says how to get it.
"""

from __future__ import annotations

import os
from typing import Any

from cnnrepro.errors import CnnreproError

BACKEND_ENV = "KERAS_BACKEND"
DEFAULT_BACKEND = "tensorflow"
INSTALL_HINT = "pip install -e .[keras]"


def import_keras() -> Any:
    """The keras module (3.x), its backend chosen by $KERAS_BACKEND (default tensorflow)."""
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
