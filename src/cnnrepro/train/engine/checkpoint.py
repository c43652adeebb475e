"""Per-epoch checkpoints: enough state to continue a killed run to the same result, in a file that cannot
run code and cannot pass off damage as progress.

checkpoints/<framework>/<variant>/seed<S>/last.safetensors holds the state a backend hands over as a tree of
plain values (dicts, lists, tuples, numbers, strings, None) and numpy arrays: the arrays are the file's
safetensors tensors, the rest is JSON in its metadata, and a sha256 over both is checked before anything in
it is used. Reading it parses a JSON header and raw arrays, nothing else: no pickle, no code.

A rerun resumes from it only when it was written for the same resolved config (its hash). A checkpoint of
another config is replaced, and the run says so. One that is cut short, damaged (its digest does not match),
of another format or framework, or whose arrays do not fit the run is refused in one line naming it and
why, before any MLflow run opens (cnnrepro.train.engine.preflight); it is never overwritten: delete it to
start the run over. The pickled checkpoints of earlier versions (last.pt) are never loaded. The file is
removed once the run has written its outputs.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import atomic_path, write_file
from cnnrepro.mappings import JsonObject

FILE_NAME = "last.safetensors"
# What versions before 2026-12 wrote: a pickle, which can run code when loaded. Never read, never removed.
LEGACY_FILE_NAME = "last.pt"
FORMAT = "cnnrepro-checkpoint"
VERSION = "1"

# Settings that may differ between the killed run and its continuation without changing what it
# computes: epochs (a longer run continues a shorter one's exact trajectory) and where outputs go.
# The image cache's location never changes a decoded pixel.
# How often and how a checkpoint is written never changes what is trained.
HASH_EXCLUDED = (
    "epochs",
    "out_dir",
    "overrides",
    "documented_settings",
    "image_cache",
    "checkpoint_every",
    "checkpoint_in_background",
)
# Options added after checkpoints were written: at these values they hash as if absent, so a run
# checkpointed before they existed still resumes; switched on, they change the arithmetic and the hash.
HASH_ABSENT_AT = {"channels_last": False, "compile": False, "fast_step": False}


class CheckpointRefused(CnnreproError):
    """A checkpoint that must not be resumed from, nor overwritten: the message says which and why."""


def checkpoint_path(root: str | Path, framework: str, variant: str, seed: int) -> Path:
    return Path(root) / framework / variant / f"seed{seed}" / FILE_NAME


def config_hash(record: Mapping[str, Any]) -> str:
    """sha256 of a run's config record (RunConfig's legacy_record), less what never changes the arithmetic."""
    kept = {
        k: v
        for k, v in record.items()
        if k not in HASH_EXCLUDED and not (k in HASH_ABSENT_AT and v == HASH_ABSENT_AT[k])
    }
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


# --- the RNG state every backend shares ----------------------------------------------------------------


def python_numpy_rng_states() -> JsonObject:
    """Python's and numpy's global generators (a backend adds its framework's)."""
    return {"python": random.getstate(), "numpy": np.random.get_state()}


def set_python_numpy_rng_states(states: Mapping[str, Any]) -> None:
    version, internal, gauss = states["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    np.random.set_state(tuple(states["numpy"]))


# --- the tree <-> (JSON skeleton, arrays) --------------------------------------------------------------


def split_arrays(tree: Any, path: str = "") -> tuple[Any, dict[str, np.ndarray]]:
    """A JSON-able skeleton of `tree` and its arrays by path (dict keys keep their type: int or str)."""
    arrays: dict[str, np.ndarray] = {}

    def walk(value: Any, where: str) -> Any:
        if isinstance(value, np.ndarray):
            arrays[where] = _c_order(value)
            return {"__array__": where}
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, Mapping):
            for key in value:
                if not isinstance(key, str | int) or isinstance(key, bool):
                    raise CnnreproError(f"checkpoint state: key {key!r} at {where or '/'} is not a str or int")
            return {"__dict__": [[key, walk(v, f"{where}/{key}")] for key, v in value.items()]}
        if isinstance(value, list | tuple):
            items = [walk(v, f"{where}/{i}") for i, v in enumerate(value)]
            return {"__tuple__": items} if isinstance(value, tuple) else items
        if value is None or isinstance(value, bool | int | float | str):
            return value
        raise CnnreproError(f"checkpoint state: a {type(value).__name__} at {where or '/'} is not storable")

    return walk(tree, path), arrays


def join_arrays(skeleton: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """The tree `split_arrays` took apart."""
    if isinstance(skeleton, list):
        return [join_arrays(v, arrays) for v in skeleton]
    if isinstance(skeleton, dict):
        if "__array__" in skeleton:
            return arrays[skeleton["__array__"]]
        if "__tuple__" in skeleton:
            return tuple(join_arrays(v, arrays) for v in skeleton["__tuple__"])
        return {key: join_arrays(v, arrays) for key, v in skeleton["__dict__"]}
    return skeleton


def _c_order(array: np.ndarray) -> np.ndarray:
    """C order, shape kept (np.ascontiguousarray would make a 0-d array 1-d)."""
    return array if array.flags.c_contiguous else array.copy(order="C")


def _digest(state_json: str, arrays: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256(state_json.encode())
    for name in sorted(arrays):
        array = arrays[name]
        digest.update(f"\0{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(_c_order(array).tobytes())
    return digest.hexdigest()


def encode(state: Mapping[str, Any]) -> bytes:
    """The checkpoint file's bytes for `state` (numpy arrays and plain values only)."""
    from safetensors.numpy import save

    skeleton, arrays = split_arrays(dict(state))
    state_json = json.dumps(skeleton, allow_nan=True)
    metadata = {"format": FORMAT, "version": VERSION, "state": state_json, "sha256": _digest(state_json, arrays)}
    return save(arrays, metadata=metadata)


def decode(data: bytes, where: str | Path = "checkpoint") -> JsonObject:
    """The state in a checkpoint file's bytes; CheckpointRefused naming `where` and why when it is not one."""
    from safetensors.numpy import load

    try:
        (header_size,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + header_size])
        metadata = header.get("__metadata__") or {}
        arrays = load(data)
    except Exception as exc:  # short, garbled or another kind of file: the parser's reason, in one line
        raise CheckpointRefused(
            f"{where}: not a readable checkpoint ({type(exc).__name__}: cut short or damaged)"
        ) from None
    if metadata.get("format") != FORMAT or metadata.get("version") != VERSION:
        raise CheckpointRefused(f"{where}: not a cnnrepro checkpoint of version {VERSION}")
    state_json = metadata.get("state", "")
    if _digest(state_json, arrays) != metadata.get("sha256"):
        raise CheckpointRefused(f"{where}: its contents do not match their sha256 (damaged or edited)")
    try:
        state = join_arrays(json.loads(state_json), arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointRefused(f"{where}: malformed state ({exc})") from None
    if not isinstance(state, dict):
        raise CheckpointRefused(f"{where}: malformed state (not a mapping)")
    return state


# --- files ---------------------------------------------------------------------------------------------


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> None:
    """Atomically: a kill during the write leaves the previous epoch's checkpoint intact; a failed write is
    WriteError naming `path` and the cause."""
    data = encode(state)
    with atomic_path(path) as tmp:
        write_file(tmp, data)


def load_checkpoint(path: str | Path, expected_hash: str, framework: str) -> JsonObject | None:
    """The checkpoint's state if it exists and was made for this config; None when there is none to resume
    (missing, or of another config: said); CheckpointRefused when it must not be used or replaced."""
    path = Path(path)
    legacy = path.with_name(LEGACY_FILE_NAME)
    if not path.is_file():
        if legacy.is_file():
            print(f"checkpoint {legacy} is in the old pickle format, never loaded (it could run code); starting over")
        return None
    state = decode(path.read_bytes(), path)
    if state.get("framework") != framework:
        raise CheckpointRefused(f"{path}: written by a {state.get('framework')} run, not a {framework} one")
    if state.get("config_hash") != expected_hash:
        print(f"checkpoint {path} was written for another config of this run; starting over (it is replaced)")
        return None
    epoch = state.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        raise CheckpointRefused(f"{path}: epoch {epoch!r} is not a positive whole number")
    return state


def check_checkpoint(path: str | Path, framework: str) -> None:
    """Before a run opens its MLflow run: a checkpoint that would be refused fails it now, in one line."""
    path = Path(path)
    if path.is_file():
        state = decode(path.read_bytes(), path)
        if state.get("framework") != framework:
            raise CheckpointRefused(f"{path}: written by a {state.get('framework')} run, not a {framework} one")


def remove_checkpoint(path: str | Path) -> None:
    path = Path(path)
    path.unlink(missing_ok=True)
    for parent in list(path.parents)[:3]:
        try:
            parent.rmdir()  # only when empty
        except OSError:
            break


def announce_resume(
    path: str | Path,
    epoch: int,
    owner: JsonObject,
    history: Sequence[dict[str, float]],
    hooks: Iterable[Callable[[dict[str, float]], None]],
    on_resume: Callable[[JsonObject, int], None] | None,
) -> None:
    """What a resumed run does before its next epoch, in either framework: one line, on_resume(owner, epoch)
    (the command links the killed MLflow run), and every restored epoch through the hooks once, so the
    MLflow curves are complete."""
    print(f"resuming from {path} after epoch {epoch}", flush=True)
    if on_resume is not None:
        on_resume(owner, epoch)
    hooks = tuple(hooks)
    for row in history:
        for hook in hooks:
            hook(row)
