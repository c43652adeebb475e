# One job per (framework, variant, seed); the groups differ only in the data they read.
RUN_OUTPUTS = dict(
    artifacts=directory(RUN_DIR + "/artifacts"),
    run_info=RUN_DIR + "/run_info.json",
    metrics=RUN_DIR + "/metrics.json",
    history=RUN_DIR + "/history.csv",
)
TRAIN_CMD = (
    "cnnrepro train --framework {wildcards.framework} --variant {wildcards.variant} --seed {wildcards.seed}"
    " --data {params.data} --out " + RUN_DIR.replace("{", "{wildcards.")
)
LOG = "logs/train/{framework}/{variant}/seed{seed}.log"
# resources: gpu from common.smk (0 or 1); mem_mb is a peak-memory estimate per job, requested from a
# cluster scheduler and enforced locally only under --resources mem_mb=N.


rule train_pets:
    input:
        "data/split/book",
        stage_code("train"),
    output:
        **RUN_OUTPUTS,
    wildcard_constraints:
        variant=one_of(VARIANT_GROUPS["pets"]),
    params:
        tracked=tracked_params("train_pets"),
        data="data/split/book",
    threads: 4
    resources:
        gpu=TRAIN_GPUS,
        mem_mb=6000,
    log:
        LOG,
    shell:
        TRAIN_CMD + " > {log} 2>&1"


rule train_pets_fine_tuning:
    input:
        "data/split/book",
        "runs/{framework}/feature_extraction_augmented/seed{seed}/artifacts",
        stage_code("train"),
    output:
        **RUN_OUTPUTS,
    wildcard_constraints:
        variant=one_of(VARIANT_GROUPS["pets_fine_tuning"]),
    params:
        tracked=tracked_params("train_pets_fine_tuning"),
        data="data/split/book",
    threads: 4
    resources:
        gpu=TRAIN_GPUS,
        mem_mb=6000,
    log:
        LOG,
    shell:
        TRAIN_CMD
        + " --init-from runs/{wildcards.framework}/feature_extraction_augmented/seed{wildcards.seed} > {log} 2>&1"


rule train_idx:
    input:
        "data/prepared/mnist.npz",
        "data/prepared/fashion_mnist.npz",
        stage_code("train"),
    output:
        **RUN_OUTPUTS,
    wildcard_constraints:
        variant=one_of(VARIANT_GROUPS["idx"]),
    params:
        tracked=tracked_params("train_idx"),
        data="data/prepared",
    threads: 4
    resources:
        gpu=TRAIN_GPUS,
        mem_mb=3000,
    log:
        LOG,
    shell:
        TRAIN_CMD + " > {log} 2>&1"


rule train_keras_example:
    input:
        "data/split/keras_example",
        stage_code("train"),
    output:
        **RUN_OUTPUTS,
    wildcard_constraints:
        variant=one_of(VARIANT_GROUPS["keras_example"]),
    params:
        tracked=tracked_params("train_keras_example"),
        data="data/split/keras_example",
    threads: 4
    resources:
        gpu=TRAIN_GPUS,
        mem_mb=12000,
    log:
        LOG,
    shell:
        TRAIN_CMD + " > {log} 2>&1"
