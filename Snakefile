# The pipeline under Snakemake. dvc.yaml describes the same DAG for DVC;
# tests/test_dag_parity.py fails when the two drift.
from snakemake.utils import min_version, validate

min_version("8.0")


configfile: "params.yaml"


validate(config, "workflow/schemas/params.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/ablations.smk"
include: "workflow/rules/visualize.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        REPORT_OUTPUTS,


# Hooks of a real run (a dry run, or a run with nothing to do, calls none of them). Before any job:
# one pipeline per directory (.cnnrepro/pipeline.lock, named in the error a second one gets), the
# MLflow store and experiment created once, runs of dead jobs marked FAILED, and one parent run
# per invocation, exported to the jobs as CNNREPRO_PARENT_RUN_ID (kept, and left open, when the
# user set it). After: the parent run closed FINISHED or FAILED. See src/cnnrepro/pipeline_run.py.
onstart:
    from cnnrepro import pipeline_run

    pipeline_run.begin("snakemake")


onsuccess:
    from cnnrepro import pipeline_run

    pipeline_run.finish("FINISHED")


onerror:
    from cnnrepro import pipeline_run

    pipeline_run.finish("FAILED")
