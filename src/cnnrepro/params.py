"""Load params.yaml once, validate it against the workflow schema, resolve environment overrides.

Snakemake validates the same file with the same schema (workflow/schemas/params.schema.yaml),
so a mistake fails the same way under either orchestrator, before any work starts.
"""

from __future__ import annotations

import copy
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from cnnrepro.checks.bounded_yaml import YamlLimitError, check_object_size, load_yaml_bounded
from cnnrepro.errors import ParamsError
from cnnrepro.mappings import JsonObject, Params
from cnnrepro.tracking.uri import check_tracking_uri

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = PROJECT_ROOT / "workflow" / "schemas" / "params.schema.yaml"
DEFAULT_PARAMS = Path("params.yaml")

MIRROR_ENV = "CNNREPRO_DATA_MIRROR"
TRACKING_ENV = ("CNNREPRO_TRACKING_URI", "MLFLOW_TRACKING_URI")


@lru_cache(maxsize=1)
def load_schema() -> JsonObject:
    with SCHEMA_PATH.open() as f:
        return yaml.safe_load(f)


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        unknown = sorted(k for k in error.instance if k not in allowed)
        if unknown:
            parts.append(unknown[0])
    if error.validator == "required":
        # "'x' is a required property": name the missing key itself.
        parts.append(error.message.split("'")[1])
    return ".".join(parts) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        return "unknown key"
    if error.validator == "required":
        return "missing key"
    return error.message


def non_finite_key(value: Any) -> tuple[str, float] | None:
    """The first number in the tree that is NaN or infinite (YAML's .nan, .inf), with its key path.

    JSON Schema cannot say "finite": NaN compares false with every bound, so `exclusiveMinimum: 0`
    lets `.nan` through, and `.inf` passes every lower bound."""
    stack: list[tuple[tuple[str, ...], Any]] = [((), value)]
    seen: set[int] = set()  # a container YAML aliased twice (or into itself) is checked once
    while stack:
        path, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return ".".join(path) or "<top level>", item
        if isinstance(item, (dict, list)):
            if id(item) in seen:
                continue
            seen.add(id(item))
        if isinstance(item, dict):
            stack.extend(((*path, str(k)), v) for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend(((*path, str(i)), v) for i, v in reversed(list(enumerate(item))))
    return None


def validate_params(params: Params, source: str = "params.yaml") -> None:
    """Raise ParamsError naming the first offending key; checks the whole tree at once.

    First its size with every shared list or mapping counted where it appears (`check_object_size`): the
    Snakefile validates what Snakemake merged, --configfile files included, which Snakemake parsed itself
    and keeps shared; walking an alias bomb expanded (the schema check does) would never end."""
    try:
        check_object_size(params, source)
    except YamlLimitError as exc:
        raise ParamsError(str(exc)) from None
    if found := non_finite_key(params):
        key, number = found
        raise ParamsError(f"{source}: {key}: {number} is not a finite number")
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        error = jsonschema.exceptions.best_match(errors) if len(errors) > 1 else errors[0]
        # A bad key under propertyNames is reported on its parent object; name the key itself.
        if "propertyNames" in error.schema_path:
            key = ".".join([*map(str, error.absolute_path), str(error.instance)])
            known = ", ".join(map(str, error.schema.get("enum", [])))
            raise ParamsError(f"{source}: {key}: unknown name (known: {known})")
        raise ParamsError(f"{source}: {_key_path(error)}: {_describe(error)}")


def apply_environment(params: Params) -> Params:
    """Environment variables that override params (mirror and tracking URI), applied once here."""
    resolved = copy.deepcopy(params)
    if os.environ.get(MIRROR_ENV):
        resolved["data"]["mirror"] = os.environ[MIRROR_ENV]
    for name in TRACKING_ENV:
        if os.environ.get(name):
            resolved["tracking"]["uri"] = os.environ[name]
            break
    return resolved


def read_params_file(path: str | Path = DEFAULT_PARAMS) -> Params:
    """The mapping a params file holds, parsed within `bounded_yaml`'s limits (size, expanded nodes, depth),
    not yet validated. Every tool that reads params.yaml comes through here: the stages (`load_params`), the
    Snakefile and the pipeline runner. Raises ParamsError with a one-line message naming the file."""
    path = Path(path)
    try:
        params = load_yaml_bounded(path)
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except YamlLimitError as exc:
        raise ParamsError(str(exc)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ParamsError(f"{path}:{where}: not valid YAML") from None
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping of stage sections")
    return params


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read (`read_params_file`), validate and resolve params.yaml, and check the tracking URI in force is
    usable (`tracking_uri.check_tracking_uri`). Raises ParamsError with a one-line message."""
    path = Path(path)
    params = read_params_file(path)
    validate_params(params, source=str(path))
    resolved = apply_environment(params)
    check_tracking_uri(resolved["tracking"]["uri"], tracking_uri_source(path))
    return resolved


def tracking_uri_source(path: str | Path = DEFAULT_PARAMS) -> str:
    """Where the tracking URI in force comes from: the environment variable that overrides it, or the key."""
    for name in TRACKING_ENV:
        if os.environ.get(name):
            return name
    return f"{path}: tracking.uri"


def mirror_dir(params: Params) -> Path | None:
    """The data mirror, or None; a mirror that is set but missing is a params error, not a silent fallback."""
    mirror = params["data"]["mirror"]
    if not mirror:
        return None
    path = Path(mirror)
    if not path.is_dir():
        source = MIRROR_ENV if os.environ.get(MIRROR_ENV) else "params.yaml: data.mirror"
        raise ParamsError(f"{source}: mirror directory {path} does not exist")
    return path
