"""What a run directory must hold when it is read back: every field's type and range, checked before anything
uses it (the run contract itself is cnnrepro.run_outputs; its dataclass fields name their check here).

Run outputs are input to the report: a hand-edited, copied or half-written file must fail in one line naming
the file and the key, never give a traceback and never reach a verdict. JSON allows what no run writes:
NaN and Infinity (Python's json reads both), accuracies as strings, `true` where a count belongs (a bool is
an int to Python), a list where an object belongs. Each is refused here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from cnnrepro.errors import CnnreproError
from cnnrepro.mappings import JsonObject

# metrics.json, run_info.json and confusion.json are a few KB as training writes them; history.csv a few
# KB per hundred epochs. Far past that is not a run output, and is not read into memory.
MAX_RUN_FILE_BYTES = 8 << 20

Check = Callable[[Any], str]  # "" when the value is acceptable, else what is wrong with it (no key, no file)


def read_bounded(path: Path, max_bytes: int = MAX_RUN_FILE_BYTES) -> str:
    """A run file's text; missing, oversized, not a file or not UTF-8 is a one-line CnnreproError."""
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise CnnreproError(f"{path}: missing") from None
    except IsADirectoryError:
        raise CnnreproError(f"{path}: not a file") from None
    if len(data) > max_bytes:
        raise CnnreproError(f"{path}: larger than {max_bytes >> 20} MiB, not a run output this project writes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CnnreproError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def read_run_json(path: Path) -> Any:
    """A run file's JSON (read within MAX_RUN_FILE_BYTES); corrupt or too deeply nested is one line."""
    text = read_bounded(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CnnreproError(f"{path}: corrupt JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise CnnreproError(f"{path}: corrupt JSON (nested too deeply)") from None


def at(key: object, problem: str) -> str:
    """`key: problem`, or `key.inner: problem` where the problem is inside the value (it starts with '.')."""
    return f"{key}{problem}" if problem.startswith(".") else f"{key}: {problem}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    names[type(None)] = "null"
    return names.get(type(value), type(value).__name__)


def number(low: float, high: float = math.inf, *, integer: bool = False, nullable: bool = True) -> Check:
    """A finite number (an integer when `integer`) in [low, high]; null too when `nullable`."""

    def check(value: Any) -> str:
        if value is None:
            return "" if nullable else "is null, expected a number"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{_shown(value)} is {_kind(value)}, expected {'an integer' if integer else 'a number'}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{value} is not a finite number"
        if integer and not isinstance(value, int):
            return f"{_shown(value)} is not an integer"
        if not low <= value <= high:
            bounds = f"[{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"
            return f"{_shown(value)} is out of range (expected {bounds})"
        return ""

    return check


def one_of(values: tuple[str, ...]) -> Check:
    def check(value: Any) -> str:
        if isinstance(value, str) and value in values:
            return ""
        return f"{_shown(value)} is not one of {', '.join(values)}"

    return check


def text(nullable: bool = True) -> Check:
    def check(value: Any) -> str:
        if value is None:
            return "" if nullable else "is null, expected a string"
        return "" if isinstance(value, str) else f"{_shown(value)} is {_kind(value)}, expected a string"

    return check


def obj(value_check: Check | None = None, nullable: bool = False) -> Check:
    """A JSON object; every value passing `value_check` when given."""

    def check(value: Any) -> str:
        if value is None and nullable:
            return ""
        if not isinstance(value, dict):
            return f"is {_kind(value)}, expected an object"
        for key, item in value.items() if value_check else ():
            if problem := value_check(item):
                return "." + at(key, problem)
        return ""

    return check


def list_of(item_check: Check) -> Check:
    def check(value: Any) -> str:
        if not isinstance(value, list):
            return f"is {_kind(value)}, expected a list"
        for i, item in enumerate(value):
            if problem := item_check(item):
                return "." + at(i, problem)
        return ""

    return check


FRACTION = number(0.0, 1.0)  # accuracies are fractions, as metrics.json and MLflow hold them
LOSS = number(0.0)  # cross-entropy: never negative
COUNT = number(0, integer=True, nullable=False)
SECONDS = number(0.0)
TEXT = text()
STRINGS = obj(text())


def check_with(check: Check) -> dict[str, Check]:
    """dataclass field metadata: `field(metadata=check_with(FRACTION))`."""
    return {"check": check}


def check_record(cls: type, raw: Any, path: Path) -> JsonObject:
    """`raw` (parsed JSON) as keyword arguments for the dataclass `cls`: an object whose keys are its
    fields, every required one present, each passing the check its field metadata names. Raises
    CnnreproError as `<path>: <key>: <problem>`."""
    if not isinstance(raw, dict):
        raise CnnreproError(f"{path}: is {_kind(raw)}, expected a JSON object")
    known = {f.name: f for f in fields(cls)}
    if unknown := sorted(set(raw) - set(known)):
        raise CnnreproError(f"{path}: {unknown[0]}: unknown key")
    for name, spec in known.items():
        if name not in raw:
            if spec.default is MISSING and spec.default_factory is MISSING:
                raise CnnreproError(f"{path}: {name}: missing key")
            continue
        check = spec.metadata.get("check")
        if check is not None and (problem := check(raw[name])):
            raise CnnreproError(f"{path}: {at(name, problem)}")
    return dict(raw)


def check_keys(raw: Mapping[str, Any], checks: Mapping[str, Check], path: Path, prefix: str) -> None:
    """The keys of `raw` that `checks` names, where present (a partial check of an open record)."""
    for key, check in checks.items():
        if key in raw and (problem := check(raw[key])):
            raise CnnreproError(f"{path}: {at(prefix + key, problem)}")


CONFUSION_SPLITS = ("test", "validation")


def check_confusion(raw: Any, path: Path) -> JsonObject:
    """confusion.json: labels, a square matrix of counts with one row and column per label, its split."""
    if not isinstance(raw, dict):
        raise CnnreproError(f"{path}: is {_kind(raw)}, expected a JSON object")
    for key in ("labels", "matrix", "split"):
        if key not in raw:
            raise CnnreproError(f"{path}: {key}: missing key")
    if problem := list_of(text(nullable=False))(raw["labels"]):
        raise CnnreproError(f"{path}: {at('labels', problem)}")
    if raw["split"] not in CONFUSION_SPLITS:
        raise CnnreproError(f"{path}: split: {_shown(raw['split'])} is not one of {', '.join(CONFUSION_SPLITS)}")
    k = len(raw["labels"])
    if problem := list_of(list_of(COUNT))(raw["matrix"]):
        raise CnnreproError(f"{path}: {at('matrix', problem)}")
    if len(raw["matrix"]) != k or any(len(row) != k for row in raw["matrix"]):
        raise CnnreproError(f"{path}: matrix: expected {k} x {k} counts, one row and column per label")
    return raw
