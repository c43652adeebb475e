"""The params schema's variant names, written from the registry: `train.variants.<group>` may list
exactly the registry's variants of that group.

Snakemake validates params.yaml against the schema file itself, so the names must be in the file;
`python -m cnnrepro.variants.schema_enums` rewrites them there (tests/test_registry.py fails when the
file and the registry differ). Adding a variant is then one registry entry and its documented figure.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from cnnrepro.fsutil import atomic_path
from cnnrepro.variants.registry import DATA_GROUPS, variants_in_group

SCHEMA = Path("workflow/schemas/params.schema.yaml")


def with_registry_enums(text: str) -> str:
    """The schema text with each group's `items: {enum: [...]}` set to the registry's variants of that group."""
    for group in DATA_GROUPS:
        prefix = r"^(\s+" + group + r": \{type: array, uniqueItems: true, items: \{enum: )"
        line = re.compile(prefix + r"\[[^\]]*\](\}\})$", re.MULTILINE)
        if not line.search(text):
            raise ValueError(f"{SCHEMA}: no enum line for train.variants.{group}")
        names = ", ".join(variants_in_group(group))
        text = line.sub(lambda m, names=names: f"{m.group(1)}[{names}]{m.group(2)}", text)
    return text


def main(argv: list[str] | None = None) -> int:
    path = Path((argv if argv is not None else sys.argv[1:])[0]) if (argv or sys.argv[1:]) else SCHEMA
    text = with_registry_enums(path.read_text())
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
