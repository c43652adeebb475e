"""The project code each `cnnrepro <command>` stage runs: the files it imports, found by walking them.

A stage must rerun when any code it runs changes, and only then. Both DAGs take their code
dependencies from here: Snakemake calls `stage_code` while it parses the rules, and dvc.yaml lists
the same code as `code_roots` (a package whose every module the stage imports is one entry) with the
params of cnnrepro.orchestration.stages (`python -m cnnrepro.orchestration.stage_code --write dvc.yaml`
rewrites both; tests/test_stage_code.py fails when they drift). Every import statement counts, those
inside functions too: the CLI imports the chosen command's module lazily, and a command imports a
framework or an optional part only on the path that needs it, yet a change there changes what the
stage can do. A training job runs one backend: its walk never enters the other backend's package, so an
edit of one framework's code leaves the other framework's runs up to date.
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


BACKENDS_PACKAGE = "cnnrepro.train.backends"


@cache
def imported_files(module: str, skip: tuple[str, ...] = ()) -> frozenset[Path]:
    """The files `module` runs when imported and called: itself, every package above it, and so on; modules
    under a `skip` prefix (another backend) are not entered."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if any(name == prefix or name.startswith(prefix + ".") for prefix in skip):
            continue
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


def backends() -> tuple[str, ...]:
    """The framework names of train/backends/<name>/."""
    base = PACKAGE_DIR / "train" / "backends"
    return tuple(sorted(d.name for d in base.iterdir() if (d / "__init__.py").is_file()))


def stage_code(command: str, root: str = "src/cnnrepro", framework: str | None = None) -> list[str]:
    """The code files `cnnrepro <command>` runs, as paths under `root`, sorted; with `framework`, those of a
    job that runs that backend only."""
    skip: tuple[str, ...] = ()
    if framework is not None:
        if framework not in backends():
            raise ValueError(f"unknown framework {framework!r} (known: {', '.join(backends())})")
        skip = tuple(f"{BACKENDS_PACKAGE}.{other}" for other in backends() if other != framework)
    files = imported_files(ENTRY_MODULE, skip) | imported_files(command_module(command), skip)
    return sorted(f"{root}/{file.relative_to(PACKAGE_DIR).as_posix()}" for file in files)


# A folder is listed whole when a stage imports at least this share of its modules: a few more reruns (an
# edit of a module the stage does not import) for far fewer lines, and both tools watch the same files
# (`stage_files`). Never a folder that holds both backends (the package, train/, train/backends/).
MOSTLY_IMPORTED = 0.5
MIXED_FOLDERS = ("", "train", "train/backends")


def code_roots(files: list[str], root: str = "src/cnnrepro") -> list[str]:
    """The same code as fewer paths: a folder replaces its files when most of its modules are among them
    (MOSTLY_IMPORTED), unless it holds both backends."""
    wanted = set(files)

    def whole(folder: Path) -> bool:
        if folder.relative_to(PACKAGE_DIR).as_posix().removeprefix(".") in MIXED_FOLDERS:
            return False
        modules = {f"{root}/{p.relative_to(PACKAGE_DIR).as_posix()}" for p in folder.rglob("*.py")}
        return len(modules & wanted) >= MOSTLY_IMPORTED * len(modules)

    roots = set()
    for file in wanted:
        best = file
        for parent in Path(file).relative_to(root).parents[:-1]:
            if whole(PACKAGE_DIR / parent):
                best = f"{root}/{parent.as_posix()}"
        roots.add(best)
    return sorted(r for r in roots if not any(r.startswith(other + "/") for other in roots))


def expand_roots(roots: list[str], project: Path = PACKAGE_DIR.parents[1]) -> list[str]:
    """The .py files under code roots (what Snakemake watches: a folder's own mtime misses edits inside)."""
    files: list[str] = []
    for entry in roots:
        path = project / entry
        found = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        files += [p.relative_to(project).as_posix() for p in found]
    return files


# --- dvc.yaml ------------------------------------------------------------------------------------------

# Each stage's block in dvc.yaml: a top-level key of `stages:` (two-space indent); its deps, as a block or a
# flow sequence, and its params list (an anchor kept; an alias `*name` left alone).
STAGE_BLOCK = re.compile(r"(?m)^(?=  \w[\w-]*:\s*$)")
DEPS = re.compile(r"(?m)^(?P<indent> +)deps:(?: \[[^\]]*\]\n| *\n(?:(?P=indent)  - .*\n)+)")
PARAMS = re.compile(r"(?m)^(?P<indent> +)params:(?P<anchor> &\w+)?(?: \[[^\]]*\]\n|\n(?:(?P=indent)  - .*\n)+)")
FRAMEWORK_DEP = "src/cnnrepro/train/backends/${item.framework}"
WIDTH = 118


def _flow(key: str, items: list[str], indent: str, anchor: str = "") -> str:
    """`key:` as a YAML flow sequence wrapped at WIDTH, `${...}` entries quoted; `anchor` e.g. ` &name`."""
    words = [f'"{item}"' if "$" in item else item for item in items]
    lines, line = [], f"{indent}{key}:{anchor} ["
    for i, word in enumerate(words):
        piece = word + ("]" if i == len(words) - 1 else ",")
        if not line.endswith("[") and len(line) + 1 + len(piece) > WIDTH:
            lines.append(line)
            line = f"{indent}  {piece}"
        else:
            line += ("" if line.endswith("[") else " ") + piece
    return "\n".join([*lines, line]) + "\n"


def framework_code(command: str, framework: str) -> list[str]:
    """The code of a job that runs one backend, as DVC can write it once for every framework (a matrix over
    `${item.framework}`): the backend's package, then everything outside the backends that any backend's
    job imports (what only one of them imports, e.g. the PyTorch GPU claim, is listed for both)."""
    own = f"src/cnnrepro/train/backends/{framework}"
    backend_code = [f for f in stage_code(command, framework=framework) if f.startswith(own + "/")]
    outside = sorted(
        {f for fw in backends() for f in stage_code(command, framework=fw) if "/train/backends/" + fw + "/" not in f}
    )
    return sorted(backend_code + outside)


def stage_files(command: str, framework: str | None = None) -> list[str]:
    """The code files a stage depends on in both tools: its walk (one backend's job: `framework_code`),
    with each folder it mostly imports taken whole (`code_roots`), as files (what Snakemake watches)."""
    files = framework_code(command, framework) if framework else stage_code(command)
    return expand_roots(code_roots(files))


def stage_deps(name: str, data: list[str], framework_dep: str = FRAMEWORK_DEP) -> list[str]:
    """A stage's deps as dvc.yaml lists them: its data, then its code roots (a training job's own backend as
    `framework_dep`, `${item.framework}` or, in a matrix over runs, `${item.run.framework}`, then the code
    outside the backends)."""
    from cnnrepro.orchestration.stages import stage_of

    stage = stage_of(name)
    if not stage.per_framework:
        return [*data, *code_roots(stage_code(stage.command))]
    framework = backends()[0]
    own = f"src/cnnrepro/train/backends/{framework}"
    roots = code_roots(framework_code(stage.command, framework))
    return [*data, framework_dep, *(r for r in roots if r != own)]


def _params_block(name: str, match: re.Match[str]) -> str:
    from cnnrepro.orchestration.stages import stage_of

    keys = [key.replace("{dataset}", "${item}") for key in stage_of(name).params]
    return _flow("params", keys, match.group("indent"), match.group("anchor") or "")


def rewrite_dvc_yaml(text: str) -> str:
    """dvc.yaml with each stage's code deps and params rewritten from the code walk and the stages table
    (cnnrepro.orchestration.stages); its data deps (anything not under src/) are kept as written."""
    import yaml

    stages = yaml.safe_load(text)["stages"]
    out = []
    for block in STAGE_BLOCK.split(text):
        header = re.match(r"  (\w[\w-]*):\s*$", block.split("\n", 1)[0])
        if header and header.group(1) in stages:
            name = header.group(1)
            spec = stages[name].get("do", stages[name])
            data = [str(d) for d in spec.get("deps", []) if not str(d).startswith("src/")]
            framework_dep = FRAMEWORK_DEP.replace("item.", "item.run.") if "${item.run.framework}" in block else None
            deps = stage_deps(name, data, framework_dep or FRAMEWORK_DEP)
            block = DEPS.sub(lambda m, deps=deps: _flow("deps", deps, m.group("indent")), block, count=1)
            block = PARAMS.sub(lambda m, name=name: _params_block(name, m), block, count=1)
        out.append(block)
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cnnrepro.orchestration.stage_code", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--write", type=Path, metavar="DVC_YAML", help="rewrite this dvc.yaml's code deps and params")
    parser.add_argument("commands", nargs="*", help="print the code of these commands")
    args = parser.parse_args(argv)
    if args.write:
        from cnnrepro.fsutil import atomic_path

        text = rewrite_dvc_yaml(args.write.read_text())
        with atomic_path(args.write) as tmp:
            Path(tmp).write_text(text)
    for command in args.commands:
        print("\n".join(stage_code(command)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
