"""`cnnrepro <command>`: one subcommand per pipeline stage, plus tools around the runs.

Each command lives in its own module exposing `add_arguments(parser)` and `main(args)`. Only the
chosen module is imported, so `cnnrepro download` never pays for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cnnrepro.errors import CnnreproError

# name -> (module, one-line help). The order is the pipeline's.
COMMANDS: dict[str, tuple[str, str]] = {
    "download": ("cnnrepro.data.download", "fetch PetImages, MNIST and Fashion-MNIST, verified"),
    "clean": ("cnnrepro.data.clean", "decode every PetImages file; keep, convert or quarantine it"),
    "split": ("cnnrepro.data.split", "build the book's 1000/500/500 split and the Keras example's 80/20"),
    "prepare-mnist": ("cnnrepro.data.mnist", "MNIST / Fashion-MNIST idx files to checked arrays"),
    "tracking": ("cnnrepro.tracking.cli", "create the MLflow store; open/close the pipeline's parent run"),
    "variants": ("cnnrepro.variants.cli", "list the named variants with their documented figures"),
    "train": ("cnnrepro.train.cli", "train one (variant, seed) and log it to MLflow"),
    "evaluate": ("cnnrepro.inference.evaluate", "score a trained run on a folder or the MNIST test set"),
    "predict": ("cnnrepro.inference.predict", "label single images with a trained run"),
    "visualize": ("cnnrepro.visualize", "activations, filter patterns and class activation heatmaps"),
    "report": ("cnnrepro.report.build", "measured vs documented: comparison.{md,html,csv,json}"),
    "bench": ("cnnrepro.bench", "measure training speed against the device's peak"),
    "reproduce": (
        "cnnrepro.orchestration.reproduce.cli",
        "the whole pipeline under Snakemake: plan, then live progress",
    ),
}


# Commands that are pipeline stages: they refuse to run while another pipeline holds this directory.
PIPELINE_STAGES = frozenset({"download", "clean", "split", "prepare-mnist", "train", "visualize", "report"})


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
