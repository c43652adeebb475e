# The pipeline under Snakemake. dvc.yaml describes the same DAG for DVC;
# tests/test_dag_parity.py fails when the two drift.
import sys

from snakemake.utils import min_version, update_config

from cnnrepro.params import DEFAULT_PARAMS, read_params_file, validate_params
from cnnrepro.errors import ParamsError

min_version("8.0")


# `snakemake --report report.html`: this description, and the Results the report and visualize rules mark
# with report() (captions in workflow/report/).
report: "workflow/report/workflow.rst"


# params.yaml is read here, within the project's limits (size, alias expansion, depth: cnnrepro.params.
# read_params_file), instead of by a `configfile:` directive, whose loader has none (an alias bomb grew
# Snakemake past 3 GB). The merge is the directive's: params.yaml under what the command line gives
# (--configfile files, which Snakemake itself parsed before this file, then --config), and
# --replace-workflow-config keeps only the command line's.
try:
    _cli = workflow.config_settings
    if DEFAULT_PARAMS.exists() or not _cli.configfiles:  # the directive's rule, as Snakemake 9 has it
        _params = read_params_file(DEFAULT_PARAMS)
        workflow.configfiles.append(str(DEFAULT_PARAMS))
        if not (_cli.overwrite_config and getattr(_cli, "replace_workflow_config", False)):
            update_config(config, _params)
    update_config(config, _cli.overwrite_config)
    # The project's own check (the schema in workflow/schemas, as under the CLI and DVC): one line naming
    # the key, not Snakemake's validate() dump of the whole schema; then stop before the DAG is built.
    # The files merged into `config`: params.yaml, then any --configfile given on the command line.
    validate_params(config, source=" + ".join(map(str, reversed(workflow.configfiles))) or str(DEFAULT_PARAMS))
except ParamsError as exc:
    print(f"cnnrepro pipeline: error: {exc}", file=sys.stderr)
    sys.exit(1)


# The tracking URI in force (env overrides included) must name a usable store: checked while the
# Snakefile is parsed, so even `snakemake -n` fails on it, in one line, before any job.
include: "workflow/rules/preflight.smk"


# `snakemake --lint`: the one lint left is "Specify a conda environment or container for each rule". The
# software is one pip environment for every rule, pinned with hashes in requirements*.lock (`make` builds
# it; the Makefile puts its bin first on PATH); a conda file could not install that lock as it is checked
# (pip's hash-checking mode), so no rule names one.
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
# user set it). After: the parent run closed FINISHED or FAILED. See src/cnnrepro/orchestration/pipeline_run.py.
onstart:
    from cnnrepro.orchestration import pipeline_run

    pipeline_run.run_hook("snakemake", "start")


# onsuccess also records in dvc.lock the stages whose outputs this run wrote, so `dvc status` agrees
# (cnnrepro.orchestration.tool_state).
onsuccess:
    from cnnrepro.orchestration import pipeline_run, tool_state

    tool_state.record_in_dvc(*tool_state.snakemake_outputs(workflow.dag))
    pipeline_run.run_hook("snakemake", "finish", "FINISHED")


onerror:
    from cnnrepro.orchestration import pipeline_run

    pipeline_run.run_hook("snakemake", "finish", "FAILED")
