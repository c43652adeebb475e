"""Names for the plain mappings that cross module boundaries before a checker has read them.

A parsed params.yaml (or one of its sections) and a JSON object read from or written to a run's files are
plain `dict[str, Any]`: their shape is checked where they are read (cnnrepro.params.validate_params, the
schema; cnnrepro.checks.run_fields for run outputs), and typed records (RunConfig, RunInfo, RunMetrics) are
built from them. These names say which kind a function takes or returns; they are not stronger types.
"""

from __future__ import annotations

from typing import Any, TypeAlias

Params: TypeAlias = dict[str, Any]  # params.yaml's mapping, or a section of it (validated by cnnrepro.params)
JsonObject: TypeAlias = dict[str, Any]  # a JSON object: a run's record, a report's row, a checkpoint's state
