"""A finished Keras run's model for `cnnrepro evaluate` and `cnnrepro predict`.

The saved model.keras is the whole network (for feature extraction too: the frozen base and the head
trained on its cached features), so inference is the run's own input pipeline and one forward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cnnrepro.errors import CnnreproError
from cnnrepro.train.backends.keras import import_keras
from cnnrepro.train.engine.images import Split
from cnnrepro.train.engine.run_config import RunConfig

keras = import_keras()

# The trained model as the run saves it (Keras' own format) and inference loads it.
MODEL_FILE = "model.keras"


def load_model(run: str | Path, config: RunConfig, device: str = "auto") -> Any:
    """The run's network with its trained weights, compiled with its loss (Keras' evaluate needs one)."""
    from cnnrepro.train.backends.keras import models, optimizers
    from cnnrepro.train.backends.keras.devices import resolve_device

    resolve_device(device, source="--device")
    path = Path(run) / "artifacts" / MODEL_FILE
    if not path.is_file():
        raise CnnreproError(f"{path}: missing")
    model = models.create_model(config.variant)
    try:
        model.load_weights(path)
    except Exception as exc:  # corrupt file or another variant's weights: name the file
        raise CnnreproError(f"{path}: cannot load ({str(exc).splitlines()[0][:200]})") from None
    model.compile(loss=optimizers.make_loss(config.training.loss, config.variant), metrics=["accuracy"])
    return model


def evaluate(model: Any, split: Split, config: RunConfig, batch_size: int) -> dict[str, float | int]:
    """Loss and accuracy over every image once, computed as the run scored its own test split."""
    from cnnrepro.train.backends.keras import streams

    scored = streams.score(model, split, streams.image_inputs(config), config, batch_size)
    return {"accuracy": scored["accuracy"], "loss": scored["loss"], "n": len(split)}


def class_probabilities(model: Any, config: RunConfig) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 (N, H, W, C) images -> (N, classes) probabilities; a sigmoid output p becomes [1 - p, p]."""
    from cnnrepro.train.backends.keras import models, streams

    inputs = streams.image_inputs(config)

    def probabilities(images: np.ndarray) -> np.ndarray:
        outputs = np.asarray(model.predict_on_batch(streams.keras_input(inputs, images, train=False)), np.float64)
        if config.variant in models.LOGIT_OUTPUTS:
            shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
            return shifted / shifted.sum(axis=1, keepdims=True)
        if outputs.shape[1] == 1:
            return np.concatenate([1 - outputs, outputs], axis=1)
        return outputs

    return probabilities


class KerasTrainedModel:
    """A trained Keras run behind the engine's TrainedModel protocol."""

    def __init__(self, model: Any, config: RunConfig) -> None:
        self.model = model
        self.config = config
        self._probabilities = class_probabilities(model, config)

    def evaluate(self, split: Split, batch_size: int) -> dict[str, float | int]:
        return evaluate(self.model, split, self.config, batch_size)

    def class_probabilities(self, images: np.ndarray) -> np.ndarray:
        return self._probabilities(images)


def load_trained(run: str | Path, config: RunConfig, device: str = "auto") -> KerasTrainedModel:
    return KerasTrainedModel(load_model(run, config, device), config)
