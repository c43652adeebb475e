"""The one interface a framework implements to train a run: `cnnrepro train` sees nothing else of it.

Backends: cnnrepro.train.backends.torch.trainer.BACKEND (PyTorch) and
cnnrepro.train.backends.keras.trainer.BACKEND (Keras 3).
Neither imports the other; the train command picks one by name (cnnrepro.train.cli.load_backend). The
engine's lifecycle (cnnrepro.train.engine.lifecycle) does everything before and after training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

EpochHook = Callable[[dict[str, float]], None]
ResumeHook = Callable[[dict[str, Any], int], None]


@dataclass
class RunResult:
    """A trained run: its history, final figures, confusion matrix and model (the backend's own type)."""

    history: list[dict[str, float]]
    metrics: dict[str, Any]
    confusion: dict[str, Any]
    model: Any
    train_duration_s: float


class Backend(Protocol):
    framework: str  # "torch" | "keras": run_info.json's framework, the runs/<framework>/ folder
    model_file: str  # the trained model's file name under artifacts/

    def prepare(self, config: dict[str, Any], *, download_timeout_s: float) -> None:
        """Record in config what the run needs beyond data; raise lifecycle.NotRunnable when it is not here."""

    def train_variant(
        self,
        config: dict[str, Any],
        *,
        checkpoint_root: str | Path,
        hooks: Sequence[EpochHook],
        owner: dict[str, Any],
        on_resume: ResumeHook | None,
    ) -> RunResult:
        """Train one (variant, seed) to the end and score it; prepare(config) has run."""

    def save_model(self, model: Any, path: Path) -> None: ...

    def ledger_entries(self, config: dict[str, Any]) -> list[dict[str, str]]:
        """Where this run departs from its source (artifacts/fidelity.json)."""

    def package_versions(self) -> dict[str, str | None]: ...
