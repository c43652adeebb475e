"""The PyTorch networks of every variant, built as their sources build them (Keras layer names, the sources'
initialization), under the registry's names: `BUILDERS` covers cnnrepro.variants.registry exactly
(tests/test_registry.py), and `create_model(name)` is how the backend, the bench and the plan build one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from cnnrepro.errors import CnnreproError
from cnnrepro.train.backends.torch.models import cam, dogs_cats, mnist, vgg16
from cnnrepro.variants.registry import get_variant

BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "baseline": dogs_cats.baseline,
    "augmentation": dogs_cats.augmentation,
    "feature_extraction": vgg16.feature_extraction,
    "feature_extraction_augmented": vgg16.feature_extraction_augmented,
    "fine_tuning": vgg16.fine_tuning,
    "mnist_convnet": mnist.mnist_convnet,
    "mnist_dense": mnist.mnist_dense,
    "lenet": mnist.lenet,
    "cam_convnet": cam.cam_convnet,
}


def create_model(name: str, **overrides: Any) -> nn.Module:
    """The variant's architecture, initialized as its source does; overrides go to the builder."""
    get_variant(name)  # an unknown name fails with the registry's message, listing the known ones
    if name not in BUILDERS:
        raise CnnreproError(f"variant {name!r} has no PyTorch network (cnnrepro.train.backends.torch.models.BUILDERS)")
    return BUILDERS[name](**overrides)
