"""MLflow tracking through explicit run ids, safe with many jobs writing one SQLite store at once.

The package's modules, by concern (each says how it guards against SQLite under parallel writers);
import from them directly (this file imports nothing, so a stage that only checks the tracking URI
depends on `uri` alone):
- `uri`: is the tracking URI usable (checked when params load and when the Snakefile is parsed);
- `store`: where the store is, opening it once per process under a file lock, the experiment;
- `retries`: retry while SQLite answers "locked", and the one-line text of an error;
- `tracked_run`: one tracked run (`tracked_run`, `RunLogger`), ended KILLED on SIGTERM;
- `liveness`: which RUNNING runs have lost their process (`mark_stale_runs_failed`);
- `pipeline`: the parent run of one pipeline invocation; `dvc_experiment`: the `dvc exp run` it is in;
- `logged_model` (+ `pyfunc_code`), `run_records`: a completed run's model, datasets and images;
- `report_run`: the report's headline on the parent run;
- `cli`: `cnnrepro tracking init|start|end`; `ui`: `make mlflow-ui`.

Artifacts of a SQLite store go to `mlartifacts/` beside the database, fixed when the experiment is
created, so they do not depend on the job's working directory.
"""
