"""How many images a variant's reported accuracy was measured on, read from its runs (never a constant).

- test accuracy: the images in the run's test confusion matrix (artifacts/confusion.json);
- validation accuracy: the run's resolved config. A variant that validates on the test set (MNIST,
  d2l) uses the test matrix; the Keras example's matrix is its validation split; the book's
  `validation_steps` x `batch_size` draws cycle through the validation split (`split.book.validation`
  images per class), and draws beyond one pass repeat images, so the count is the effective number
  of independent images, (sum of weights)^2 / sum of squared weights.

Seeds that disagree (an override on one of them) count with the smallest size: the widest binomial error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cnnrepro.report.collect import RunSlot


@dataclass(frozen=True)
class EvaluationSize:
    images: int | None  # effective number of independent images; None when no run says
    source: str  # where the number came from, in words


UNKNOWN = EvaluationSize(None, "unknown: no completed run has a confusion matrix or a config")


def effective_images(draws: int, distinct: int) -> int:
    """Effective sample size of `draws` images taken in passes over `distinct` ones (each pass a permutation)."""
    if draws <= distinct:
        return draws
    passes, extra = divmod(draws, distinct)
    squares = extra * (passes + 1) ** 2 + (distinct - extra) * passes**2
    return round(draws**2 / squares)


def _matrix_images(record: Any, split: str) -> int | None:
    confusion = record.confusion
    if not isinstance(confusion, dict) or confusion.get("split") != split:
        return None
    return int(sum(sum(row) for row in confusion.get("matrix", [])))


def _one_run(slot: RunSlot, metric: str, validation_per_class: int | None) -> EvaluationSize | None:
    record = slot.record
    assert record is not None
    config = (record.info or {}).get("config") or {}
    if metric == "test_accuracy" or config.get("validation_split") == "test":
        images = _matrix_images(record, "test")
        return EvaluationSize(images, f"{images:,} test images (confusion.json)") if images else None
    if (images := _matrix_images(record, "validation")) is not None:
        return EvaluationSize(images, f"{images:,} validation images (confusion.json)")
    classes = len(config.get("classes") or ())
    book = config.get("dataset") == "dogs_vs_cats"  # the dataset split.book cuts
    distinct = validation_per_class * classes if book and validation_per_class and classes else None
    steps, batch = config.get("validation_steps"), config.get("batch_size")
    if steps and batch:
        draws = int(steps) * int(batch)
        if distinct is None:
            return EvaluationSize(draws, f"{draws:,} validation draws ({steps} x {batch}, config)")
        images = effective_images(draws, distinct)
        note = "" if images == draws else f" ({draws:,} draws of {distinct:,}: repeats count less)"
        return EvaluationSize(images, f"{images:,} validation images{note}")
    if distinct is not None:
        return EvaluationSize(distinct, f"{distinct:,} validation images (split.book.validation x {classes})")
    return None


def evaluation_size(slots: Sequence[RunSlot], metric: str, validation_per_class: int | None) -> EvaluationSize:
    """The evaluation-set size behind `metric` for one (variant, framework), from its completed runs."""
    sizes = [
        size
        for slot in slots
        if slot.status == "completed" and (size := _one_run(slot, metric, validation_per_class)) is not None
    ]
    if not sizes:
        return UNKNOWN
    smallest = min(sizes, key=lambda s: s.images or 0)
    if len({s.images for s in sizes}) > 1:
        return EvaluationSize(smallest.images, f"{smallest.source}; seeds differ, the smallest counts")
    return smallest
