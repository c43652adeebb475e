# One job per (framework, variant, seed), one rule per data group (train_<group>): the groups differ only in
# the data they read and the run they continue from (cnnrepro.orchestration.stages.TRAINING_GROUPS, from the
# registry), so the rules are written once, here, in a loop. The helpers are in common.smk.
RUN_OUTPUTS = run_files(RUN_DIR)
LOG = "logs/train/{framework}/{variant}/seed{seed}.log"
# resources: gpu from common.smk (0 or 1); mem_mb is a peak-memory estimate per job, requested from a
# cluster scheduler and enforced locally only under --resources mem_mb=N.
MEM_MB = {"pets": 6000, "pets_fine_tuning": 6000, "idx": 3000, "keras_example": 12000}


for group, spec in TRAINING_GROUPS.items():
    parent = init_from(group, RUN_DIR)

    rule:
        name:
            f"train_{group}"
        input:
            data=spec.data_inputs,
            parent=[f"{parent}/artifacts"] if parent else [],
            code=code_of("train"),
            stamp=params_stamp(f"train_{group}"),
        output:
            **RUN_OUTPUTS,
        wildcard_constraints:
            variant=one_of(VARIANT_GROUPS[group]),
        params:
            tracked=tracked_params(f"train_{group}"),
            data=data_param(spec),
        threads: 4
        resources:
            gpu=TRAIN_GPUS,
            mem_mb=MEM_MB[group],
        log:
            LOG,
        shell:
            train_command(RUN_DIR, parent)
