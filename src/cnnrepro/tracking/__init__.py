"""MLflow tracking through explicit run ids, safe with many jobs writing one SQLite store at once.

The public API, by concern (each module says how it guards against SQLite under parallel writers):
- `store`: where the store is, opening it once per process under a file lock, the experiment;
- `retries`: retry while SQLite answers "locked", and the one-line text of an error;
- `runs`: one tracked run (`tracked_run`, `RunLogger`), ended KILLED on SIGTERM;
- `liveness`: which RUNNING runs have lost their process (`mark_stale_runs_failed`);
- `pipeline`: the parent run of one pipeline invocation.

Artifacts of a SQLite store go to `mlartifacts/` beside the database, fixed when the experiment is
created, so they do not depend on the job's working directory.
"""

from __future__ import annotations

from cnnrepro.tracking.liveness import (
    TAG_HOST,
    TAG_PID,
    TAG_PID_START,
    TAG_STALE,
    mark_stale_runs_failed,
    process_alive,
    process_identity,
    process_tags,
)
from cnnrepro.tracking.pipeline import END_STATUSES, TAG_KIND, end_pipeline_run, start_pipeline_run
from cnnrepro.tracking.retries import first_line, retry
from cnnrepro.tracking.runs import (
    PARENT_RUN_ENV,
    PARENT_TAG,
    RunLogger,
    RunTerminated,
    flatten,
    parent_run_id_from_env,
    tracked_run,
)
from cnnrepro.tracking.store import (
    ARTIFACT_DIR_NAME,
    absolute_sqlite_uri,
    client,
    ensure_experiment,
    sqlite_path,
    tracking_settings,
)

__all__ = [
    "ARTIFACT_DIR_NAME",
    "END_STATUSES",
    "PARENT_RUN_ENV",
    "PARENT_TAG",
    "TAG_HOST",
    "TAG_KIND",
    "TAG_PID",
    "TAG_PID_START",
    "TAG_STALE",
    "RunLogger",
    "RunTerminated",
    "absolute_sqlite_uri",
    "client",
    "end_pipeline_run",
    "ensure_experiment",
    "first_line",
    "flatten",
    "mark_stale_runs_failed",
    "parent_run_id_from_env",
    "process_alive",
    "process_identity",
    "process_tags",
    "retry",
    "sqlite_path",
    "start_pipeline_run",
    "tracked_run",
    "tracking_settings",
]
