# Names and paths shared by the rules; the variant lists and seeds come from params.yaml only.
TRAIN = config["train"]
VARIANT_GROUPS = TRAIN["variants"]
# The code files each `cnnrepro <command>` imports (src/cnnrepro/orchestration/stage_code.py walks them; dvc.yaml lists the same).
from cnnrepro.orchestration.stage_code import stage_code

RUN_DIR = "runs/{framework}/{variant}/seed{seed}"


# The params.yaml values each job depends on are the ones dvc.yaml lists for its stage (one list, read
# here): as a rule's `params`, Snakemake reruns the job when one changes (rerun trigger "params"), as DVC
# does. `${item}` in a DVC key is the stage's foreach item, here the rule's `dataset` wildcard.
import yaml as _yaml

with open("dvc.yaml") as _f:
    DVC_STAGES = _yaml.safe_load(_f)["stages"]


def _param_value(key):
    value = config
    for part in key.split("."):
        value = value[part]
    return value


def tracked_params(stage):
    """A params function for the rule of DVC stage `stage`: {key: value} of every params key it tracks."""
    definition = DVC_STAGES[stage].get("do", DVC_STAGES[stage])
    keys = definition.get("params", [])

    def values(wildcards):
        item = getattr(wildcards, "dataset", None)
        resolved = [key.replace("${item}", item) if item else key for key in keys]
        return {key: _param_value(key) for key in resolved}

    return values


def run_outputs(group):
    """Every run output file of one variant group, for every framework and seed in params."""
    return expand(
        RUN_DIR + "/metrics.json",
        framework=TRAIN["frameworks"],
        variant=VARIANT_GROUPS[group],
        seed=TRAIN["seeds"],
    )


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
