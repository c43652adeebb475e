"""A throwaway copy of the pipeline on tiny fixture data, for running the real Snakemake and DVC."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from cnnrepro.data.idx import PINS_ENV

from .conftest import PROJECT_ROOT
from .helpers_data import make_idx_gz_dir, make_petimages_zip, write_idx_pins

# A port nothing listens on: any attempt to use the network fails at once instead of hanging.
UNREACHABLE = "http://127.0.0.1:9"


SHIPPED_PARAMS = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
ARCHIVE = SHIPPED_PARAMS["download"]["petimages"]["archive"]


def make_mirror(
    root: Path, archive: str = ARCHIVE, n_per_class: int = 14, n_mnist_train: int = 120, learnable: bool = False
) -> Path:
    """A mirror laid out like ../shared/datasets, with tiny data and every PetImages fault kind (MNIST's
    images random, or `learnable`: a label a network learns in a few steps, and 200 test images).

    The tiny idx files cannot match the pinned hashes of the real MNIST, so their own hashes are written
    to `root/idx_pins.json`, which `run()` hands to the stages through CNNREPRO_IDX_PINS.
    """
    mirror = root / "mirror"
    make_petimages_zip(mirror / "petimages" / archive, n_per_class=n_per_class, with_faults=True)
    n_test = 200 if learnable else 40
    mnist = make_idx_gz_dir(mirror / "mnist", n_train=n_mnist_train, n_test=n_test, learnable=learnable)
    fashion = make_idx_gz_dir(mirror / "fashion-mnist", n_train=120, n_test=40)
    write_idx_pins(root / "idx_pins.json", {"mnist": mnist.pins, "fashion_mnist": fashion.pins})
    return mirror


def tiny_params(mirror: Path) -> dict[str, Any]:
    """The shipped params with tiny splits, tiny training budgets, and no usable network."""
    params = copy.deepcopy(SHIPPED_PARAMS)
    params["data"]["mirror"] = str(mirror)
    petimages = params["download"]["petimages"]
    petimages["sha256"] = None
    petimages["urls"] = [f"{UNREACHABLE}/{petimages['archive']}"]
    params["download"]["mnist"]["urls"] = [f"{UNREACHABLE}/mnist/"]
    params["download"]["fashion_mnist"]["urls"] = [f"{UNREACHABLE}/fashion-mnist/"]
    params["download"]["retries"] = 0
    params["download"]["timeout_s"] = 2
    params["split"]["book"] = {"train": 6, "validation": 3, "test": 3}
    train = params["train"]
    train["seeds"] = [0]
    train["vgg16"]["url"] = f"{UNREACHABLE}/vgg16_notop.h5"
    tiny = {"epochs": 1, "steps_per_epoch": 2, "validation_steps": 1, "batch_size": 4}
    trained_here = ("baseline", "augmentation", "mnist_convnet", "mnist_dense", "lenet")
    train["overrides"] = {name: dict(tiny) for name in trained_here}
    params["tracking"]["uri"] = "sqlite:///mlflow.db"
    # A logged model costs a second or two per job; the tests that load one turn it back on.
    params["tracking"]["log_models"] = False
    # One cheap ablation job (lenet: in every test's variant selection), not the shipped default's set.
    params["ablations"]["run"] = {
        "pets": [],
        "pets_fine_tuning": [],
        "idx": [{"variant": "lenet", "ablation": "naive_torch_port"}],
        "keras_example": [],
    }
    return params


def make_project(tmp: Path, params: dict[str, Any] | None = None) -> Path:
    """Copy the pipeline definition (not the data, runs or stores) into `tmp/project`, as a git + DVC repo."""
    project = tmp / "project"
    project.mkdir(parents=True)
    for name in ("Snakefile", "dvc.yaml", "added_seeds.yaml"):
        shutil.copy(PROJECT_ROOT / name, project / name)
    shutil.copytree(PROJECT_ROOT / "workflow", project / "workflow")
    shutil.copytree(PROJECT_ROOT / "profiles", project / "profiles")
    # Code dependencies are hashed by DVC and listed as Snakemake inputs, so they must exist in the copy.
    shutil.copytree(PROJECT_ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    params = params if params is not None else tiny_params(make_mirror(tmp))
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], project)
    run(["dvc", "init", "-q"], project)
    run(["dvc", "config", "core.analytics", "false"], project)
    # What git and DVC leave alone (outputs, stores, Snakemake's markers), as in the project itself.
    for name in (".gitignore", ".dvcignore"):
        shutil.copy(PROJECT_ROOT / name, project / name)
    return project


def run(cmd: list[str], cwd: Path, timeout: int = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command in the project copy, with the fixture's idx pins when `make_mirror` wrote them."""
    env = dict(os.environ)
    pins = cwd.parent / "idx_pins.json"
    if pins.exists():
        env[PINS_ENV] = str(pins)
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result
