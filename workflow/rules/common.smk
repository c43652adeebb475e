# Names and paths shared by the rules; the variant lists and seeds come from params.yaml only.
TRAIN = config["train"]
VARIANT_GROUPS = TRAIN["variants"]
# The code files each `cnnrepro <command>` imports (src/cnnrepro/orchestration/stage_code.py walks them; dvc.yaml
# lists the same, as folders where a stage imports the whole of one).
from cnnrepro.orchestration.stage_code import stage_code

RUN_DIR = "runs/{framework}/{variant}/seed{seed}"
ABLATION_RUN_DIR = "runs/{framework}/{variant}/ablation-{ablation}/seed{seed}"


# The params.yaml values each job depends on: its stage's keys in cnnrepro.orchestration.stages, the one
# table dvc.yaml's params lists are written from too. As a rule's `params`, Snakemake reruns the job when
# one changes (rerun trigger "params"), as DVC does. `{dataset}` in a key is the rule's dataset wildcard.
from cnnrepro.orchestration.stages import TRAINING_GROUPS, stage_of


def _param_value(key):
    value = config
    for part in key.split("."):
        value = value[part]
    return value


def tracked_params(stage):
    """A params function for the jobs of `stage`: {key: value} of every params key its stage tracks."""
    keys = stage_of(stage).params

    def values(wildcards):
        dataset = getattr(wildcards, "dataset", None) if wildcards is not None else None
        return {key.format(dataset=dataset) if dataset else key: _param_value(key.format(dataset=dataset)) for key in keys}

    return values


# The params stamp of a rule's jobs (cnnrepro.orchestration.tool_state): .cnnrepro/params/<stage>.json holds the
# values its stage tracks and is dated now only when dvc.lock says DVC made the outputs with other values, so a
# param edit after `dvc repro` reruns the job here too (Snakemake has no metadata for what DVC made).
from cnnrepro.orchestration.tool_state import write_params_stamp


def params_stamp(stage):
    """An input naming the stage's params stamp (a function of the dataset wildcard for a per-dataset stage).
    Every stamp is written here, while the Snakefile is parsed: Snakemake lists a folder's files once, so a
    stamp first written while the DAG is built would count as missing."""
    if any("{dataset}" in key for key in stage_of(stage).params):
        from types import SimpleNamespace

        from cnnrepro.data.download import DATASETS

        values = tracked_params(stage)
        stamps = {d: write_params_stamp(f"{stage}@{d}", values(SimpleNamespace(dataset=d))) for d in DATASETS}
        return lambda wildcards: stamps[wildcards.dataset]
    return write_params_stamp(stage, tracked_params(stage)(None))


def code_of(stage):
    """The code files a rule's jobs depend on (dvc.yaml's code deps, as files): one backend's for a training job."""
    from cnnrepro.orchestration.stage_code import stage_files

    command = stage_of(stage).command
    if stage_of(stage).per_framework:
        return lambda wildcards: stage_files(command, wildcards.framework)
    return stage_files(command)


# The seeds `cnnrepro reproduce --decide` added to single rows (checked as the CLI checks them); dvc.yaml's
# train_added stage makes the same runs, here the train_<group> rules do.
from cnnrepro.variants.added_seeds import ADDED_SEEDS_FILE, check_in_grid, read_added_seeds

try:
    ADDED_SEEDS = read_added_seeds(ADDED_SEEDS_FILE)
    check_in_grid(ADDED_SEEDS, TRAIN["frameworks"], [v for vs in VARIANT_GROUPS.values() for v in vs], ADDED_SEEDS_FILE)
except ParamsError as exc:
    print(f"cnnrepro pipeline: error: {exc}", file=sys.stderr)
    sys.exit(1)


def run_outputs(group):
    """Every run output file of one variant group: params' grid of frameworks and seeds, and the added seeds."""
    grid = expand(
        f"{RUN_DIR}/metrics.json",
        framework=TRAIN["frameworks"],
        variant=VARIANT_GROUPS[group],
        seed=TRAIN["seeds"],
    )
    added = [
        f"{RUN_DIR.format(framework=a.framework, variant=a.variant, seed=a.seed)}/metrics.json"
        for a in ADDED_SEEDS
        if a.variant in VARIANT_GROUPS[group]
    ]
    return grid + [path for path in added if path not in grid]


def one_of(names):
    """A wildcard constraint matching exactly these names (none matches nothing)."""
    return "|".join(names) if names else "(?!)"


wildcard_constraints:
    seed=r"\d+",
    framework="|".join(TRAIN["frameworks"]),


# GPUs: a training job takes 1 when it will train on an NVIDIA GPU (train.device auto/cuda and a GPU
# visible here), else 0. A local run (no --jobs: Snakemake sets `nodes` only for cluster executors)
# gets a global limit of train.runs_per_gpu trainings per visible GPU, unless the user gave one
# (--resources gpu=N), so `--cores 8` on one GPU runs up to runs_per_gpu trainings side by side.
# Not on a cluster: a global limit also caps each job's request, and the submit host's GPUs say
# nothing of the nodes' (profiles/slurm asks for them).
from cnnrepro.orchestration.gpu_slots import count_visible, gpus_per_training_job, training_slots

N_GPUS = count_visible()
TRAIN_GPUS = gpus_per_training_job(TRAIN["device"], N_GPUS)
RUNS_PER_GPU = TRAIN.get("runs_per_gpu", 1)
if workflow.nodes is None and "gpu" not in workflow.global_resources:
    workflow.register_resource("gpu", training_slots(N_GPUS, RUNS_PER_GPU))


# --- training jobs (train.smk, ablations.smk) ----------------------------------------------------------------
import os

from cnnrepro.train.ablations import planned_runs

ABLATION_RUNS = planned_runs(config)


def run_files(run_dir):
    """The outputs of one training job writing to `run_dir` (cnnrepro.run_outputs)."""
    return dict(
        artifacts=directory(f"{run_dir}/artifacts"),
        run_info=f"{run_dir}/run_info.json",
        metrics=f"{run_dir}/metrics.json",
        history=f"{run_dir}/history.csv",
    )


def init_from(group, run_dir):
    """The run a group's jobs continue from (`run_dir` with the variant replaced), or None."""
    parent = TRAINING_GROUPS[group].continues_from
    return run_dir.replace("{variant}", parent) if parent else None


def data_param(spec):
    """--data of a group's jobs, from their data inputs as Snakemake hands them over (a storage plugin may
    move them): the input that is the data folder, or else the folder of the first data file."""
    if spec.data_dir in spec.data_inputs:
        index = spec.data_inputs.index(spec.data_dir)
        return lambda wildcards, input: input.data[index]
    return lambda wildcards, input: os.path.dirname(input.data[0])


def train_command(run_dir, parent):
    """The shell command of a training job writing to `run_dir` (an ablation's adds --ablation), continuing
    from the run in `parent` when there is one."""
    out, cmd = run_dir.replace("{", "{wildcards."), "cnnrepro train --framework {wildcards.framework}"
    cmd += f" --variant {{wildcards.variant}} --seed {{wildcards.seed}} --data {{params.data}} --out {out}"
    if "{ablation}" in run_dir:
        cmd += " --ablation {wildcards.ablation}"
    if parent:
        cmd += f" --init-from {parent.replace('{', '{wildcards.')}"
    return f"{cmd} > {{log}} 2>&1"


def ablation_outputs():
    """metrics.json of every planned ablation run, for every framework and seed in params."""
    return [
        f"{ABLATION_RUN_DIR.format(framework=f, variant=v, ablation=a, seed=s)}/metrics.json"
        for _, v, a in ABLATION_RUNS
        for f in TRAIN["frameworks"]
        for s in TRAIN["seeds"]
    ]


def planned(group, what):
    """Variant or ablation names planned in one group, as a wildcard constraint."""
    names = sorted({v if what == "variant" else a for g, v, a in ABLATION_RUNS if g == group})
    return one_of(names)


# --- visualize ------------------------------------------------------------------------------------------------
VISUALIZE = config["visualize"]
TRAINED = {variant for group in VARIANT_GROUPS.values() for variant in group}


def visualize_runs():
    """metrics.json of the torch runs of the first seed that visualize draws and params trains."""
    if "torch" not in TRAIN["frameworks"]:
        return []
    wanted = dict.fromkeys([VISUALIZE["convnet"], *VISUALIZE["heatmaps"]["variants"]])
    return [f"runs/torch/{v}/seed{TRAIN['seeds'][0]}/metrics.json" for v in wanted if v in TRAINED]
