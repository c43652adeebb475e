# Names and paths shared by the rules; the variant lists and seeds come from params.yaml only.
TRAIN = config["train"]
VARIANT_GROUPS = TRAIN["variants"]
# The code files each `cnnrepro <command>` imports (src/cnnrepro/orchestration/stage_code.py walks them; dvc.yaml
# lists the same, as folders where a stage imports the whole of one).
from cnnrepro.orchestration.stage_code import stage_code

RUN_DIR = "runs/{framework}/{variant}/seed{seed}"


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
    """A params function for the rule `stage`: {key: value} of every params key its stage tracks."""
    keys = stage_of(stage).params

    def values(wildcards):
        dataset = getattr(wildcards, "dataset", None)
        return {key.format(dataset=dataset) if dataset else key: _param_value(key.format(dataset=dataset)) for key in keys}

    return values


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
        RUN_DIR + "/metrics.json",
        framework=TRAIN["frameworks"],
        variant=VARIANT_GROUPS[group],
        seed=TRAIN["seeds"],
    )
    added = [
        RUN_DIR.format(framework=a.framework, variant=a.variant, seed=a.seed) + "/metrics.json"
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
