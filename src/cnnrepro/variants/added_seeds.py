"""added_seeds.yaml: the seeds `cnnrepro reproduce --decide` added to single rows, beside params.yaml's grid.

params.yaml's `train.seeds` is a grid: every seed for every variant and framework. Deciding an inconclusive
row needs more seeds for that row only, so they are listed here, one entry per run:

    added_seeds:
      - {framework: torch, variant: lenet, seed: 3, data: data/prepared}

Both DAG files read this file: dvc.yaml loads it as `vars` (its `train_added` stage is a matrix over the
list) and workflow/rules/common.smk adds the runs to the report's inputs (the train_<group> rules make
them). The report counts them with the grid's seeds (ReportSettings.seeds_of). `data` is the run's
`--data` argument, written here because DVC's matrix cannot look it up; it is checked against the
variant's data group (cnnrepro.orchestration.stages.TRAINING_GROUPS), so it cannot drift.

The file is input like any other: read within the YAML limits, every field checked, one line naming the
entry and key on a mistake.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from cnnrepro.checks.bounded_yaml import load_yaml_bounded
from cnnrepro.errors import ParamsError
from cnnrepro.fsutil import write_text_atomic
from cnnrepro.mappings import JsonObject
from cnnrepro.variants.registry import DATASET_DIRS, get_variant, list_variants

ADDED_SEEDS_FILE = Path("added_seeds.yaml")
FRAMEWORKS = ("torch", "keras")
HEADER = (
    "# Seeds `cnnrepro reproduce --decide` added to single rows (cnnrepro.variants.added_seeds); both DAG\n"
    "# files read this list. Edit it by hand only to remove entries; an empty list adds nothing.\n"
)


@dataclass(frozen=True, order=True)
class AddedSeed:
    """One run beyond params.yaml's grid: (framework, variant, seed), trained on `data`."""

    framework: str
    variant: str
    seed: int
    data: str

    def record(self) -> JsonObject:
        return {"framework": self.framework, "variant": self.variant, "seed": self.seed, "data": self.data}


def data_dir_of(variant: str) -> str:
    """The --data argument of a variant's training job: its dataset's folder (the same for its whole data
    group, cnnrepro.orchestration.stages.TRAINING_GROUPS; tests/test_decide.py checks that)."""
    return f"data/{DATASET_DIRS[get_variant(variant).dataset]}"


def continues_from(variant: str) -> str | None:
    """The variant whose run of the same seed this variant's run starts from (fine-tuning), or None."""
    return get_variant(variant).continues_from


def _entry(record: object, where: str) -> AddedSeed:
    keys = ("framework", "variant", "seed", "data")
    if not isinstance(record, dict) or set(record) != set(keys):
        raise ParamsError(f"{where}: expected a mapping with exactly the keys {', '.join(keys)}")
    framework, variant, seed, data = (record[k] for k in keys)
    if framework not in FRAMEWORKS:
        raise ParamsError(f"{where}.framework: {framework!r} is not one of {', '.join(FRAMEWORKS)}")
    if variant not in list_variants():
        raise ParamsError(f"{where}.variant: {variant!r} is not a known variant ({', '.join(list_variants())})")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**31:
        raise ParamsError(f"{where}.seed: {seed!r} is not an integer in [0, 2^31)")
    if data != data_dir_of(variant):
        raise ParamsError(f"{where}.data: {data!r} is not {variant}'s data folder {data_dir_of(variant)!r}")
    if continues_from(variant):
        raise ParamsError(
            f"{where}.variant: {variant} continues from {continues_from(variant)}'s run of the same seed; "
            "add its seeds to train.seeds instead"
        )
    return AddedSeed(framework, variant, seed, data)


def read_added_seeds(path: str | Path = ADDED_SEEDS_FILE) -> tuple[AddedSeed, ...]:
    """The entries of an added_seeds.yaml, checked; () when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return ()
    try:
        document = load_yaml_bounded(path)
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(document, dict) or set(document) != {"added_seeds"}:
        raise ParamsError(f"{path}: expected one key, added_seeds (a list)")
    records = document["added_seeds"]
    if not isinstance(records, list):
        raise ParamsError(f"{path}: added_seeds must be a list")
    entries = [_entry(record, f"{path}: added_seeds[{i}]") for i, record in enumerate(records)]
    seen: set[tuple[str, str, int]] = set()
    for i, e in enumerate(entries):
        if (e.framework, e.variant, e.seed) in seen:
            raise ParamsError(f"{path}: added_seeds[{i}]: {e.framework}/{e.variant}/seed{e.seed} is listed twice")
        seen.add((e.framework, e.variant, e.seed))
    return tuple(entries)


def check_in_grid(
    entries: Iterable[AddedSeed], frameworks: Iterable[str], variants: Iterable[str], path: str | Path
) -> None:
    """Each entry adds a seed to a row params.yaml has (train.frameworks x train.variants), else one line."""
    frameworks, variants = tuple(frameworks), tuple(variants)
    for e in entries:
        if e.framework not in frameworks or e.variant not in variants:
            raise ParamsError(
                f"{path}: {e.framework}/{e.variant}/seed{e.seed} is not a row of params.yaml "
                f"(train.frameworks {list(frameworks)}, train.variants); remove the entry"
            )


def write_added_seeds(path: str | Path, entries: Iterable[AddedSeed]) -> None:
    """Write the list (sorted, one flow mapping per line), through a temporary file."""
    ordered = sorted(set(entries))
    lines = [HEADER + ("added_seeds:" if ordered else "added_seeds: []")]
    for e in ordered:
        lines.append(f"  - {yaml.safe_dump(e.record(), default_flow_style=True, sort_keys=False).strip()}")
    write_text_atomic(Path(path), "\n".join(lines) + "\n")
