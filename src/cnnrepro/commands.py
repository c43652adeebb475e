"""The commands of `cnnrepro`: name -> (the module that implements it, its one-line help), in the pipeline's
order, and which of them are pipeline stages. Read by the dispatcher (cnnrepro.cli) and by the stages'
code walk (cnnrepro.orchestration.stage_code).
"""

from __future__ import annotations

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
    "visualize": ("cnnrepro.visualize.cli", "activations, filter patterns and class activation heatmaps"),
    "report": ("cnnrepro.report.build", "measured vs documented: comparison.{md,html,csv,json}"),
    "bench": ("cnnrepro.bench.cli", "measure training speed against the device's peak"),
    "reproduce": (
        "cnnrepro.orchestration.reproduce.cli",
        "the whole pipeline under Snakemake: plan, then live progress",
    ),
}


# Commands that are pipeline stages: they refuse to run while another pipeline holds this directory.
PIPELINE_STAGES = frozenset({"download", "clean", "split", "prepare-mnist", "train", "visualize", "report"})
