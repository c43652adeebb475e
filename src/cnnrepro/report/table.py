"""The comparison table: one row per (variant, framework), measured over seeds against documented.py."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cnnrepro.report.collapse import find_collapses
from cnnrepro.report.collect import ReportSettings, RunSlot
from cnnrepro.report.departures import Departure, changes_measurement, departure_text, row_departures
from cnnrepro.report.evalsize import UNKNOWN, EvaluationSize, evaluation_size
from cnnrepro.report.seeds_needed import SeedsNeeded, row_seeds_needed
from cnnrepro.report.stats import SeedSummary, summarize
from cnnrepro.report.verdict import (
    ABOVE,
    BELOW,
    INCONCLUSIVE,
    REPRODUCED,
    Decision,
    ParityDecision,
    decide,
    parity,
)
from cnnrepro.run_outputs import FAILED_STATUSES
from cnnrepro.variants.documented import DOCUMENTED

NOT_RUN = "not run"
FAILED = "failed"
MISSING = "missing"
NO_DOCUMENTED = "no documented figure"
NOT_COMPARABLE = "not comparable"  # the runs depart in a way that changes what is measured (report.departures)
VERDICTS = (REPRODUCED, ABOVE, BELOW, INCONCLUSIVE, NOT_COMPARABLE, NOT_RUN, FAILED, MISSING, NO_DOCUMENTED)

METRICS = ("val_accuracy", "test_accuracy")
# A variant with no entry in documented.py is still reported; its measured split defaults to validation.
DEFAULT_METRIC = "val_accuracy"


@dataclass
class Row:
    variant: str
    framework: str
    dataset: str | None
    metric: str  # the split the source reports, which the verdict uses
    documented: float | None
    documented_text: str | None
    source: str | None
    printed: float | None
    val: SeedSummary
    test: SeedSummary
    difference_pp: float | None
    verdict: str
    verdict_detail: str
    seeds_expected: list[int]
    seeds_completed: list[int] = field(default_factory=list)
    seeds_missing: list[int] = field(default_factory=list)
    seeds_not_run: list[int] = field(default_factory=list)
    seeds_failed: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the verdict does not already say
    gaps: list[str] = field(default_factory=list)  # every seed that did not complete, with its reason
    evaluation: EvaluationSize = UNKNOWN
    decision: Decision | None = None  # the rule's numbers, where measurements met a documented figure
    parity: ParityDecision | None = None
    reference: bool = False  # the row other frameworks are compared with
    departures: tuple[Departure, ...] = ()  # from the documented settings, in the completed runs
    seeds_needed: SeedsNeeded | None = None  # an inconclusive verdict: the seeds that would decide it

    @property
    def departure_text(self) -> str:
        return departure_text(self.departures, self.seeds_completed)

    @property
    def learned_seeds(self) -> set[int]:
        """Completed seeds the collapse rule kept (all completed ones where no verdict was reached)."""
        dropped = {c.seed for c in self.decision.collapsed} if self.decision else set()
        return {s for s in self.seeds_completed if s not in dropped}

    @property
    def seeds_partial(self) -> bool:
        return len(self.seeds_completed) < len(self.seeds_expected)

    def summary(self, metric: str) -> SeedSummary:
        return self.val if metric == "val_accuracy" else self.test


def _by_seed(slots: Sequence[RunSlot], metric: str) -> dict[int, float]:
    return {
        s.seed: v
        for s in slots
        if s.status == "completed" and (v := getattr(s.record.metrics, metric)) is not None  # type: ignore[union-attr]
    }


def _values(slots: Sequence[RunSlot], metric: str) -> list[float]:
    return list(_by_seed(slots, metric).values())


def _statuses(status: str) -> tuple[str, ...]:
    """ "failed" stands for every run that trained and did not finish (run_outputs.FAILED_STATUSES)."""
    return FAILED_STATUSES if status == "failed" else (status,)


def _seeds(slots: Sequence[RunSlot], status: str) -> list[int]:
    return [s.seed for s in slots if s.status in _statuses(status)]


def _reasons(slots: Sequence[RunSlot], status: str) -> str:
    """Seeds sharing one reason are named together, so three identical refusals read as one line.

    A reason that names its own seed's run (fine_tuning's "continues from .../seed1, which is not_run: ...")
    is compared with that seed written as {seed}, so such chains also read as one line.
    """
    groups: dict[str, list[RunSlot]] = {}
    for s in slots:
        if s.status in _statuses(status):
            shared = re.sub(rf"\bseed{s.seed}\b", "seed{seed}", s.reason or "no reason given")
            groups.setdefault(shared, []).append(s)
    parts = []
    for shared, members in groups.items():
        text = shared if len(members) > 1 else (members[0].reason or "no reason given")
        parts.append(f"{text} (seed {', '.join(str(m.seed) for m in members)})")
    return "; ".join(parts)


def _seed_notes(slots: Sequence[RunSlot], metric: str) -> list[str]:
    notes = []
    # A completed run without the figure the row measures is not among its n: say so, as for the others.
    unmeasured = [s.seed for s in slots if s.status == "completed" and getattr(s.record.metrics, metric) is None]  # type: ignore[union-attr]
    if unmeasured:
        notes.append(f"completed without {metric}: seed {', '.join(map(str, unmeasured))}")
    if missing := _seeds(slots, "missing"):
        notes.append(f"missing seed {', '.join(map(str, missing))}")
    if _seeds(slots, "not_run"):
        notes.append(f"not run: {_reasons(slots, 'not_run')}")
    if _seeds(slots, "failed"):
        notes.append(f"failed: {_reasons(slots, 'failed')}")
    return notes


def build_row(variant: str, framework: str, slots: Sequence[RunSlot], settings: ReportSettings) -> Row:
    doc = DOCUMENTED.get(variant)
    metric = doc.metric if doc else DEFAULT_METRIC
    row = Row(
        variant=variant,
        framework=framework,
        dataset=doc.dataset if doc else None,
        metric=metric,
        documented=doc.documented if doc else None,
        documented_text=doc.documented_text if doc else None,
        source=doc.source if doc else None,
        printed=doc.printed if doc else None,
        val=summarize(_values(slots, "val_accuracy"), settings.confidence),
        test=summarize(_values(slots, "test_accuracy"), settings.confidence),
        difference_pp=None,
        verdict=MISSING,
        verdict_detail="",
        seeds_expected=[s.seed for s in slots],
        seeds_completed=_seeds(slots, "completed"),
        seeds_missing=_seeds(slots, "missing"),
        seeds_not_run=_seeds(slots, "not_run"),
        seeds_failed=_seeds(slots, "failed"),
        notes=_seed_notes(slots, metric),
        gaps=_seed_notes(slots, metric),
        evaluation=evaluation_size(slots, metric, settings.validation_per_class),
    )
    measured = row.summary(metric)
    if not row.seeds_completed:
        if row.seeds_not_run:
            row.verdict, row.verdict_detail = NOT_RUN, _reasons(slots, "not_run")
        elif row.seeds_failed:
            row.verdict, row.verdict_detail = FAILED, _reasons(slots, "failed")
        else:
            row.verdict, row.verdict_detail = MISSING, "no outputs yet"
        # The verdict already gives these reasons; the notes keep only what it does not say.
        row.notes = [n for n in row.notes if not n.endswith(row.verdict_detail)]
    elif row.documented is None:
        row.verdict = NO_DOCUMENTED
        row.verdict_detail = doc.documented_text if doc else "variant not in documented.py"
    elif measured.n == 0:
        row.verdict, row.verdict_detail = MISSING, f"completed runs report no {metric}"
    else:
        rule, values = settings.rule, _by_seed(slots, metric)
        records = {s.seed: s.record for s in slots if s.record is not None}
        images = row.evaluation.images
        collapsed = find_collapses(values, records, metric, images, rule.collapse_sd, rule.collapse_loss_margin)
        row.decision = decide(values, row.documented, images, rule, collapsed)
        row.verdict, row.difference_pp, row.verdict_detail = (
            row.decision.verdict,
            row.decision.difference_pp,
            row.decision.reason,
        )
    _mark_departures(row, slots, settings)
    return row


def _mark_departures(row: Row, slots: Sequence[RunSlot], settings: ReportSettings) -> None:
    """Departures lead the reason; one that changes what is measured makes a verdict "not comparable"."""
    completed = [(s.seed, s.record) for s in slots if s.status == "completed" and s.record is not None]
    row.departures = row_departures(completed)
    if row.departures and row.decision is not None and changes_measurement(row.departures):
        row.verdict = NOT_COMPARABLE
        row.verdict_detail = (
            f"departs: {row.departure_text}, which changes what is measured; by the rule: {row.verdict_detail}"
        )
    elif row.departures:
        row.verdict_detail = f"departs: {row.departure_text}; {row.verdict_detail}"
    if row.verdict == INCONCLUSIVE and row.decision is not None:
        row.seeds_needed = row_seeds_needed(row.framework, row.variant, row.decision, settings.rule)


def _add_parity(rows: list[Row], by_key: dict[tuple[str, str], list[RunSlot]], settings: ReportSettings) -> None:
    for variant in settings.variants:
        candidates = [
            r for r in rows if r.variant == variant and _learned_values(by_key.get((variant, r.framework), []), r)
        ]
        if len(candidates) < 2:
            continue
        reference, others = candidates[0], candidates[1:]
        reference.reference = True
        ref_values = _learned_values(by_key[(variant, reference.framework)], reference)
        for row in others:
            values = _learned_values(by_key[(variant, row.framework)], row)
            images = min((r.evaluation.images or 0 for r in (row, reference)), default=0) or None
            row.parity = parity(values, ref_values, images, settings.rule, reference.framework)


def _learned_values(slots: Sequence[RunSlot], row: Row) -> list[float]:
    """The row's figures without its collapsed seeds: parity compares frameworks on what they learned."""
    return [v for seed, v in _by_seed(slots, row.metric).items() if seed in row.learned_seeds]


def build_table(slots: Sequence[RunSlot], settings: ReportSettings) -> list[Row]:
    """Rows in params order: variants, then frameworks; parity added where 2+ frameworks have measurements."""
    by_key: dict[tuple[str, str], list[RunSlot]] = {}
    for slot in slots:
        by_key.setdefault((slot.variant, slot.framework), []).append(slot)
    rows = [
        build_row(variant, framework, by_key.get((variant, framework), []), settings)
        for variant in settings.variants
        for framework in settings.frameworks
    ]
    _add_parity(rows, by_key, settings)
    return rows


def verdict_counts(rows: Sequence[Row]) -> dict[str, int]:
    counts = {v: 0 for v in VERDICTS}
    for row in rows:
        counts[row.verdict] += 1
    return {k: v for k, v in counts.items() if v}


METRIC_LABEL = {"val_accuracy": "validation", "test_accuracy": "test"}
