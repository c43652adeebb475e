# One job per (framework, variant, seed), one rule per data group (train_<group>): the groups differ only in
# the data they read and the run they continue from (cnnrepro.orchestration.stages.TRAINING_GROUPS, from the
# registry), so the rules are written once, here, in a loop.
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
MEM_MB = {"pets": 6000, "pets_fine_tuning": 6000, "idx": 3000, "keras_example": 12000}


def init_from(group, run_dir):
    """The run a group's jobs continue from (`run_dir` with the variant replaced), or None."""
    parent = TRAINING_GROUPS[group].continues_from
    return run_dir.replace("{variant}", parent) if parent else None


for group, spec in TRAINING_GROUPS.items():
    parent = init_from(group, RUN_DIR)

    rule:
        name:
            f"train_{group}"
        input:
            *spec.data_inputs,
            *([parent + "/artifacts"] if parent else []),
            code_of("train"),
        output:
            **RUN_OUTPUTS,
        wildcard_constraints:
            variant=one_of(VARIANT_GROUPS[group]),
        params:
            tracked=tracked_params(f"train_{group}"),
            data=spec.data_dir,
        threads: 4
        resources:
            gpu=TRAIN_GPUS,
            mem_mb=MEM_MB[group],
        log:
            LOG,
        shell:
            TRAIN_CMD + (" --init-from " + parent.replace("{", "{wildcards.") if parent else "") + " > {log} 2>&1"
