# One job per (framework, variant, ablation, seed) of params ablations.run (cnnrepro.train.ablations.planned_runs:
# checked against ablations.definitions), one rule per data group, like train_<group>: the same command plus
# --ablation; fine_tuning continues from feature_extraction_augmented under the SAME ablation. The helpers
# (ablation_outputs, planned) are in common.smk.
ABLATION_OUTPUTS = run_files(ABLATION_RUN_DIR)
ABLATION_LOG = "logs/train/{framework}/{variant}/ablation-{ablation}/seed{seed}.log"


for group, spec in TRAINING_GROUPS.items():
    parent = init_from(group, ABLATION_RUN_DIR)

    rule:
        name:
            f"ablate_{group}"
        input:
            data=spec.data_inputs,
            parent=[f"{parent}/artifacts"] if parent else [],
            code=code_of("ablate"),
            stamp=params_stamp(f"ablate_{group}"),
        output:
            **ABLATION_OUTPUTS,
        wildcard_constraints:
            variant=planned(group, "variant"),
            ablation=planned(group, "ablation"),
        params:
            tracked=tracked_params(f"ablate_{group}"),
            data=data_param(spec),
        threads: 4
        resources:
            gpu=TRAIN_GPUS,
            mem_mb=MEM_MB[group],
        log:
            ABLATION_LOG,
        shell:
            train_command(ABLATION_RUN_DIR, parent)
