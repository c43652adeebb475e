# One job per (framework, variant, ablation, seed) of params ablations.run (cnnrepro.train.ablations.planned_runs:
# checked against ablations.definitions), one rule per data group, like train_<group>: the same command plus
# --ablation; fine_tuning continues from feature_extraction_augmented under the SAME ablation.
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


for group, spec in TRAINING_GROUPS.items():
    parent = init_from(group, ABLATION_RUN_DIR)

    rule:
        name:
            f"ablate_{group}"
        input:
            *spec.data_inputs,
            *([parent + "/artifacts"] if parent else []),
            code_of("ablate"),
        output:
            **ABLATION_OUTPUTS,
        wildcard_constraints:
            variant=planned(group, "variant"),
            ablation=planned(group, "ablation"),
        params:
            tracked=tracked_params(f"ablate_{group}"),
            data=spec.data_dir,
        threads: 4
        resources:
            gpu=TRAIN_GPUS,
            mem_mb=MEM_MB[group],
        log:
            ABLATION_LOG,
        shell:
            ABLATION_CMD + (" --init-from " + parent.replace("{", "{wildcards.") if parent else "") + " > {log} 2>&1"
