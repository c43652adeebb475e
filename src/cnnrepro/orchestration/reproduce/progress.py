"""Live progress of a running pipeline, read from the files it writes.

Snakemake's own output goes to a log file; from it come the "N of M steps done" count and the jobs
started. Each running training writes its epoch lines ("epoch 3/30: loss ... (41.2 s)") to
logs/train/<framework>/<variant>/seed<S>.log; each becomes one progress bar with the time left at
its last epoch's pace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_STEPS = re.compile(r"(\d+) of (\d+) steps \((\d+)%\) done")
_EPOCH = re.compile(r"epoch (\d+)/(\d+):.*?val_acc ([0-9.]+).*\(([0-9.]+) s\)")
_RESUMED = re.compile(r"resuming from .* after epoch (\d+)")
# A training's log: logs/train/<f>/<v>/seed<S>.log, or .../<v>/ablation-<name>/seed<S>.log (ablations.smk).
_TRAIN_LOG = re.compile(r"logs/train/(\w+/\w+/(?:ablation-[\w-]+/)?seed\d+)\.log")
BAR_WIDTH = 24


@dataclass
class TrainingProgress:
    name: str  # framework/variant/seed<S>
    epoch: int = 0
    epochs: int | None = None
    val_accuracy: float | None = None
    epoch_s: float | None = None

    def line(self) -> str:
        if not self.epochs:
            resuming = f"resuming after epoch {self.epoch}" if self.epoch else "starting"
            return f"  {self.name:<40} {resuming} (data, model)"
        filled = round(BAR_WIDTH * self.epoch / self.epochs)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        parts = [f"  {self.name:<40} [{bar}] epoch {self.epoch}/{self.epochs}"]
        if self.val_accuracy is not None:
            parts.append(f"val_acc {self.val_accuracy:.3f}")
        if self.epoch_s:
            parts.append(f"~{format_duration(self.epoch_s * (self.epochs - self.epoch))} left")
        return "  ".join(parts)


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def read_training(log: Path, name: str) -> TrainingProgress:
    progress = TrainingProgress(name)
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return progress
    for line in text.splitlines():
        if m := _RESUMED.search(line):
            progress.epoch = int(m.group(1))
        if m := _EPOCH.search(line):
            progress.epoch, progress.epochs = int(m.group(1)), int(m.group(2))
            progress.val_accuracy, progress.epoch_s = float(m.group(3)), float(m.group(4))
    return progress


@dataclass
class PipelineState:
    steps_done: int = 0
    steps_total: int | None = None
    running: tuple[TrainingProgress, ...] = ()

    def lines(self) -> list[str]:
        head = "pipeline: starting"
        if self.steps_total:
            head = f"pipeline: {self.steps_done} of {self.steps_total} jobs done"
        return [head, *(t.line() for t in self.running)]


def read_state(snakemake_log: Path, project: Path) -> PipelineState:
    """Steps done from Snakemake's log; running trainings: jobs it started whose metrics.json is not there."""
    state = PipelineState()
    try:
        text = snakemake_log.read_text(errors="replace")
    except OSError:
        return state
    for m in _STEPS.finditer(text):
        state.steps_done, state.steps_total = int(m.group(1)), int(m.group(2))
    running = []
    for name in dict.fromkeys(_TRAIN_LOG.findall(text)):
        metrics = project / "runs" / name / "metrics.json"
        log = project / "logs" / "train" / f"{name}.log"
        # metrics.json is a run's last output, and a rerun removes it first.
        if log.exists() and not metrics.exists():
            running.append(read_training(log, name))
    state.running = tuple(running)
    return state
