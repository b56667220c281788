"""Two (or more) generations raced live in one thread, each on its own clock, with their metrics.

    lanes = [Lane("diffusion", dlm.stream(diffusion, prompt, length=64, steps=16)),
             Lane("autoregressive", dlm.stream(ar, prompt, length=64))]
    for lane in race(lanes):          # one step of the lane that is behind, each time
        show(lane.generation.trace())
    metrics = {lane.name: lane.metrics() for lane in lanes}

The runs take turns: the one with the least compute time so far goes next. Neither slows the other
down (they never run at once), and each lane's clock counts only the seconds spent inside its own
steps, so the race shown live is a fair race in compute time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from dlm.generation import Generation
from dlm.trace import Step, Trace


def filled_tokens(trace: Trace) -> int:
    """Generated (non-prompt) positions already filled, summed over the samples."""
    final = trace.final
    open_slot = final == trace.mask_id if trace.kind == "masked" else final < 0  # causal runs: -1 = empty
    return int(((~trace.fixed).unsqueeze(0) & ~open_slot).sum())


def peak_memory_bytes(cuda: bool) -> int:
    """GPU: the peak allocated since the last `torch.cuda.reset_peak_memory_stats`; CPU: the process's
    peak resident set size (a high-water mark for the whole process, never reset)."""
    if cuda:
        return int(torch.cuda.max_memory_allocated())
    import resource  # Unix only; imported here so that importing this module works everywhere

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports kilobytes


@dataclass
class Lane:
    """One run in a race, with its own clock."""

    name: str
    generation: Generation
    clock: float = 0.0  # seconds spent inside this lane's steps
    first_step: float | None = None  # the clock when its first step was out (prompt processing included)
    done: bool = False
    peak_bytes: int = 0  # see peak_memory_bytes; on GPU, measured around this lane's own steps only
    _steps: Iterator | None = field(default=None, repr=False)

    def advance(self) -> bool:
        """Run one step (False once the run has finished)."""
        if self.done:
            return False
        if self._steps is None:
            self._steps = iter(self.generation)
        cuda = self.generation.lm.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        try:
            next(self._steps)  # the sampler synchronises CUDA before it stamps a step
        except StopIteration:
            self.done = True
        self.clock += time.perf_counter() - start
        if self.first_step is None and not self.done:
            self.first_step = self.clock
        self.peak_bytes = max(self.peak_bytes, peak_memory_bytes(cuda))
        return not self.done

    def metrics(self) -> dict[str, float]:
        """Wall time, time to first step, tokens (per sample), tokens/s, NFE, time per token, peak memory."""
        trace = self.generation.trace()
        tokens = filled_tokens(trace) // trace.num_samples
        return {
            "wall time (s)": self.clock,
            "time to first step (s)": self.first_step or 0.0,
            "tokens": tokens,
            "tokens/s": tokens / self.clock if self.clock > 0 else 0.0,
            "NFE (forward passes)": trace.nfe,
            "time per token (ms)": 1000 * self.clock / tokens if tokens else 0.0,
            "peak memory (MB)": self.peak_bytes / 2**20,
        }


def race(lanes: list[Lane]) -> Iterator[Lane]:
    """Advance the unfinished lane that is behind on its own clock, one step at a time, until all finish."""
    while True:
        running = [lane for lane in lanes if not lane.done]
        if not running:
            return
        lane = min(running, key=lambda lane: lane.clock)
        lane.advance()
        yield lane
