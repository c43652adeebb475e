"""The one interface a framework implements, to train a run and to use a trained one: `cnnrepro train`,
`evaluate` and `predict` see nothing else of it.

Backends: cnnrepro.train.backends.torch (PyTorch) and cnnrepro.train.backends.keras (Keras 3), each
`trainer.BACKEND`; neither imports the other, and `cnnrepro.train.backends.load_backend(name)` imports
only the one asked for. The engine's lifecycle (cnnrepro.train.engine.lifecycle) does everything before
and after training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cnnrepro.mappings import JsonObject
from cnnrepro.train.engine.run_config import Prepared, RunConfig

if TYPE_CHECKING:
    import numpy as np

    from cnnrepro.train.engine.images import Split

EpochHook = Callable[[dict[str, float]], None]
ResumeHook = Callable[[JsonObject, int], None]


@dataclass
class RunResult:
    """A trained run: its history, final figures, confusion matrix and model (the backend's own type)."""

    history: list[dict[str, float]]
    metrics: JsonObject
    confusion: JsonObject
    model: Any
    train_duration_s: float
    # What the backend decided while training (run_info.json `decisions`, MLflow tags cnnrepro.<name>):
    # e.g. "fast_step": {"state": "on" | "fell back" | "off", "reason": ...}.
    decisions: dict[str, dict[str, str]] = field(default_factory=dict)


class TrainedModel(Protocol):
    """A completed run's model, loaded for inference."""

    def evaluate(self, split: Split, batch_size: int) -> dict[str, float | int]:
        """accuracy, loss and n over every image of the split once, as the run scored its own test split."""

    def class_probabilities(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) images -> (N, classes) probabilities."""


class Backend(Protocol):
    framework: str  # "torch" | "keras": run_info.json's framework, the runs/<framework>/ folder
    model_file: str  # the trained model's file name under artifacts/

    def resolve_device(self, requested: str, *, runs_per_gpu: int, num_threads: int) -> str:
        """The device this framework runs `requested` (params train.device: auto, cpu, cuda[:N]) on, here."""

    def prepare(self, config: RunConfig, *, download_timeout_s: float) -> Prepared:
        """What the run needs beyond data and config; raise lifecycle.NotRunnable when it is not here."""

    def train_variant(
        self,
        config: RunConfig,
        prepared: Prepared,
        *,
        checkpoint_root: str | Path,
        hooks: Sequence[EpochHook],
        owner: JsonObject,
        on_resume: ResumeHook | None,
    ) -> RunResult:
        """Train one (variant, seed) to the end and score it; `prepared` is what prepare(config) found."""

    def save_model(self, model: Any, path: Path) -> None: ...

    def ledger_entries(self, config: RunConfig, prepared: Prepared) -> list[dict[str, str]]:
        """Where this run departs from its source (artifacts/fidelity.json)."""

    def package_versions(self) -> dict[str, str | None]: ...

    def load_trained(self, run: Path, config: RunConfig, device: str) -> TrainedModel:
        """The completed run's model (artifacts/<model_file>) on `device`, for evaluate and predict."""
