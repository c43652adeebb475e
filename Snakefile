# The pipeline under Snakemake. dvc.yaml describes the same DAG for DVC;
# tests/test_dag_parity.py fails when the two drift.
from snakemake.utils import min_version, validate

min_version("8.0")


configfile: "params.yaml"


validate(config, "workflow/schemas/params.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        REPORT_OUTPUTS,
