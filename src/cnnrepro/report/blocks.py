"""The report as a renderer-neutral list of blocks, so Markdown and HTML show exactly the same content.

Text may carry two inline marks, **bold** and `code`; both renderers understand them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cnnrepro.report.stats import SeedSummary

DASH = "—"


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Cell:
    text: str
    css: str = ""  # a class for the HTML renderer (verdict colours); Markdown ignores it


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[Cell]]
    css: str = ""


@dataclass(frozen=True)
class Image:
    path: str  # relative to the report directory, with forward slashes
    title: str
    caption: str = ""


@dataclass(frozen=True)
class Code:
    text: str


Block = Heading | Paragraph | Bullets | Table | Image | Code


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)


# Numbers: accuracies in percent, differences in percentage points, both to 2 decimals (MNIST needs them).
def pct(value: float | None) -> str:
    return DASH if value is None else f"{value * 100:.2f}"


def pp(value: float | None) -> str:
    return DASH if value is None else f"{value:+.2f}"


def measured_cell(summary: SeedSummary) -> str:
    """`mean ± sd [low, high]` in %, `mean` alone for one seed, a dash for none."""
    if summary.mean is None:
        return DASH
    if not summary.has_interval:
        return pct(summary.mean)
    return f"{pct(summary.mean)} ± {summary.std * 100:.2f} [{pct(summary.ci_low)}, {pct(summary.ci_high)}]"  # type: ignore[operator]


def text(value: Any) -> str:
    return DASH if value is None or value == "" else str(value)


def cells(values: Sequence[Any]) -> list[Cell]:
    return [v if isinstance(v, Cell) else Cell(text(v)) for v in values]
