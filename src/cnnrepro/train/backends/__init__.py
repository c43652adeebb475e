"""The two implementations of cnnrepro.train.engine.backend.Backend: `torch` (PyTorch) and `keras` (Keras 3).

`load_backend(name)` imports only the backend asked for (the Keras one imports TensorFlow), so a PyTorch
run never pays for the other framework and a missing optional extra fails with one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnrepro.errors import CnnreproError

if TYPE_CHECKING:
    from cnnrepro.train.engine.backend import Backend

FRAMEWORKS = ("torch", "keras")


def load_backend(framework: str, device: str = "auto", keras_backend: str | None = None) -> Backend:
    """The backend of this framework (train.frameworks, run_info.json's framework). `device` (params
    train.device or a command's --device) chooses Keras' own backend before Keras is imported (torch on
    CUDA, else TensorFlow; `keras_backend`, what a finished run trained on, is preferred where given)."""
    if framework == "keras":
        from cnnrepro.train.backends.keras import choose_backend

        choose_backend(device, keras_backend)
        from cnnrepro.train.backends.keras.trainer import BACKEND
    elif framework == "torch":
        from cnnrepro.train.backends.torch.trainer import BACKEND
    else:
        raise CnnreproError(f"unknown framework {framework!r} (known: {', '.join(FRAMEWORKS)})")
    return BACKEND
