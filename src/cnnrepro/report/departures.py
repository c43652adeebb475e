"""Where a row's runs depart from the documented settings, and whether that changes what is measured.

Read from each completed run's fidelity entries (run_info.json `fidelity`, the same list as
artifacts/fidelity.json) and its `overrides`. Three kinds of ledger entry:

- **changes what is measured** (the row's verdict becomes "not comparable", its numbers still shown):
  every params override (`train.overrides`: epochs, steps per epoch, batch size, learning rate and the
  number of training images change the training; validation steps change the evaluation set), VGG16
  weights that are not the book's (torchvision's), the caffe-style VGG16 input, and Keras 2.1.3's
  augmentation and resize semantics. Each makes the run a different experiment from the one the
  documented figure is one draw of, so no tolerance can say whether it reproduces that figure.
- **does not change what is measured** (named beside the verdict, which stands): TF32 and bf16
  arithmetic. The same experiment is computed with a shorter mantissa; the tf32 and bf16 ablations
  measure what that moves, and a change of the figure would show as above/below.
- **the port itself** (not marked; listed in the fidelity ledger): entries every faithful run of a
  variant carries, because they are how the port is written (NCHW layout, losses computed on logits,
  seeded RNG streams, the augmentation engine, the validation queue, CUDA's nondeterministic kernels,
  the Keras 3 framework, ...). The device is one of these: it changes no setting of the source.

Data departures measured by cnnrepro.report.data_notes (the mirror's resampled copies, the split's
shifted ids) are not marked per row either: they apply to every Dogs-vs-Cats row alike, keep the
evaluation set's size and population (its sampling noise is the rule's binomial term), and stand in
the ledger. An entry id this module does not know is marked as a departure that does not change what
is measured, so a new ledger entry is never silently dropped (tests/test_report_verdict.py checks that
every id of cnnrepro.train.ledger and of both backends' ledgers is classified here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cnnrepro.run_outputs import RunRecord

OVERRIDE_PREFIX = "override_"
ABLATION_PREFIX = "ablation_"  # an ablation run's own changes: the effects section's business, not a row's
# id -> words, for departures that change what is measured (overrides: OVERRIDE_PREFIX, worded from the entry).
CHANGES_MEASUREMENT = {
    "vgg16_torchvision": "torchvision's VGG16 weights, not the book's",
    "vgg16_caffe_input": "caffe-style VGG16 input",
    "resize_filter_2_1_3": "bilinear resize on load (Keras 2.1.3)",
    "augmentation_2_1_3": "Keras 2.1.3 augmentation semantics",
}
SAME_MEASUREMENT = {"tf32": "TF32 arithmetic", "bf16_autocast": "bf16 autocast"}
PORT = frozenset(
    {
        "layout_nchw",
        "bce_with_logits",
        "ce_with_logits",
        "random_draws",
        "augmentation_engine",
        "validation_queue",
        "mnist_monitoring",
        "vgg16_base_trained_as_2_0_8_ran",
        "cam_input_scale",
        "cam_resize",
        "cam_shuffle",
        "cam_augmentation_engine",
        "cuda_nondeterminism",
        "keras3_framework",
        "keras2_rmsprop_rule",
        "keras3_crossentropy_logits",
        "keras_random_draws",
        "keras_lenet_transcription",
        "keras3_trainable_base",
        "keras_augmentation_input",
        "keras_torch_backend",
    }
)


@dataclass(frozen=True)
class Departure:
    """One departure of a row's runs: what it is in a few words, and which seeds' runs have it."""

    id: str
    words: str
    changes_measurement: bool
    seeds: tuple[int, ...]


def _override_words(entry: Mapping[str, Any]) -> str:
    return f"{entry.get('setting') or entry['id']} {entry.get('port')} (documented {entry.get('source')})"


def _run_departures(record: RunRecord) -> dict[str, tuple[str, bool]]:
    """id -> (words, changes what is measured) for one run."""
    info = record.info if isinstance(record.info, dict) else {}
    found: dict[str, tuple[str, bool]] = {}
    entries = info.get("fidelity") or []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            continue
        entry_id = entry["id"]
        if entry_id in PORT or entry_id.startswith(ABLATION_PREFIX):
            continue
        if entry_id.startswith(OVERRIDE_PREFIX):
            found[entry_id] = (_override_words(entry), True)
        elif entry_id in CHANGES_MEASUREMENT:
            found[entry_id] = (CHANGES_MEASUREMENT[entry_id], True)
        else:
            found[entry_id] = (SAME_MEASUREMENT.get(entry_id) or str(entry.get("setting") or entry_id), False)
    overrides = info.get("overrides") or {}
    for key, value in overrides.items() if isinstance(overrides, dict) else ():
        found.setdefault(f"{OVERRIDE_PREFIX}{key}", (f"{key} {value} (train.overrides)", True))
    return found


def row_departures(runs: Sequence[tuple[int, RunRecord]]) -> tuple[Departure, ...]:
    """The departures of a row's completed runs (seed, record), in first-seen order, with their seeds."""
    seen: dict[tuple[str, str, bool], list[int]] = {}
    for seed, record in runs:
        for entry_id, (words, changes) in _run_departures(record).items():
            seen.setdefault((entry_id, words, changes), []).append(seed)
    return tuple(Departure(i, w, c, tuple(seeds)) for (i, w, c), seeds in seen.items())


def departure_text(departures: Sequence[Departure], all_seeds: Sequence[int]) -> str:
    """'epochs 2 (documented 10); TF32 arithmetic (seed 0)': seeds named where not every run has it."""
    parts = []
    for d in departures:
        partial = sorted(d.seeds) != sorted(all_seeds)
        parts.append(d.words + (f" (seed {', '.join(map(str, d.seeds))})" if partial else ""))
    return "; ".join(parts)


def changes_measurement(departures: Sequence[Departure]) -> bool:
    return any(d.changes_measurement for d in departures)
