"""The project code each `cnnrepro <command>` stage runs: the files it imports, found by walking them.

A stage must rerun when any code it runs changes, and only then. Both DAGs take their code
dependencies from here: Snakemake calls `stage_code` while it parses the rules, and dvc.yaml lists
the same files (`python -m cnnrepro.orchestration.stage_code --write dvc.yaml` rewrites them;
tests/test_stage_code.py fails when they drift). Every import statement counts, those inside
functions too: the CLI imports the chosen command's module lazily, and a command imports a framework
or an optional part only on the path that needs it, yet a change there changes what the stage can do.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from functools import cache
from pathlib import Path

PACKAGE = "cnnrepro"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
# What every command runs before its own module: the entry point, its error type and the stage guard.
ENTRY_MODULE = "cnnrepro.cli"


def module_file(module: str) -> Path | None:
    """The source file of a cnnrepro module or package (None for anything outside the project)."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    relative = Path(*module.split(".")[1:])
    for candidate in (PACKAGE_DIR / relative / "__init__.py", (PACKAGE_DIR / relative).with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _name_of(file: Path) -> str:
    parts = file.relative_to(PACKAGE_DIR).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


def imports_of(file: Path) -> set[str]:
    """Every module name an import statement in `file` may load (a `from m import x` may load m.x)."""
    module = _name_of(file)
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


@cache
def imported_files(module: str) -> frozenset[Path]:
    """The files `module` runs when imported and called: itself, every package above it, and so on."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            file = module_file(".".join(parts[:i]))
            if file is not None and file not in seen:
                seen.add(file)
                todo.extend(imports_of(file))
    return frozenset(seen)


def command_module(command: str) -> str:
    from cnnrepro.commands import COMMANDS

    return COMMANDS[command][0]


def stage_code(command: str, root: str = "src/cnnrepro") -> list[str]:
    """The code files `cnnrepro <command>` runs, as paths under `root`, sorted."""
    files = imported_files(ENTRY_MODULE) | imported_files(command_module(command))
    return sorted(f"{root}/{file.relative_to(PACKAGE_DIR).as_posix()}" for file in files)


# --- dvc.yaml ------------------------------------------------------------------------------------------

CMD = re.compile(r"^\s+cmd: (?:>-\s*\n\s+)?cnnrepro ([\w-]+)", re.MULTILINE)
CODE_DEP = re.compile(r"^(\s+)- src/cnnrepro/\S*\n", re.MULTILINE)


def rewrite_dvc_code_deps(text: str) -> str:
    """dvc.yaml with each cnnrepro stage's code deps (its `- src/cnnrepro/...` lines) replaced by stage_code."""
    stages = re.split(r"(?m)^(?=  \w[\w-]*:\s*$)", text)
    out = []
    for stage in stages:
        match = CMD.search(stage)
        code = list(CODE_DEP.finditer(stage))
        if match and code:
            indent = code[0].group(1)
            lines = "".join(f"{indent}- {path}\n" for path in stage_code(match.group(1)))
            stage = stage[: code[0].start()] + lines + CODE_DEP.sub("", stage[code[0].start() :])
        out.append(stage)
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cnnrepro.orchestration.stage_code", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--write", type=Path, metavar="DVC_YAML", help="rewrite this dvc.yaml's code deps")
    parser.add_argument("commands", nargs="*", help="print the code of these commands")
    args = parser.parse_args(argv)
    if args.write:
        from cnnrepro.fsutil import atomic_path

        text = rewrite_dvc_code_deps(args.write.read_text())
        with atomic_path(args.write) as tmp:
            Path(tmp).write_text(text)
    for command in args.commands:
        print("\n".join(stage_code(command)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
