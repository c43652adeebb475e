"""`cnnrepro <command>`: one subcommand per pipeline stage, plus tools around the runs.

Each command lives in its own module exposing `add_arguments(parser)` and `main(args)`. Only the
chosen module is imported, so `cnnrepro download` never pays for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cnnrepro.commands import COMMANDS, PIPELINE_STAGES
from cnnrepro.errors import CnnreproError


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnrepro",
        description="Reproduce the classic convnet results and compare them with the documented figures.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {name:<14} {help_}" for name, (_, help_) in COMMANDS.items()),
    )
    parser.add_argument("command", choices=list(COMMANDS), metavar="command")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    name = argv[0]
    if name not in COMMANDS:
        top.error(f"unknown command {name!r} (known: {', '.join(COMMANDS)})")
    module_name, help_ = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"cnnrepro {name}", description=help_)
    parser.add_argument("--params", default="params.yaml", help="the pipeline's params file")
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        if name in PIPELINE_STAGES:
            from cnnrepro.orchestration.pipeline_lock import guard_stage

            guard_stage(name)
        return int(module.main(args) or 0)
    except CnnreproError as exc:
        print(f"cnnrepro {name}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        # A read or write no stage wraps (disk full, read-only folder): still one line naming file and cause.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"cnnrepro {name}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cnnrepro {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
