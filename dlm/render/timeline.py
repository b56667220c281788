"""Which frame of each trace to show when several run side by side ("diffusion racing AR").

Two alignments:

    "time"  real time: at clock t each trace shows its last step with elapsed <= t, so a faster
            sampler visibly finishes first
    "step"  step for step: tick j shows step j of every trace (or its last, once it has finished)
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass

from dlm.trace import Trace

ALIGNMENTS = ("time", "step")


@dataclass(frozen=True)
class Tick:
    """One moment of a race."""

    time: float  # the clock in seconds ("time"), or the step number ("step")
    frames: tuple[int, ...]  # the frame shown for each trace (0: initial canvas, k: after step k)


def check_alignment(align: str) -> None:
    if align not in ALIGNMENTS:
        raise ValueError(f"unknown align {align!r}; choose from {sorted(ALIGNMENTS)}")


def check_titles(traces: list[Trace], titles: list[str] | None) -> list[str | None]:
    """One title per trace (None: the renderer's default), failing on a mismatch or no traces."""
    if not traces:
        raise ValueError("side by side needs at least one trace")
    if titles is None:
        return [None] * len(traces)
    if len(titles) != len(traces):
        raise ValueError(f"got {len(titles)} titles for {len(traces)} traces; pass one per trace or None")
    return list(titles)


def step_ticks(traces: list[Trace]) -> list[Tick]:
    """Tick j shows step j of every trace, holding each on its last frame once it has finished."""
    longest = max(len(trace.steps) for trace in traces)
    return [Tick(float(j), tuple(min(j, len(trace.steps)) for trace in traces)) for j in range(longest + 1)]


def time_ticks(traces: list[Trace], times: list[float]) -> list[Tick]:
    """At each clock time, the frame of each trace: how many of its steps had finished by then."""
    clocks = [_step_times(trace) for trace in traces]
    return [Tick(t, tuple(bisect_right(clock, t) for clock in clocks)) for t in times]


def event_times(traces: list[Trace]) -> list[float]:
    """0 and every moment any trace finished a step, in order: the ticks where something changes."""
    return sorted({0.0, *(step.elapsed for trace in traces for step in trace.steps)})


def uniform_times(duration: float, interval: float) -> list[float]:
    """0, interval, 2·interval, ..., ending exactly at `duration` so the last tick shows every run done."""
    if interval <= 0:
        raise ValueError(f"interval must be positive, got {interval}")
    count = math.ceil(duration / interval - 1e-9)  # tolerance: 0.4 / 0.1 is 4.000000000000001
    return [j * interval for j in range(count)] + [duration]


def race_duration(traces: list[Trace]) -> float:
    """Seconds until the slowest trace finished."""
    return max(trace.seconds for trace in traces)


def _step_times(trace: Trace) -> list[float]:
    """When each step of `trace` finished; fails on a clock that runs backwards."""
    times = [step.elapsed for step in trace.steps]
    if any(later < earlier for earlier, later in zip(times, times[1:])):
        raise ValueError("trace step times (Step.elapsed) must not decrease")
    return times
