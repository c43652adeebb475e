"""A finished PyTorch run's model for `cnnrepro evaluate`, `cnnrepro predict` and the figures: the network
rebuilt under the registry's name, its trained weights (model.safetensors) loaded, scored through the run's
own input pipeline exactly as the run scored its test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnrepro.errors import CnnreproError
from cnnrepro.train.backends.torch.devices import resolve_device
from cnnrepro.train.backends.torch.models import create_model
from cnnrepro.train.backends.torch.steps import DeviceSplit, evaluate
from cnnrepro.train.engine.epochs import sequential_batches
from cnnrepro.train.engine.images import Split
from cnnrepro.train.engine.run_config import RunConfig
from cnnrepro.train.inputs.pipeline import InputPipeline

# The trained weights as the run saves them (safetensors: tensors only, nothing executable).
MODEL_FILE = "model.safetensors"


def load_model(run: str | Path, config: RunConfig, device: str = "auto") -> nn.Module:
    """The run's network with its trained weights, in eval mode on `device`; one-line errors naming the file."""
    from safetensors.torch import load_file

    model_path = Path(run) / "artifacts" / MODEL_FILE
    if not model_path.is_file():
        raise CnnreproError(f"{model_path}: missing")
    model = create_model(config.variant)
    try:
        model.load_state_dict(load_file(str(model_path)))
    except Exception as exc:  # corrupt file or wrong tensors: name the file
        raise CnnreproError(f"{model_path}: cannot load ({str(exc).splitlines()[0][:200]})") from None
    return model.to(resolve_device(device, source="--device")).eval()


class TorchTrainedModel:
    """A trained PyTorch run behind the engine's TrainedModel protocol."""

    def __init__(self, model: nn.Module, config: RunConfig) -> None:
        self.model = model
        self.config = config
        self.inputs = InputPipeline("images", config.inputs.preprocessing, config.inputs.input_scale)
        self.device = next(model.parameters()).device

    def evaluate(self, split: Split, batch_size: int) -> dict[str, float | int]:
        """Loss and accuracy over every image once, weighted by batch size (the run's own final scoring)."""
        data = DeviceSplit(
            torch.from_numpy(split.images).to(self.device), torch.from_numpy(split.labels).to(self.device)
        )
        batches = sequential_batches(len(data), batch_size)
        result = evaluate(self.model, data, batches, self.inputs, self.config.training.loss)
        return {"accuracy": result["accuracy"], "loss": result["loss"], "n": result["n"]}

    def class_probabilities(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) images -> (N, classes) probabilities; a single logit p becomes [1 - p, p]."""
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
            logits = self.model(self.inputs(x, train=False)).float()
        if self.config.training.loss == "binary_crossentropy":
            p = torch.sigmoid(logits[:, :1])
            return torch.cat([1 - p, p], dim=1).double().cpu().numpy()
        return torch.softmax(logits, 1).double().cpu().numpy()


def load_trained(run: str | Path, config: RunConfig, device: str = "auto") -> TorchTrainedModel:
    return TorchTrainedModel(load_model(run, config, device), config)
