"""How many masked tokens each denoising step reveals.

A schedule is a monotone curve f: [0, 1] -> [0, 1], the fraction of the masked tokens revealed once
a fraction s of the steps has run. `num_transfer_tokens` turns it into whole counts per step that
sum to exactly n, with at least one token per step (LLaDA's `get_num_transfer_tokens` is the linear
case).
"""

from __future__ import annotations

import math

from dlm.config import SCHEDULES

_EXP_RATE = 5.0  # exponential schedule: masked fraction decays like exp(-5 s), so ~99% revealed by the end


def revealed_fraction(schedule: str, s: float) -> float:
    """Fraction of the masked tokens revealed after a fraction `s` of the steps."""
    if schedule == "linear":
        return s
    if schedule == "cosine":  # MaskGIT: masked fraction cos(pi/2 * s), so few tokens early
        return 1.0 - math.cos(math.pi / 2 * s)
    if schedule == "exponential":  # masked fraction decays exponentially, so many tokens early
        return (1.0 - math.exp(-_EXP_RATE * s)) / (1.0 - math.exp(-_EXP_RATE))
    raise ValueError(f"unknown schedule {schedule!r}; choose from {sorted(SCHEDULES)}")


def num_transfer_tokens(n: int, steps: int, schedule: str = "linear") -> list[int]:
    """Tokens to reveal at each of `steps` steps: every count >= 1 and the counts sum to `n`.

    >>> num_transfer_tokens(10, 4)
    [3, 3, 2, 2]
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if steps > n:
        raise ValueError(f"steps ({steps}) cannot exceed the number of masked tokens ({n})")
    if schedule == "linear":  # equal shares, the remainder to the first steps (as LLaDA)
        base, extra = divmod(n, steps)
        return [base + (1 if i < extra else 0) for i in range(steps)]
    # cumulative revealed counts on the curve, then nudged so every step reveals at least one
    cumulative = [0] * (steps + 1)
    for i in range(1, steps + 1):
        target = round(n * revealed_fraction(schedule, i / steps))
        lowest = cumulative[i - 1] + 1  # at least one token this step
        highest = n - (steps - i)  # leave at least one for every later step
        cumulative[i] = min(max(target, lowest), highest)
    return [cumulative[i + 1] - cumulative[i] for i in range(steps)]


def step_temperature(temperature: float, end: float | None, step: int, steps: int) -> float:
    """The sampling temperature at a block's `step` (0-based) of `steps`: linear from `temperature` at the
    first to `end` at the last (None: constant). Hot early, cold late lets the first, widely spaced tokens
    vary while the ones filled in between them follow their neighbours (aMUSEd / MaskGIT anneal the same
    way); a step past the last (parallel rules may run fewer) keeps `end`.

    >>> [round(step_temperature(1.2, 0.6, i, 4), 2) for i in range(4)]
    [1.2, 1.0, 0.8, 0.6]
    """
    if end is None or steps <= 1:
        return temperature
    return temperature + (end - temperature) * min(step, steps - 1) / (steps - 1)
