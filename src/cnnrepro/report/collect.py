"""The expected run grid (from params) and what the runs directory holds for each cell of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cnnrepro.checks.run_fields import COUNT, check_keys, obj, read_run_json
from cnnrepro.errors import CnnreproError
from cnnrepro.mappings import JsonObject, Params
from cnnrepro.report.verdict import VerdictRule
from cnnrepro.run_outputs import RunRecord, load_run, run_dir
from cnnrepro.variants.added_seeds import AddedSeed


@dataclass(frozen=True)
class ReportSettings:
    """The params the report reads (train.seeds, train.frameworks, train.variants, split.book, report)."""

    seeds: tuple[int, ...]
    frameworks: tuple[str, ...]
    variants: tuple[str, ...]  # in params order, groups flattened
    rule: VerdictRule = field(default_factory=VerdictRule)
    # split.book.validation: images per class in the book's validation split (evaluation-set size)
    validation_per_class: int | None = None
    # Seeds `cnnrepro reproduce --decide` added to single rows (added_seeds.yaml), beyond the grid's `seeds`.
    added: tuple[AddedSeed, ...] = ()

    @property
    def confidence(self) -> float:
        return self.rule.confidence

    def seeds_of(self, framework: str, variant: str) -> tuple[int, ...]:
        """The seeds expected for one row: the grid's, then the ones added to this row."""
        extra = sorted(a.seed for a in self.added if (a.framework, a.variant) == (framework, variant))
        return self.seeds + tuple(s for s in extra if s not in self.seeds)

    def added_text(self) -> str:
        """The added seeds in a few words ('; seeds added: torch/lenet 3, 4'), or ''."""
        rows = dict.fromkeys((a.framework, a.variant) for a in self.added)
        parts = [f"{f}/{v} {', '.join(map(str, self.seeds_of(f, v)[len(self.seeds) :]))}" for f, v in rows]
        return f"; seeds added: {'; '.join(parts)}" if parts else ""

    @classmethod
    def from_params(cls, params: Params, added: tuple[AddedSeed, ...] = ()) -> ReportSettings:
        train = params["train"]
        variants = tuple(v for group in train["variants"].values() for v in group)
        return cls(
            seeds=tuple(train["seeds"]),
            frameworks=tuple(train["frameworks"]),
            variants=variants,
            rule=VerdictRule.from_params(params["report"]),
            validation_per_class=int(params["split"]["book"]["validation"]),
            added=added,
        )


@dataclass
class RunSlot:
    """One expected (framework, variant, seed): its record, or None when it has no outputs yet."""

    framework: str
    variant: str
    seed: int
    path: Path
    record: RunRecord | None

    @property
    def status(self) -> str:
        return self.record.metrics.status if self.record else "missing"

    @property
    def reason(self) -> str | None:
        return self.record.metrics.reason if self.record else "no outputs yet (metrics.json absent)"


def _check_identity(record: RunRecord, framework: str, variant: str, seed: int) -> None:
    """A run copied to the wrong directory would silently score under the wrong name; refuse it."""
    m = record.metrics
    if (m.framework, m.variant, m.seed) != (framework, variant, seed):
        raise CnnreproError(
            f"{record.path / 'metrics.json'}: says {m.framework}/{m.variant}/seed{m.seed}, "
            f"expected {framework}/{variant}/seed{seed} from its directory"
        )


def collect_runs(runs_root: str | Path, settings: ReportSettings) -> list[RunSlot]:
    """Load every expected run. No metrics.json = missing (it is written last); anything corrupt raises."""
    slots = []
    for variant in settings.variants:
        for framework in settings.frameworks:
            for seed in settings.seeds_of(framework, variant):
                path = run_dir(runs_root, framework, variant, seed)
                record = None
                if (path / "metrics.json").exists():
                    record = load_run(path)
                    _check_identity(record, framework, variant, seed)
                slots.append(RunSlot(framework, variant, seed, path, record))
    return slots


def unexpected_runs(runs_root: str | Path, settings: ReportSettings) -> list[str]:
    """Finished runs on disk outside the params grid (stale or from other params); listed, never scored."""
    root = Path(runs_root)
    if not root.is_dir():
        return []
    expected = {
        run_dir(root, f, v, s) for f in settings.frameworks for v in settings.variants for s in settings.seeds_of(f, v)
    }
    found = sorted(p.parent for p in root.glob("*/*/seed*/metrics.json"))
    return [str(p) for p in found if p not in expected]


CLEAN_SUMMARY_KEYS = ("kept", "dropped", "per_class", "by_reason", "jfif_filter")
JFIF_KEYS = ("would_drop", "would_keep", "decodable_but_dropped", "undecodable_but_kept")
COUNTS = obj(COUNT)
CLEAN_SUMMARY_CHECKS = {
    **dict.fromkeys(("kept", "dropped", "total_members", "converted"), COUNT),
    **dict.fromkeys(("by_reason", "by_format", "by_mode", "jfif_filter"), COUNTS),
    "per_class": obj(COUNTS),
}


def load_clean_summary(path: str | Path) -> JsonObject | None:
    """data/clean/summary.json, with the keys the report plots checked up front (one-line error naming the key):
    every count a non-negative integer, as the clean stage writes them.

    None when the file does not exist (the clean stage has not run): the report says so and goes on."""
    path = Path(path)
    if not path.exists():
        return None
    summary = read_run_json(path)
    if not isinstance(summary, dict):
        raise CnnreproError(f"{path}: expected a JSON object")
    for key in CLEAN_SUMMARY_KEYS:
        if key not in summary:
            raise CnnreproError(f"{path}: missing key {key!r}")
    for key in JFIF_KEYS:
        if key not in (summary["jfif_filter"] or {}):
            raise CnnreproError(f"{path}: missing key 'jfif_filter.{key}'")
    for name, counts in summary["per_class"].items() if isinstance(summary["per_class"], dict) else ():
        if not isinstance(counts, dict) or "kept" not in counts or "dropped" not in counts:
            raise CnnreproError(f"{path}: per_class.{name} needs 'kept' and 'dropped'")
    check_keys(summary, CLEAN_SUMMARY_CHECKS, path, "")
    return summary
