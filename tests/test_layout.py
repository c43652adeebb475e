"""The package's shape: no import cycle between its parts, one engine that neither backend bypasses,
backends that never import each other, and no module or test reaching into another's `_private` names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cnnrepro.orchestration.stage_code import PACKAGE_DIR, imports_of, module_file
from cnnrepro.train.engine.backend import Backend

from .conftest import PROJECT_ROOT

BACKENDS = ("training", "keras_impl")


def _part(module: str) -> str:
    """The top-level part of the package a module belongs to: `engine` for cnnrepro.train.engine.splits."""
    return module.split(".")[1]


def part_imports() -> dict[str, set[str]]:
    """part -> the other parts its files import (lazy imports included)."""
    edges: dict[str, set[str]] = {}
    for file in PACKAGE_DIR.rglob("*.py"):
        source = file.relative_to(PACKAGE_DIR).parts[0].removesuffix(".py")
        targets = {_part(name) for name in imports_of(file) if name.count(".") and module_file(name) is not None}
        edges.setdefault(source, set()).update(targets - {source})
    return edges


def test_no_import_cycle_between_the_parts_of_the_package() -> None:
    edges = part_imports()

    def reachable(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cyclic = sorted(part for part in edges if part in reachable(part))
    assert not cyclic, f"import cycles through {cyclic}: {[(p, sorted(edges[p])) for p in cyclic]}"


def test_backends_import_the_engine_and_never_each_other() -> None:
    edges = part_imports()
    assert not edges["engine"] & set(BACKENDS), "the engine must not import a backend"
    for backend in BACKENDS:
        assert "engine" in edges[backend]
        assert not edges[backend] & (set(BACKENDS) - {backend}), f"{backend} imports the other backend"


def test_the_train_command_picks_a_backend_by_name() -> None:
    from cnnrepro.errors import CnnreproError
    from cnnrepro.train.cli import load_backend

    torch_backend: Backend = load_backend("torch")
    assert torch_backend.framework == "torch" and torch_backend.model_file == "model.safetensors"
    with pytest.raises(CnnreproError, match="unknown framework 'jax'"):
        load_backend("jax")


def _private_uses(file: Path) -> list[str]:
    """Imports of underscore names from a cnnrepro module, and attribute access to an underscore name
    through a cnnrepro module bound in this file."""
    tree = ast.parse(file.read_text(), str(file))
    modules: set[str] = set()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cnnrepro"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{file.name}:{node.lineno} from {node.module} import {alias.name}")
                if module_file(f"{node.module}.{alias.name}") is not None:
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("cnnrepro") and alias.asname:
                    modules.add(alias.asname)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{file.name}:{node.lineno} {node.value.id}.{node.attr}")
    return found


def test_no_private_name_is_used_across_modules() -> None:
    files = [*(PROJECT_ROOT / "src" / "cnnrepro").rglob("*.py"), *(PROJECT_ROOT / "tests").glob("*.py")]
    found = [use for file in files for use in _private_uses(file)]
    assert not found, "private names used across modules:\n" + "\n".join(found)
