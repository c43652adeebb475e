# Activations, filter patterns and class activation heatmaps from the torch runs of the first seed
# (params.yaml `visualize`). Inputs: the runs it draws that params trains; others are skipped and
# listed in reports/figures/index.json. DVC depends on the whole runs/ folder instead (dvc.yaml
# cannot list deps conditionally); tests/test_dag_parity.py checks that it covers these. visualize_runs: common.smk.
rule visualize:
    input:
        visualize_runs(),
        rules.split.output.book,
        code_of("visualize"),
        params_stamp("visualize"),
    output:
        report(
            directory("reports/figures"),
            patterns=["{kind}/{name}.png"],
            caption="../report/figures.rst",
            category="Results",
            subcategory="Figures",
            labels={"kind": "{kind}", "figure": "{name}"},
        ),
    params:
        tracked=tracked_params("visualize"),
    log:
        "logs/visualize.log",
    shell:
        "cnnrepro visualize --runs runs --data data/split/book --out reports/figures > {log} 2>&1"
