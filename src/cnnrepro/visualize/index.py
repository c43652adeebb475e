"""reports/figures/index.json: every figure with its caption and MLflow copy, and everything skipped with
the reason. Written by the visualize stage and read back (by the report) through FigureIndex only."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from cnnrepro.errors import CnnreproError
from cnnrepro.fsutil import read_json, write_json_atomic
from cnnrepro.mappings import JsonObject

KINDS = ("activations", "filters", "heatmaps")


@dataclass
class FigureRecord:
    path: str  # relative to the figures directory, forward slashes
    kind: str  # activations | filters | heatmaps
    title: str
    caption: str
    source_run: str | None  # the run directory the figure shows; None for the ImageNet VGG16
    mlflow: JsonObject = field(default_factory=dict)


@dataclass
class Skipped:
    kind: str
    item: str
    reason: str


@dataclass
class FigureIndex:
    device: str
    seed: int
    filters: JsonObject  # the filter-pattern settings the figures were drawn with
    figures: list[FigureRecord]
    skipped: list[Skipped]
    duration_s: float
    timings_s: dict[str, float] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {kind: sum(f.kind == kind for f in self.figures) for kind in KINDS}

    def write(self, path: Path) -> None:
        write_json_atomic(path, asdict(self))

    @classmethod
    def read(cls, path: Path) -> FigureIndex:
        """index.json as written; a file that is not one fails naming it."""
        data = read_json(path)
        try:
            return cls(
                **{k: v for k, v in data.items() if k not in ("figures", "skipped")},
                figures=[FigureRecord(**f) for f in data["figures"]],
                skipped=[Skipped(**s) for s in data["skipped"]],
            )
        except (TypeError, KeyError, AttributeError) as exc:
            raise CnnreproError(f"{path}: not a figure index ({exc})") from None
