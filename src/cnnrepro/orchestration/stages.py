"""The pipeline's stages as both orchestrators run them: which command each runs, the params it tracks, and the
data each training group reads. The one table both DAG files derive from: Snakemake's rules read it
(workflow/rules/common.smk), dvc.yaml's `params:` lists and code deps are written from it and from the code
walk (`python -m cnnrepro.orchestration.stage_code --write dvc.yaml`), and tests/test_dag_parity.py checks
that the two DAGs are the same.

A params key with `{dataset}` in it is per dataset: the rule's `dataset` wildcard, `${item}` in dvc.yaml.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from cnnrepro.variants.registry import DATA_GROUPS, DATASET_DIRS, get_variant, variants_in_group

# What every training tracks: what changes what a run computes or where it is logged, not the speed
# settings that leave results equal (image_cache, checkpoint_every, runs_per_gpu).
TRAIN_PARAMS = (
    "train.device",
    "train.precision",
    "train.channels_last",
    "train.compile",
    "train.fast_step",
    "train.num_threads",
    "train.augmentation_semantics",
    "train.vgg16",
    "train.overrides",
    "tracking",
)


@dataclass(frozen=True)
class Stage:
    """One DVC stage / Snakemake rule (or one family of them: train_<group>, ablate_<group>)."""

    command: str  # the `cnnrepro <command>` it runs (its code deps come from that command's imports)
    params: tuple[str, ...]  # the params.yaml keys it tracks
    per_framework: bool = False  # its jobs run one backend each (code deps: that backend's package only)


STAGES: Mapping[str, Stage] = MappingProxyType(
    {
        "download": Stage(
            "download",
            ("data.mirror", "download.timeout_s", "download.retries", "download.backoff_s", "download.{dataset}"),
        ),
        "clean": Stage("clean", ("clean", "download.petimages.archive")),
        "split": Stage("split", ("split",)),
        "prepare_mnist": Stage("prepare-mnist", ("prepare_mnist",)),
        "train": Stage("train", TRAIN_PARAMS, per_framework=True),
        "ablate": Stage("train", (*TRAIN_PARAMS[:-1], "ablations.definitions", "tracking"), per_framework=True),
        "visualize": Stage(
            "visualize",
            (
                "train.seeds",
                "train.frameworks",
                "train.variants",
                "train.device",
                "train.num_threads",
                "train.vgg16",
                "tracking",
                "visualize",
            ),
        ),
        "report": Stage(
            "report",
            ("train.seeds", "train.frameworks", "train.variants", "ablations.run", "split.book.validation", "report"),
        ),
    }
)


def stage_of(name: str) -> Stage:
    """The table entry of a DVC stage or Snakemake rule name (train_<group> and ablate_<group> share one)."""
    family = name.split("_", 1)[0] if name.startswith(("train_", "ablate_")) else name
    return STAGES[family]


def _data_inputs(group: str) -> tuple[str, ...]:
    """The data files or folders a training group reads: its variants' datasets (the registry's folders)."""
    datasets = sorted({get_variant(v).dataset for v in variants_in_group(group)})
    paths = []
    for dataset in datasets:
        folder = f"data/{DATASET_DIRS[dataset]}"
        paths.append(f"{folder}/{dataset}.npz" if folder == "data/prepared" else folder)
    return tuple(paths)


def _continues_from(group: str) -> str | None:
    parents = {get_variant(v).continues_from for v in variants_in_group(group)}
    if len(parents) != 1:
        raise ValueError(f"data group {group}: its variants continue from {sorted(map(str, parents))}, not one")
    return parents.pop()


@dataclass(frozen=True)
class TrainingGroup:
    """One shape of training job (train_<group> and ablate_<group>): the data it reads and what it continues."""

    data_dir: str  # the --data argument
    data_inputs: tuple[str, ...]  # the files and folders that are its data deps
    continues_from: str | None  # the variant whose run of the same framework and seed it starts from


def training_rules(kind: str = "train") -> tuple[str, ...]:
    """The rule (stage) names of one kind of training job, train_<group> or ablate_<group>, in group order."""
    return tuple(f"{kind}_{group}" for group in DATA_GROUPS)


TRAINING_GROUPS: Mapping[str, TrainingGroup] = MappingProxyType(
    {
        group: TrainingGroup(
            f"data/{DATASET_DIRS[get_variant(variants_in_group(group)[0]).dataset]}",
            _data_inputs(group),
            _continues_from(group),
        )
        for group in DATA_GROUPS
    }
)
