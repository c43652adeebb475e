"""A trained cnnrepro run as an MLflow pyfunc model, in MLflow's "models from code" form.

MLflow copies this file into every logged model (cnnrepro.tracking.logged_model) and runs it when the
model is loaded: `mlflow.pyfunc.load_model(uri)` then rebuilds the network from the variant registry and
loads its trained weights (model.safetensors / model.keras) through `cnnrepro evaluate`'s own loader,
from the model's artifact "run" (the run's metrics.json, run_info.json and artifacts/<model file>).
Nothing is unpickled. Loading needs this project installed (`pip install -e .`, with the run's framework).

Input: uint8 images (N, height, width, channels) at the run's input size, the pixels as `cnnrepro
evaluate` loads them; the run's own input pipeline scales them, as it did in training. Output: one row
per image, `label` (the most probable class) and one probability column per class, as `cnnrepro predict`
prints them.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from cnnrepro.mappings import Params

# Images scored at once: `cnnrepro evaluate`'s default --batch-size, so memory stays as evaluate's.
BATCH_SIZE = 64


class CnnreproRunModel(PythonModel):
    """One completed run (either framework) behind the pyfunc interface."""

    def load_context(self, context: Any) -> None:
        from cnnrepro.inference.evaluate import load_trained

        self.trained, self.config = load_trained(context.artifacts["run"])

    # np.ndarray: a hint MLflow accepts without deriving a signature of its own (the logged one stands).
    def predict(self, context: Any, model_input: np.ndarray, params: Params | None = None) -> pd.DataFrame:
        images = np.asarray(model_input)
        classes = list(self.config.data.classes)
        parts = [
            self.trained.class_probabilities(images[start : start + BATCH_SIZE])
            for start in range(0, len(images), BATCH_SIZE)
        ]
        probabilities = np.concatenate(parts) if parts else np.zeros((0, len(classes)))
        frame = pd.DataFrame(probabilities, columns=classes)
        frame.insert(0, "label", [classes[i] for i in probabilities.argmax(axis=1)])
        return frame


mlflow.models.set_model(CnnreproRunModel())
