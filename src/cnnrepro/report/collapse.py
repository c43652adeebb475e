"""The collapse rule: a completed seed that did not learn is named, and kept out of every mean and spread.

A seed is **collapsed** when either holds (params.yaml `report`: collapse_sd, collapse_loss_margin):

- **at chance**: its accuracy on the verdict's split is at most chance + `collapse_sd` binomial sd,
  sqrt(c(1 - c)/N) over the N images it was scored on. Chance c is the share of the largest class in
  that evaluation set (its confusion.json: largest row sum / total), or 1/classes where the run has no
  matrix of that split. Why the largest class and not 1/classes alone: a network that did not learn
  ignores its input, and the best any input-independent answer scores is a constant prediction of
  the most common class; no guess does better on average. On a balanced set the two are the same
  (Fashion-MNIST's test set, 1,000 images per class: 10%; the book's 500/500 split: 50%); MNIST's test
  set is not quite balanced (1,135 of its 10,000 images are ones), so its chance is 11.35%, not 10%.
  Why 3 sd: an untrained network's accuracy is a binomial draw around chance (0.30 pp on 10,000 images
  at 10%, 1.58 pp on 1,000 at 50%), so 3 sd is passed by chance alone in about 0.1% of such runs, while
  the documented figures lie 21 (the book's baseline, 71% of 2 classes) to 88 points above chance.
- **a training loss that never fell**: its last epoch's training loss (history.csv `loss`) is above
  (1 - `collapse_loss_margin`) x ln(classes), the cross-entropy in
  nats of answering every input with the uniform distribution, i.e. of having learned nothing. Why
  this level and not "the last epoch against the first": the first epoch's loss is a mean over an
  epoch of updates and already low wherever a run learns within it (MNIST) or starts from a trained
  model (fine_tuning continues from feature_extraction_augmented), so a learned run can end close to
  its first epoch; the loss of knowing nothing, ln(classes), is fixed by the arithmetic. Why a 2%
  margin: a network that outputs the same distribution for every input has the same loss on every
  image of a balanced set, so its epoch mean sits on ln(classes) up to rounding and the drift of its
  output towards the class prior; any learning takes the loss below that. Only cross-entropy losses
  (binary and categorical, the project's two) have that level; other losses skip this half of the rule.

Ordinary spread is not a collapse: LeNet's seeds at 79.36, 82.33 and 82.12% (Fashion-MNIST, where
third-party reruns range 74-82%) all learned, and their spread feeds the verdict's tolerance. A
collapsed seed is left out of the mean and sd the verdict and the effects use, and always reported
("1 of 4 seeds collapsed: seed 2 at 10.00%, chance"); the rule never drops a seed silently.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cnnrepro.errors import CnnreproError
from cnnrepro.report.stats import binomial_sd
from cnnrepro.run_outputs import RunRecord

CROSS_ENTROPY_LOSSES = ("binary_crossentropy", "categorical_crossentropy")
CHANCE = "chance"
FLAT_LOSS = "loss never fell"


@dataclass(frozen=True)
class Chance:
    """The accuracy of the best input-independent answer on one run's evaluation set."""

    rate: float
    images: int | None  # the images the run was scored on (None: unknown)
    basis: str  # in words, e.g. "largest class of 10,000 test images"


@dataclass(frozen=True)
class Collapse:
    """One seed that did not learn: its figure (fraction), which half of the rule it met, and the numbers."""

    seed: int
    value: float
    kind: str  # CHANCE | FLAT_LOSS
    detail: str

    def text(self) -> str:
        return f"seed {self.seed} at {self.value * 100:.2f}%, {self.kind}"


def evaluation_split(metric: str, config: Mapping[str, object]) -> str:
    """The split a run's `metric` is measured on: MNIST and d2l validate on their test set."""
    return "test" if metric == "test_accuracy" or config.get("validation_split") == "test" else "validation"


def _class_totals(record: RunRecord, split: str) -> list[int] | None:
    confusion = record.confusion
    if not isinstance(confusion, dict) or confusion.get("split") != split:
        return None
    matrix = confusion.get("matrix")
    where = record.path / "artifacts" / "confusion.json"
    if not isinstance(matrix, list) or not all(isinstance(row, list) for row in matrix):
        raise CnnreproError(f"{where}: matrix must be a list of rows")
    totals = []
    for row in matrix:
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in row):
            raise CnnreproError(f"{where}: matrix entries must be counts (non-negative integers)")
        totals.append(sum(row))
    return totals if sum(totals) > 0 else None


def _classes(record: RunRecord) -> int | None:
    classes = ((record.info or {}).get("config") or {}).get("classes")
    return len(classes) if isinstance(classes, list) and len(classes) >= 2 else None


def chance_of(record: RunRecord, metric: str, images: int | None) -> Chance | None:
    """Chance on the run's evaluation set: its matrix's largest class, else 1/classes over `images`."""
    config = (record.info or {}).get("config") or {}
    split = evaluation_split(metric, config)
    if totals := _class_totals(record, split):
        total = sum(totals)
        return Chance(max(totals) / total, total, f"largest class of {total:,} {split} images")
    if classes := _classes(record):
        where = f"{images:,} {split} images" if images else f"{split} images of unknown number"
        return Chance(1 / classes, images, f"1/{classes} classes, {where}")
    return None


def _at_chance(value: float, chance: Chance, collapse_sd: float) -> str | None:
    spread = binomial_sd(chance.rate, chance.images) if chance.images else 0.0
    threshold = chance.rate + collapse_sd * spread
    if value > threshold:
        return None
    margin = f" + {collapse_sd:g} sd = {threshold * 100:.2f}%" if spread else " (no image count: no margin)"
    return f"chance {chance.rate * 100:.2f}% ({chance.basis}){margin}"


def _flat_loss(record: RunRecord, classes: int | None, loss_margin: float) -> str | None:
    config = (record.info or {}).get("config") or {}
    if not record.history or config.get("loss") not in CROSS_ENTROPY_LOSSES or not classes:
        return None
    last = record.history[-1].get("loss")
    if not isinstance(last, int | float):
        return None
    level = (1 - loss_margin) * math.log(classes)
    if last <= level:
        return None
    return f"last epoch's training loss {last:.3f} > {1 - loss_margin:g} x ln {classes} = {level:.3f}"


def find_collapse(
    seed: int, value: float, record: RunRecord, metric: str, images: int | None, collapse_sd: float, loss_margin: float
) -> Collapse | None:
    """The collapse of one completed seed (`value` its figure on `metric`), or None when it learned."""
    chance = chance_of(record, metric, images)
    if chance is not None and (detail := _at_chance(value, chance, collapse_sd)):
        return Collapse(seed, value, CHANCE, detail)
    classes = _classes(record)
    if detail := _flat_loss(record, classes, loss_margin):
        return Collapse(seed, value, FLAT_LOSS, detail)
    return None


def find_collapses(
    values: Mapping[int, float],
    records: Mapping[int, RunRecord],
    metric: str,
    images: int | None,
    collapse_sd: float,
    loss_margin: float,
) -> tuple[Collapse, ...]:
    """The collapsed seeds among `values` (seed -> figure), each judged on its own run record."""
    found = (
        find_collapse(seed, value, records[seed], metric, images, collapse_sd, loss_margin)
        for seed, value in sorted(values.items())
    )
    return tuple(c for c in found if c is not None)


def collapse_text(collapsed: Sequence[Collapse], completed: int) -> str:
    """'1 of 4 seeds collapsed: seed 2 at 10.00%, chance' (empty when none did)."""
    if not collapsed:
        return ""
    seeds = "; ".join(c.text() for c in collapsed)
    return f"{len(collapsed)} of {completed} seed{'s' if completed != 1 else ''} collapsed: {seeds}"
