"""What a training run shows in MLflow beyond params and metrics: its data as dataset inputs, its learning
curves and confusion matrix as images. Framework-neutral: plain arrays, history rows and confusion.json.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnrepro.tracking.tracked_run import RunLogger

# MLflow's dataset contexts for the three splits (mlflow.data.context, shown in the runs table).
CONTEXTS = {"train": "training", "validation": "validation", "test": "test"}
# MLflow keeps at most 36 characters of a digest (MAX_DATASET_DIGEST_SIZE); the full sha256 is the run's
# data_hash tag.
DIGEST_CHARS = 32
CURVES_FILE = "plots/learning_curves.png"
CONFUSION_FILE = "plots/confusion_matrix.png"


@dataclass(frozen=True)
class SplitRecord:
    """One split a run used: its name (train/validation/test), where it was read, its arrays' shapes."""

    split: str
    source: str
    images_shape: tuple[int, ...]
    images_dtype: str
    labels_dtype: str


def source_tags(git_commit: str | None) -> dict[str, str]:
    """MLflow's own source tags (the UI's Source and "Logged from" columns): the command and its commit
    (the project's `git_commit` tag keeps the "-dirty" mark; MLflow's takes the hash alone)."""
    tags = {"mlflow.source.name": "cnnrepro train", "mlflow.source.type": "LOCAL"}
    if git_commit:
        tags["mlflow.source.git.commit"] = git_commit.removesuffix("-dirty")
    return tags


def dataset_inputs(dataset: str, data_hash: str, splits: Sequence[SplitRecord]) -> list[Any]:
    """MLflow DatasetInputs named `<dataset>-<split>`, digest = the project's data hash (the manifest
    sha256 of the data directory, cut to MLflow's limit), source = the path read, context per split."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.types import Schema, TensorSpec
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    inputs = []
    for record in splits:
        features = Schema([TensorSpec(np.dtype(record.images_dtype), (-1, *record.images_shape[1:]), "images")])
        targets = Schema([TensorSpec(np.dtype(record.labels_dtype), (-1,), "labels")])
        schema = {"mlflow_tensorspec": {"features": features.to_json(), "targets": targets.to_json()}}
        entity = Dataset(
            name=f"{dataset}-{record.split}",
            digest=data_hash[:DIGEST_CHARS],
            source_type="local",
            source=json.dumps({"uri": record.source}),
            schema=json.dumps(schema),
            profile=json.dumps({"num_rows": record.images_shape[0]}),
        )
        tag = InputTag(MLFLOW_DATASET_CONTEXT, CONTEXTS.get(record.split, record.split))
        inputs.append(DatasetInput(entity, tags=[tag]))
    return inputs


def curves_figure(title: str, history: Sequence[Mapping[str, float]]) -> Any:
    """Loss and accuracy per epoch, training against validation (history.csv's columns)."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state

    epochs = [int(row["epoch"]) for row in history]
    # Fixed margins, not layout="constrained": that costs a second drawing pass, a third of the time.
    fig = Figure(figsize=(9, 3.6))
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.14, top=0.86, wspace=0.25)
    for ax, metric in zip(fig.subplots(1, 2), ("loss", "accuracy"), strict=True):
        ax.plot(epochs, [row[metric] for row in history], "o-", label="training")
        ax.plot(epochs, [row[f"val_{metric}"] for row in history], "s--", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return fig


def confusion_figure(title: str, confusion: Mapping[str, Any]) -> Any:
    """confusion.json's counts (rows: true class, columns: predicted), coloured by share of the row."""
    from matplotlib.figure import Figure

    labels = list(confusion["labels"])
    matrix = np.asarray(confusion["matrix"], dtype=np.int64)
    k = len(labels)
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    side = max(3.6, 2.6 + 0.42 * k)
    fig = Figure(figsize=(side + 0.6, side))
    fig.subplots_adjust(left=0.16, right=0.96, bottom=0.14, top=0.9)
    ax = fig.subplots()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            colour = "white" if share[i, j] > 0.6 else "black"
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=9 if k <= 4 else 7, color=colour)
    ax.set_xticks(range(k), labels, fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}: {confusion.get('split', 'test')} split", fontsize=10)
    return fig


def log_run_figures(
    logger: RunLogger, title: str, history: Sequence[Mapping[str, float]], confusion: Mapping[str, Any] | None
) -> None:
    """The learning curves and the confusion matrix as images of the run (plots/*.png)."""
    if history:
        logger.log_figure(curves_figure(title, history), CURVES_FILE)
    if confusion:
        logger.log_figure(confusion_figure(title, confusion), CONFUSION_FILE)
