"""The package's shape, as a newcomer reads it: no import circle between files, library layers that never
import back up, an engine that imports no framework, backends that never import each other, few modules at
the top, and no module or test reaching into another's `_private` names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cnnrepro.commands import COMMANDS
from cnnrepro.orchestration.stage_code import PACKAGE_DIR, imports_of, module_file
from cnnrepro.train.engine.backend import Backend

from .conftest import PROJECT_ROOT

BACKENDS = ("cnnrepro.train.backends.torch", "cnnrepro.train.backends.keras")
FRAMEWORK_PACKAGES = ("torch", "tensorflow", "keras", "jax")
# Entry points sit above every layer: the commands, and the modules run as `python -m` (make mlflow-ui,
# the schema's enums, the dvc.yaml code-deps writer). What they import may import anything below.
ENTRY_MODULES = {module for module, _ in COMMANDS.values()} | {
    "cnnrepro.cli",
    "cnnrepro.tracking.ui",
    "cnnrepro.variants.schema_enums",
}


def module_name(file: Path) -> str:
    parts = file.relative_to(PACKAGE_DIR).with_suffix("").parts
    return ".".join(("cnnrepro", *(parts[:-1] if parts[-1] == "__init__" else parts)))


def file_imports() -> dict[Path, set[Path]]:
    """file -> the project files its import statements load (lazy imports and package __init__s included)."""
    edges: dict[Path, set[Path]] = {}
    for file in PACKAGE_DIR.rglob("*.py"):
        targets = {module_file(name) for name in imports_of(file)}
        edges[file] = {t for t in targets if t is not None and t != file}
    return edges


def cycles(edges: dict[str, set[str]] | dict[Path, set[Path]]) -> list[list]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict = {}
    low: dict = {}
    stack: list = []
    on_stack: set = set()
    found: list[list] = []

    def visit(node) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_between_files() -> None:
    found = cycles(file_imports())
    assert not found, "import circles: " + "; ".join(
        " <-> ".join(str(f.relative_to(PACKAGE_DIR)) for f in c) for c in found
    )


def test_the_library_layers_never_import_back_up() -> None:
    """Top-level parts (packages and modules of src/cnnrepro), entry points left out: an acyclic layering."""
    parts: dict[str, set[str]] = {}
    for file, targets in file_imports().items():
        if module_name(file) in ENTRY_MODULES:
            continue
        part = file.relative_to(PACKAGE_DIR).parts[0].removesuffix(".py")
        if part == "__init__":
            continue
        others = {t.relative_to(PACKAGE_DIR).parts[0].removesuffix(".py") for t in targets} - {part, "__init__"}
        parts.setdefault(part, set()).update(others)
    found = cycles(parts)
    assert not found, f"parts importing each other: {found}: {[(p, sorted(parts[p])) for c in found for p in c]}"


def test_at_most_eight_modules_at_the_top() -> None:
    top = sorted(p.name for p in PACKAGE_DIR.glob("*.py"))
    assert len(top) <= 8, top


def _imports_in(prefix: str) -> dict[Path, set[str]]:
    files = [
        f for f in PACKAGE_DIR.rglob("*.py") if module_name(f) == prefix or module_name(f).startswith(prefix + ".")
    ]
    return {f: imports_of(f) for f in files}


def test_the_engine_imports_no_framework() -> None:
    found = [
        f"{file.relative_to(PACKAGE_DIR)}: {name}"
        for file, names in _imports_in("cnnrepro.train.engine").items()
        for name in sorted(names)
        if name.split(".")[0] in FRAMEWORK_PACKAGES or name.startswith("cnnrepro.train.backends")
    ]
    assert not found, "the engine imports a framework or a backend:\n" + "\n".join(found)


def test_backends_import_the_engine_and_never_each_other() -> None:
    for backend in BACKENDS:
        names = {name for names in _imports_in(backend).values() for name in names}
        assert any(n.startswith("cnnrepro.train.engine") for n in names), f"{backend} bypasses the engine"
        others = [b for b in BACKENDS if b != backend]
        assert not {n for n in names if n.startswith(tuple(others))}, f"{backend} imports the other backend"


def test_the_train_command_picks_a_backend_by_name() -> None:
    from cnnrepro.errors import CnnreproError
    from cnnrepro.train.backends import load_backend

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
