"""The bench's printed tables (plain text, fixed-width columns; '-' where a figure does not apply)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cnnrepro.bench.measure import PathResult
from cnnrepro.bench.reproduction import VariantTime
from cnnrepro.bench.versus import VersusKeras


def _num(spec: str) -> Callable[[Any], str]:
    return lambda value: "-" if value is None else format(value, spec)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _overhead(row: PathResult) -> float | None:
    """Step time over pure compute time on a fixed batch, minus one (fast path only)."""
    if row.step_ms is None or not row.pure_ms:
        return None
    return row.step_ms / row.pure_ms - 1


def _data_share(row: PathResult) -> float | None:
    if row.data_ms is None or row.compute_ms is None or row.data_ms + row.compute_ms == 0:
        return None
    return row.data_ms / (row.data_ms + row.compute_ms)


# (header, value) per column; the value function gets the row.
STEP_COLUMNS: tuple[tuple[str, Callable[[PathResult], str]], ...] = (
    ("variant", lambda r: r.variant),
    ("path", lambda r: r.path),
    ("batch", lambda r: _num("d")(r.batch_size)),
    ("img/s", lambda r: _num(".1f")(r.images_per_s)),
    ("step ms", lambda r: _num(".1f")(r.step_ms)),
    ("fit ms", lambda r: _num(".1f")(r.fit_step_ms)),
    ("data ms", lambda r: _num(".1f")(r.data_ms)),
    ("compute ms", lambda r: _num(".1f")(r.compute_ms)),
    ("data %", lambda r: _pct(_data_share(r))),
    ("pure ms", lambda r: _num(".1f")(r.pure_ms)),
    ("vs pure", lambda r: _pct(_overhead(r))),
    ("GMAC/img fwd", lambda r: _num(".4f")(r.forward_gmac_per_image)),
    ("GFLOP/img train", lambda r: _num(".4f")(r.train_gflop_per_image)),
    ("counted", lambda r: _num(".4f")(r.counted_gflop_per_image)),
    ("TFLOP/s", lambda r: _num(".4f")(r.achieved_tflops)),
    ("peak TFLOP/s", lambda r: _num(".3f")(r.peak_tflops)),
    ("% peak", lambda r: _pct(r.peak_fraction)),
    ("peak mem MB", lambda r: _num(".0f")(r.peak_memory_mb)),
    ("setup s", lambda r: _num(".1f")(r.setup_s)),
)


def render(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell: the first two (names) left-aligned, the figures right-aligned."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def step_table(results: Sequence[PathResult]) -> str:
    """The measured rows as a table; not_run rows follow it, one line each with the reason."""
    measured = [r for r in results if r.status == "measured"]
    text = render([h for h, _ in STEP_COLUMNS], [[cell(r) for _, cell in STEP_COLUMNS] for r in measured])
    skipped = [r for r in results if r.status != "measured"]
    for row in skipped:
        text += f"\n{row.variant} ({row.path}): not_run: {row.reason}"
    return text


def speedups(results: Sequence[PathResult], path: str = "fast") -> dict[str, float]:
    """`path` / naive images per second, per variant where both were measured."""
    rates: dict[str, dict[str, float]] = {}
    for row in results:
        if row.status == "measured" and row.images_per_s:
            rates.setdefault(row.variant, {})[row.path] = row.images_per_s
    return {v: r[path] / r["naive"] for v, r in rates.items() if path in r and "naive" in r}


def versus_table(rows: Sequence[VersusKeras]) -> str:
    """PyTorch ms, Keras ms and their ratio per variant; not_run rows follow, one line each with the reason."""
    headers = ["variant", "batch", "threads", "memory", "pytorch ms", "keras ms", "pytorch/keras", "fastest pt/keras"]
    measured = [r for r in rows if r.status == "measured"]
    cells = [
        [
            r.variant,
            _num("d")(r.batch_size),
            _num("d")(r.threads),
            "NHWC" if r.channels_last else "NCHW",
            _num(".1f")(r.torch_ms),
            _num(".1f")(r.keras_ms),
            _num(".2f")(r.ratio),
            f"{r.torch_fastest_ms:.1f}/{r.keras_fastest_ms:.1f}",
        ]
        for r in measured
    ]
    text = render(headers, cells)
    for r in rows:
        if r.status != "measured":
            text += f"\n{r.variant} (keras): not_run: {r.reason}"
    return text


def reproduction_table(times: Sequence[VariantTime]) -> str:
    headers = ["variant", "status", "epochs", "wall s", "train s", "val acc"]
    rows = [
        [
            t.variant,
            t.status,
            str(t.epochs),
            f"{t.wall_s:.1f}",
            _num(".1f")(t.train_s),
            _num(".4f")(t.val_accuracy),
        ]
        for t in times
    ]
    text = render(headers, rows)
    total = sum(t.wall_s for t in times)
    text += f"\ntotal wall time {total:.1f} s ({sum(t.status == 'completed' for t in times)} of {len(times)} trained)"
    for t in times:
        if t.reason:
            text += f"\n{t.variant}: not_run: {t.reason}"
    return text
