# One job per (framework, variant, ablation, seed) of params ablations.run (cnnrepro.train.ablations.planned_runs:
# checked against ablations.definitions, for the variants train.variants trains). Same command as a faithful
# run plus --ablation; fine_tuning continues from feature_extraction_augmented under the SAME ablation.
from cnnrepro.train.ablations import planned_runs

ABLATION_RUNS = planned_runs(config)
ABLATION_RUN_DIR = "runs/{framework}/{variant}/ablation-{ablation}/seed{seed}"
ABLATION_OUTPUTS = dict(
    artifacts=directory(ABLATION_RUN_DIR + "/artifacts"),
    run_info=ABLATION_RUN_DIR + "/run_info.json",
    metrics=ABLATION_RUN_DIR + "/metrics.json",
    history=ABLATION_RUN_DIR + "/history.csv",
)
ABLATION_CMD = (
    "cnnrepro train --framework {wildcards.framework} --variant {wildcards.variant} --seed {wildcards.seed}"
    " --data {params.data} --out " + ABLATION_RUN_DIR.replace("{", "{wildcards.") + " --ablation {wildcards.ablation}"
)
ABLATION_LOG = "logs/train/{framework}/{variant}/ablation-{ablation}/seed{seed}.log"


def ablation_outputs():
    """metrics.json of every planned ablation run, for every framework and seed in params."""
    return [
        ABLATION_RUN_DIR.format(framework=f, variant=v, ablation=a, seed=s) + "/metrics.json"
        for _, v, a in ABLATION_RUNS
        for f in TRAIN["frameworks"]
        for s in TRAIN["seeds"]
    ]


def planned(group, what):
    """Variant or ablation names planned in one group, as a wildcard constraint."""
    names = sorted({v if what == "variant" else a for g, v, a in ABLATION_RUNS if g == group})
    return one_of(names)


rule ablate_pets:
    input:
        "data/split/book",
        stage_code("train"),
    output:
        **ABLATION_OUTPUTS,
    wildcard_constraints:
        variant=planned("pets", "variant"),
        ablation=planned("pets", "ablation"),
    params:
        tracked=tracked_params("ablate_pets"),
        data="data/split/book",
    threads: 4
    resources:
        gpu=TRAIN_GPUS,
        mem_mb=6000,
    log:
        ABLATION_LOG,
    shell:
        ABLATION_CMD + " > {log} 2>&1"


rule ablate_pets_fine_tuning:
    input:
        "data/split/book",
        "runs/{framework}/feature_extraction_augmented/ablation-{ablation}/seed{seed}/artifacts",
        stage_code("train"),
    output:
        **ABLATION_OUTPUTS,
    wildcard_constraints:
        variant=planned("pets_fine_tuning", "variant"),
        ablation=planned("pets_fine_tuning", "ablation"),
    params:
        tracked=tracked_params("ablate_pets_fine_tuning"),
        data="data/split/book",
    threads: 4
    resources:
        gpu=TRAIN_GPUS,
        mem_mb=6000,
    log:
        ABLATION_LOG,
    shell:
        ABLATION_CMD
        + " --init-from runs/{wildcards.framework}/feature_extraction_augmented/ablation-{wildcards.ablation}"
        + "/seed{wildcards.seed} > {log} 2>&1"


rule ablate_idx:
    input:
        "data/prepared/mnist.npz",
        "data/prepared/fashion_mnist.npz",
        stage_code("train"),
    output:
        **ABLATION_OUTPUTS,
    wildcard_constraints:
        variant=planned("idx", "variant"),
        ablation=planned("idx", "ablation"),
    params:
        tracked=tracked_params("ablate_idx"),
        data="data/prepared",
    threads: 4
    resources:
        gpu=TRAIN_GPUS,
        mem_mb=3000,
    log:
        ABLATION_LOG,
    shell:
        ABLATION_CMD + " > {log} 2>&1"


rule ablate_keras_example:
    input:
        "data/split/keras_example",
        stage_code("train"),
    output:
        **ABLATION_OUTPUTS,
    wildcard_constraints:
        variant=planned("keras_example", "variant"),
        ablation=planned("keras_example", "ablation"),
    params:
        tracked=tracked_params("ablate_keras_example"),
        data="data/split/keras_example",
    threads: 4
    resources:
        gpu=TRAIN_GPUS,
        mem_mb=12000,
    log:
        ABLATION_LOG,
    shell:
        ABLATION_CMD + " > {log} 2>&1"
