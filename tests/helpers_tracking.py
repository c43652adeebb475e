"""Code for tests/test_tracking.py that runs in spawned processes, so it lives in a module they can import.

test_tracking.py imports this as the top-level module `helpers_tracking` (tests/ put on sys.path), which
the spawned children can import too, whatever pytest's import mode.
"""

from __future__ import annotations

from typing import Any

METRIC_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")


def log_run_worker(uri: str, experiment: str, index: int, steps: int, barrier: Any, results: Any) -> None:
    """One parallel training job: all start together against the same (fresh) store."""
    try:
        # Imported before the barrier, so the race is in creating the store, not in importing.
        import mlflow.store.tracking.sqlalchemy_store
        import mlflow.tracking  # noqa: F401

        from cnnrepro.tracking.tracked_run import tracked_run

        barrier.wait(timeout=120)
        with tracked_run(uri, experiment, run_name=f"worker{index}", tags={"worker": str(index)}) as run:
            run.log_params({"index": index, "nested": {"steps": steps}})
            for step in range(steps):
                run.log_metrics({key: index + step / 100 for key in METRIC_KEYS}, step=step)
        results.put((index, run.run_id, None))
    except BaseException as exc:
        results.put((index, None, f"{type(exc).__name__}: {exc}"))
