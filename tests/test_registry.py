"""The registry is the one source of every variant fact: what else states one derives from it or is checked here.

(The fidelity ledger's scopes and the bench's data folders derive from it; the PyTorch builder table is
checked here, the Keras one in tests/test_keras_parity.py, where TensorFlow is imported anyway.)
"""

from __future__ import annotations

import ast
import re

import pytest
import yaml

from cnnrepro.orchestration.stages import TRAINING_GROUPS
from cnnrepro.variants.documented import DOCUMENTED
from cnnrepro.variants.registry import DATA_GROUPS, DATASET_DIRS, VARIANTS, list_variants, variants_in_group

from .conftest import PROJECT_ROOT

SCHEMA = yaml.safe_load((PROJECT_ROOT / "workflow/schemas/params.schema.yaml").read_text())
PARAMS = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
DVC = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())
TRAIN_SMK = (PROJECT_ROOT / "workflow/rules/train.smk").read_text()


def test_the_torch_builders_cover_the_registry_exactly() -> None:
    from cnnrepro.train.backends.torch.models import BUILDERS

    assert sorted(BUILDERS) == sorted(list_variants())


def test_the_registry_imports_no_framework() -> None:
    tree = ast.parse((PROJECT_ROOT / "src/cnnrepro/variants/registry.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in imported if m.split(".")[0] in ("torch", "keras", "tensorflow")}
    assert not {m for m in imported if m.startswith("cnnrepro.train")}


def test_every_variant_is_in_exactly_one_group_and_every_group_has_a_variant() -> None:
    grouped = [name for group in DATA_GROUPS for name in variants_in_group(group)]
    assert sorted(grouped) == sorted(list_variants())
    assert all(variants_in_group(group) for group in DATA_GROUPS)


def test_the_schema_enums_are_the_registry_groups() -> None:
    groups = SCHEMA["properties"]["train"]["properties"]["variants"]
    assert groups["required"] == list(DATA_GROUPS)
    enums = {group: prop["items"]["enum"] for group, prop in groups["properties"].items()}
    assert enums == {group: variants_in_group(group) for group in DATA_GROUPS}


def test_the_shipped_params_name_each_variant_in_its_group() -> None:
    for group, names in PARAMS["train"]["variants"].items():
        assert set(names) <= set(variants_in_group(group)), group


@pytest.mark.parametrize("group", DATA_GROUPS)
def test_each_group_has_one_training_rule_in_each_dag_reading_its_datasets_folder(group: str) -> None:
    folders = {f"data/{DATASET_DIRS[VARIANTS[name].dataset]}" for name in variants_in_group(group)}
    assert len(folders) == 1, f"group {group} mixes data folders {folders}"
    stage = DVC["stages"][f"train_{group}"]
    assert stage["matrix"]["variant"] == f"${{train.variants.{group}}}"
    assert f"--data {folders.pop()}" in stage["cmd"].replace("\n", " ")
    # Snakemake writes one rule per group from the same table (tests/test_dag_parity.py runs both DAGs).
    assert TRAINING_GROUPS[group].data_dir == stage["cmd"].split("--data ")[1].split()[0]
    assert "variant=one_of(VARIANT_GROUPS[group])" in TRAIN_SMK


def test_no_training_rule_without_a_group() -> None:
    # train_added: the seeds `reproduce --decide` adds to single rows, of any group (tests/test_decide.py).
    groups = {name for name in DVC["stages"] if name.startswith("train_") and name != "train_added"}
    assert groups == {f"train_{g}" for g in DATA_GROUPS}
    assert set(TRAINING_GROUPS) == set(DATA_GROUPS)
    assert re.search(
        r"^for group, spec in TRAINING_GROUPS.items\(\):\n\n?    (?:\w.*\n)*?\n?    rule:", TRAIN_SMK, re.M
    )


def test_the_documented_table_agrees_with_the_registry() -> None:
    assert set(DOCUMENTED) == set(VARIANTS)
    for name, figure in DOCUMENTED.items():
        assert figure.dataset == VARIANTS[name].dataset, name


def test_the_schema_writer_is_a_fixed_point() -> None:
    from cnnrepro.variants.schema_enums import with_registry_enums

    text = (PROJECT_ROOT / "workflow/schemas/params.schema.yaml").read_text()
    assert with_registry_enums(text) == text
