"""Every input and argument of a training run checked before its MLflow run is opened.

A run that cannot start (a seed out of range, no data where --data points, an output or checkpoint
folder that takes no files) fails here in one line naming the argument or path, and leaves no FAILED
MLflow run behind; only failures after training started are recorded in MLflow. What `prepare` decides
(VGG16 weights, the run fine-tuning continues from) is checked there, also before the MLflow run.
"""

from __future__ import annotations

from pathlib import Path

from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import cannot_create_files, nearest_existing
from cnnrepro.train.engine.checkpoint import check_checkpoint, checkpoint_path
from cnnrepro.train.engine.run_config import RunConfig

# numpy's legacy seeding and Keras' both take 0 .. 2**32 - 1; torch takes more, but the run seeds all three.
SEED_MAX = 2**32 - 1
# The folders under --data each image dataset's loader reads (cnnrepro.train.engine.lifecycle.load_splits uses these).
IMAGE_SPLITS = {"dogs_vs_cats": ("train", "validation", "test"), "petimages_80_20": ("train", "validation")}


def required_data(config: RunConfig) -> list[Path]:
    """The files or folders under --data this run reads."""
    data = Path(config.data.data_dir)
    dataset = config.data.dataset
    if dataset in IMAGE_SPLITS:
        return [data / name for name in IMAGE_SPLITS[dataset]]
    return [data / f"{dataset}.npz"]


def check_run_inputs(config: RunConfig, checkpoint_root: str | Path) -> None:
    """Raise CnnreproError (one line) unless the run's arguments and inputs let it start."""
    seed = config.seed
    if not 0 <= seed <= SEED_MAX:
        raise CnnreproError(f"--seed {seed}: out of range (0 to {SEED_MAX})")
    data = Path(config.data.data_dir)
    if not data.is_dir():
        raise CnnreproError(f"--data {data}: no such folder")
    for path in required_data(config):
        if not path.exists():
            kind = "folder" if path.suffix == "" else "file"
            raise CnnreproError(f"--data {data}: {path} missing (no {kind} {path.name} for {config.data.dataset})")
    for flag, target in (("--out", config.out_dir), ("--checkpoints", checkpoint_root)):
        start = nearest_existing(target)
        if not start.is_dir():
            raise CnnreproError(f"{flag} {target}: {start} is not a folder")
        reason = cannot_create_files(start)
        if reason:
            raise CnnreproError(f"{flag} {target}: cannot create files in {start} ({reason})")
    # A checkpoint that would be refused fails the run now, before its MLflow run opens.
    check_checkpoint(checkpoint_path(checkpoint_root, config.framework, config.variant, seed), config.framework)
