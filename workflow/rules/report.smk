REPORT_OUTPUTS = [
    "reports/comparison.md",
    "reports/comparison.html",
    "reports/comparison.csv",
    "reports/comparison.json",
    "reports/effects.csv",
]


rule report:
    input:
        [run_outputs(group) for group in VARIANT_GROUPS],
        ablation_outputs(),
        rules.clean.output.summary,
        rules.visualize.output,
        str(ADDED_SEEDS_FILE),
        code_of("report"),
    output:
        *REPORT_OUTPUTS,
        directory("reports/plots"),
    params:
        tracked=tracked_params("report"),
    log:
        "logs/report.log",
    shell:
        "cnnrepro report --runs runs --clean-summary data/clean/summary.json --out reports > {log} 2>&1"
