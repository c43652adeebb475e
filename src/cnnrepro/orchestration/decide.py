"""`cnnrepro reproduce --decide`: which seeds to add so the report's undecided rows get a verdict.

The report says, per inconclusive row, how many completed seeds in total would decide it at the measured
spread (cnnrepro.report.seeds_needed). A round adds the missing seeds to those rows only, as new entries
of added_seeds.yaml (both DAG files train them), within two caps from params.yaml's `decide`:
`max_seeds` (a row never gets more seeds than this in total) and `max_hours` (the estimated time of
every seed added, all rounds together; each run is estimated at the median duration of its row's
completed runs, from their run_info.json). After the round runs, the report is read again; rounds stop
when nothing is undecided, or when nothing more can be added, saying for each undecided row why.

Effects (an ablation against the faithful runs) are listed, not run: their seeds belong to params.yaml's
ablations.run x train.seeds grid. A fine-tuning row continues from another variant's run of the same seed,
so its seeds are not added either (train.seeds adds them with their parents).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cnnrepro.mappings import Params
from cnnrepro.orchestration.reproduce.progress import format_duration
from cnnrepro.report.collect import ReportSettings, RunSlot
from cnnrepro.report.seeds_needed import BEYOND, MEASURED, MINIMUM, SeedsNeeded
from cnnrepro.variants.added_seeds import AddedSeed, continues_from, data_dir_of


@dataclass(frozen=True)
class DecideLimits:
    """params.yaml's `decide`: run the rounds without the flag (auto), and the two caps."""

    auto: bool
    max_seeds: int
    max_hours: float

    @classmethod
    def from_params(cls, params: Params) -> DecideLimits:
        decide = params["decide"]
        return cls(bool(decide["auto"]), int(decide["max_seeds"]), float(decide["max_hours"]))


@dataclass(frozen=True)
class RowPlan:
    """One undecided row in one round: the seeds added to it (maybe none) and why."""

    framework: str
    variant: str
    completed: int
    wanted: int | None  # completed seeds in total the report asks for (None: no number of seeds decides)
    added: tuple[int, ...]
    seconds_per_run: float | None  # the median duration of the row's completed runs
    note: str

    def line(self) -> str:
        each = f", about {format_duration(self.seconds_per_run)} each" if self.seconds_per_run else ""
        seeds = f"+{len(self.added)} seed{'s' if len(self.added) != 1 else ''} ({', '.join(map(str, self.added))})"
        what = seeds + each if self.added else "nothing added"
        return f"  {self.framework}/{self.variant}: {self.completed} completed; {what}: {self.note}"


def measured_durations(slots: Sequence[RunSlot]) -> dict[tuple[str, str], float]:
    """Per row, the median duration_s of its completed runs (run_info.json), where any has one; from the runs
    the report's own reading loaded (report.collect.collect_runs), so a round reads each run once."""
    seconds: dict[tuple[str, str], list[float]] = {}
    for slot in slots:
        value = slot.record.info.get("duration_s") if slot.record else None
        if slot.status == "completed" and isinstance(value, int | float) and value > 0:
            seconds.setdefault((slot.framework, slot.variant), []).append(float(value))
    return {row: statistics.median(values) for row, values in seconds.items()}


def plan_round(
    needs: Sequence[SeedsNeeded],
    settings: ReportSettings,
    limits: DecideLimits,
    durations: Mapping[tuple[str, str], float],
    spent_s: float,
) -> list[RowPlan]:
    """The seeds to add this round per undecided row (rows only; see the module docstring).

    `spent_s`: the estimated seconds of the seeds added in earlier rounds, counted against max_hours."""
    budget_s = limits.max_hours * 3600 - spent_s
    plans = []
    for need in needs:
        if need.ablation is not None:
            continue
        row = (need.framework, need.variant)
        have = settings.seeds_of(*row)
        each = durations.get(row)

        def plan(added: tuple[int, ...], note: str, need: SeedsNeeded = need, each: float | None = each) -> RowPlan:
            return RowPlan(need.framework, need.variant, need.completed, need.seeds, added, each, note)

        if continues_from(need.variant):
            plans.append(plan((), f"continues from {continues_from(need.variant)}'s runs: add seeds in train.seeds"))
            continue
        if need.basis not in (MEASURED, MINIMUM) or need.seeds is None:
            plans.append(plan((), need.reason))
            continue
        missing = need.seeds - need.completed
        # Seeds in the grid that have not completed (running, failed or missing) count as asked already.
        pending = len(have) - need.completed
        count = missing - max(0, pending)
        if count <= 0:
            plans.append(plan((), f"{need.seeds} seeds asked; {pending} not completed yet (failed or not run)"))
            continue
        room = limits.max_seeds - len(have)
        capped = ""
        if count > room:
            count, capped = max(0, room), f"; capped at decide.max_seeds = {limits.max_seeds}"
        if each is not None and count > 0 and count * each > budget_s:
            fits = max(0, int(budget_s // each))
            if fits < count:
                count, capped = fits, f"; capped at decide.max_hours = {limits.max_hours:g} h (estimated)"
        if count <= 0:
            wanted = f"{need.seeds} seeds would decide it" if need.basis == MEASURED else need.short()
            plans.append(plan((), f"still undecided: {wanted}{capped}"))
            continue
        start = max(have) + 1 if have else 0
        added = tuple(range(start, start + count))
        budget_s -= count * (each or 0.0)
        plans.append(plan(added, f"{need.short()}{capped}"))
    return plans


def new_entries(plans: Sequence[RowPlan]) -> tuple[AddedSeed, ...]:
    """The added_seeds.yaml entries of a round's additions."""
    return tuple(AddedSeed(p.framework, p.variant, seed, data_dir_of(p.variant)) for p in plans for seed in p.added)


def estimated_seconds(plans: Sequence[RowPlan]) -> float:
    """The estimated run time of a round's additions (rows without a measured duration count 0)."""
    return sum(len(p.added) * (p.seconds_per_run or 0.0) for p in plans)


def undecided_lines(needs: Sequence[SeedsNeeded]) -> list[str]:
    """What is still undecided after the last round, and why, one line each (effects included)."""
    lines = []
    for need in needs:
        what = f"{need.framework}/{need.variant}" + (f" ablation {need.ablation}" if need.ablation else "")
        why = need.reason if need.basis not in (MEASURED, BEYOND) or need.ablation else need.short()
        lines.append(f"  {what}: {why}")
    return lines
