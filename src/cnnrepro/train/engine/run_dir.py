"""The run directory a training writes (`--out`): only a new or empty folder or one holding this run's own
earlier outputs, one training of a run at a time, and nothing in it replaced or removed that the run did
not write.

A folder is this run's when its run_info.json names the same framework, variant, seed and ablation: the
lifecycle writes run_info.json first of all outputs, so even a run killed while writing is recognised.
Anything else (a user's folder, another run's outputs, a run_info.json that cannot be read) is refused in
one line before anything is touched.

Two trainings of one run would interleave their outputs and resume from each other's live checkpoint, and
MLflow would hold two FINISHED runs for one run. So a training holds two locks (filelock, advisory, freed
by the kernel when the process dies, a SIGKILL included) from before its MLflow run opens until its
checkpoint is removed: one inside the run directory and one beside its checkpoint folder (two --out
folders sharing a --checkpoints root would share the checkpoint). A second training refuses at once,
in one line naming the lock and the process holding it, rather than waiting: once the first finishes,
a waiting one would train the whole run again from scratch and replace the outputs just written.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cnnrepro.checks.run_fields import read_run_json
from cnnrepro.errors import CnnreproError
from cnnrepro.train.engine.run_config import RunConfig

LOCK_NAME = ".cnnrepro-train.lock"
# artifacts/ files a training writes besides the model (the model's name is the backend's model_file).
ARTIFACT_FILES = ("fidelity.json", "confusion.json")


def run_identity(framework: Any, variant: Any, seed: Any, ablation: Any) -> str:
    """framework/variant/seedS, or framework/variant/ablation-NAME/seedS: RunConfig.run_name's form."""
    middle = f"/ablation-{ablation}" if ablation else ""
    return f"{framework}/{variant}{middle}/seed{seed}"


def _identity_in(info: Any, path: Path) -> str:
    if not isinstance(info, dict) or not all(k in info for k in ("framework", "variant", "seed")):
        raise CnnreproError(f"{path}: not a run_info.json this project writes (no framework, variant and seed)")
    recorded = info.get("config")  # the JSON record as written, not a RunConfig
    ablation = recorded.get("ablation") if isinstance(recorded, dict) else None
    name = ablation.get("name") if isinstance(ablation, dict) else None
    return run_identity(info["framework"], info["variant"], info["seed"], name)


def _listed(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".part")


def check_out_dir(out: str | Path, config: RunConfig) -> None:
    """Raise CnnreproError (one line, nothing touched) unless `out` may receive this run's outputs."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise CnnreproError(f"--out {out}: is not a folder")
    # The lock, and temporaries a killed write left (fsutil's `.<name>.<random>.part`), are this command's own.
    entries = sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME and not _temporary(p.name))
    if not entries:
        return
    info = out / "run_info.json"
    if not info.is_file():
        raise CnnreproError(
            f"--out {out}: holds {_listed(entries)} and no run_info.json, so not this run's outputs; "
            "nothing touched (give a new or empty folder)"
        )
    try:
        theirs = _identity_in(read_run_json(info), info)
    except CnnreproError as exc:
        raise CnnreproError(f"--out {out}: cannot tell whose outputs it holds ({exc}); nothing touched") from None
    if theirs != config.run_name:
        raise CnnreproError(
            f"--out {out}: holds the outputs of {theirs} ({info}), not {config.run_name}; nothing touched"
        )


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


@contextlib.contextmanager
def run_locks(out: str | Path, checkpoint: str | Path, run_name: str) -> Iterator[None]:
    """Hold the run directory's lock and the checkpoint's, or refuse in one line if another training does."""
    from filelock import FileLock, Timeout

    checkpoint = Path(checkpoint)
    # Beside the checkpoint's folder, not in it: removing a finished run's checkpoint removes its empty folder.
    beside = checkpoint.parent.with_name(checkpoint.parent.name + ".lock")
    locks = ((Path(out) / LOCK_NAME, "--out"), (beside, "--checkpoints"))
    with contextlib.ExitStack() as held:
        for path, flag in locks:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(path, timeout=0)
            try:
                held.enter_context(lock)
            except Timeout:
                raise CnnreproError(
                    f"{flag} {path.parent}: another training of {run_name} is running{_holder(path)} and holds "
                    f"{path}; not starting a second one (wait for it to end)"
                ) from None
            # Who holds it, for the refusal above; the lock is the kernel's lock on the file, not this text.
            with contextlib.suppress(OSError):
                path.write_text(f"{os.getpid()}\n")
        yield


def remove_stale_artifacts(artifacts: Path, written: set[str], model_file: str) -> None:
    """Remove the artifacts an earlier training of this run wrote and this one did not (a model beside a run
    that is now not_run or diverged would be taken for its model); every other file there is left alone."""
    for name in (*ARTIFACT_FILES, model_file):
        if name not in written:
            (artifacts / name).unlink(missing_ok=True)
