"""What every report figure shares: resolution, framework colours, and the record of a written figure."""

from __future__ import annotations

from dataclasses import dataclass

DPI = 110
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


@dataclass(frozen=True)
class Plot:
    """One written figure: file name inside plots/, a title and a one-line caption."""

    name: str
    title: str
    caption: str
    group: str  # "overview", "curves", "confusion" or "data"
