"""Interleaved timing of several step functions in one process, framework-neutral (no framework import).

On a shared CPU the reachable rate moves with the load from one second to the next: timing one
contender's steps and then the other's charges a load change to whichever ran during it. Here the
contenders take turns, one round of `per_round` steps each, in ABBA order (the order reversed every
other round, so neither always runs right after the other's cache and thread wake-ups), and each
contender's figure is the median over its rounds, with the fastest round beside it (the least
disturbed: what the machine gives when nothing else runs).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class RoundTimes:
    """One contender's ms per step, one figure per round."""

    ms: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.ms)

    @property
    def fastest(self) -> float:
        return min(self.ms)


def interleaved_ms(
    steps: Mapping[str, Callable[[], object]], *, rounds: int, per_round: int = 1, warmup: int = 1
) -> dict[str, RoundTimes]:
    """ms per step of each named step function, timed in alternating rounds after `warmup` untimed steps each.

    Each function must finish its work before it returns (a CPU step does; a GPU step must synchronize).
    """
    if rounds < 1 or per_round < 1 or warmup < 0:
        raise ValueError(f"rounds {rounds}, per_round {per_round}, warmup {warmup}: need >= 1, >= 1, >= 0")
    for step in steps.values():
        for _ in range(warmup):
            step()
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else reversed(names):
            step = steps[name]
            started = time.perf_counter()
            for _ in range(per_round):
                step()
            times[name].append(1000 * (time.perf_counter() - started) / per_round)
    return {name: RoundTimes(tuple(ms)) for name, ms in times.items()}
