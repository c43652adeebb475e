# Activations, filter patterns and class activation heatmaps from the torch runs of the first seed
# (params.yaml `visualize`). Inputs: the runs it draws that params trains; others are skipped and
# listed in reports/figures/index.json. DVC depends on the whole runs/ folder instead (dvc.yaml
# cannot list deps conditionally); tests/test_dag_parity.py checks that it covers these.
VISUALIZE = config["visualize"]
TRAINED = {variant for group in VARIANT_GROUPS.values() for variant in group}


def visualize_runs():
    if "torch" not in TRAIN["frameworks"]:
        return []
    wanted = dict.fromkeys([VISUALIZE["convnet"], *VISUALIZE["heatmaps"]["variants"]])
    return [f"runs/torch/{v}/seed{TRAIN['seeds'][0]}/metrics.json" for v in wanted if v in TRAINED]


rule visualize:
    input:
        visualize_runs(),
        rules.split.output.book,
        code_of("visualize"),
    output:
        directory("reports/figures"),
    params:
        tracked=tracked_params("visualize"),
    log:
        "logs/visualize.log",
    shell:
        "cnnrepro visualize --runs runs --data data/split/book --out reports/figures > {log} 2>&1"
