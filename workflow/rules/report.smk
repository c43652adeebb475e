# The report rule. Its outputs wrapped in report() are the Results of `snakemake --report report.html`
# (captions in workflow/report/); summary.json and curves/ are the headline and learning curves as DVC's
# metrics and plots read them (cnnrepro.report.dvc_outputs).
REPORT_OUTPUTS = [
    "reports/comparison.md",
    "reports/comparison.html",
    "reports/comparison.csv",
    "reports/comparison.json",
    "reports/effects.csv",
    "reports/summary.json",
]


rule report:
    input:
        [run_outputs(group) for group in VARIANT_GROUPS],
        ablation_outputs(),
        rules.clean.output.summary,
        rules.visualize.output,
        str(ADDED_SEEDS_FILE),
        code_of("report"),
        params_stamp("report"),
    output:
        "reports/comparison.md",
        report("reports/comparison.html", caption="../report/comparison.rst", category="Results", subcategory="Comparison"),
        report("reports/comparison.csv", caption="../report/table.rst", category="Results", subcategory="Comparison"),
        "reports/comparison.json",
        "reports/effects.csv",
        report("reports/summary.json", caption="../report/summary.rst", category="Results", subcategory="Comparison"),
        report(
            directory("reports/plots"),
            patterns=["{name}.png"],
            caption="../report/plots.rst",
            category="Results",
            subcategory="Plots",
            labels={"plot": "{name}"},
        ),
        directory("reports/curves"),
    params:
        tracked=tracked_params("report"),
    log:
        "logs/report.log",
    shell:
        "cnnrepro report --runs runs --clean-summary data/clean/summary.json --out reports > {log} 2>&1"
