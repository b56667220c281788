"""Sampler settings: one frozen dataclass, a comment on every default.

A checkpoint may carry recommended settings in its `config.json` under the key `"dlm"` (written by
`training/`); `dlm.load` turns them into the `SamplerConfig` the sampler starts from, and callers
override single fields with `dataclasses.replace` (or keyword overrides to `dlm.stream`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

# Which masked positions a step commits (the rest stay masked). Names follow LLaDA / Dream.
REMASKING = {
    "random": "commit random masked positions (MDLM ancestral sampling)",
    "low_confidence": "commit the positions whose sampled token is most probable (LLaDA)",
    "margin": "commit the positions with the largest top-1 minus top-2 probability (Dream topk_margin)",
    "entropy": "commit the positions whose predictive distribution has the lowest entropy (Dream)",
    "dilated": "commit positions spread evenly over the block, a stride apart, later steps filling the gaps "
               "(dilated scheduling: tokens committed together are never neighbours while steps allow)",
}

# How many tokens each step reveals, as a function of progress (see dlm.schedules).
SCHEDULES = {
    "linear": "the same number every step",
    "cosine": "few at first, more at the end (MaskGIT)",
    "exponential": "many at first, fewer at the end",
}

# Approximate key/value caching for masked models (dlm.cache): what a step after a block's first feeds.
CACHES = {
    "prefix": "the current block and everything right of it; keys and values left of it are reused",
    "dual": "the current block only; keys and values on both sides are reused (Fast-dLLM's DualCache)",
}

# Rules that may commit several positions in one step (at most one at a time): SamplerConfig fields.
PARALLEL_RULES = ("threshold", "factor", "entropy_bound")

SETTINGS_KEY = "dlm"  # key in config.json holding the diffusion settings written by training/


@dataclass(frozen=True)
class SamplerConfig:
    """Everything that decides how text is sampled. Masked-only fields are ignored by causal models."""

    length: int = 64  # tokens to generate after the prompt (infilling: the template decides)
    steps: int = 64  # denoising steps; a step reveals length/steps tokens on average
    schedule: str = "linear"  # how many tokens each step reveals: see SCHEDULES
    temperature: float = 0.0  # 0 = greedy (argmax); < 1 sharper, > 1 more random
    temperature_end: float | None = None  # masked: anneal linearly from `temperature` at a block's first step to this at its last; None = constant; greedy ignores it
    top_k: int = 0  # sample only among the k most likely tokens (0 = no limit)
    top_p: float = 1.0  # nucleus sampling: the smallest set holding this much probability (1 = off)
    min_p: float = 0.0  # keep only tokens at least this fraction as probable as the most probable one (0 = off)
    remasking: str = "low_confidence"  # which masked positions a step commits: see REMASKING
    threshold: float | None = None  # Fast-dLLM: also commit every position with confidence >= this
    factor: float | None = None  # Fast-dLLM's factor rule: also commit the n most confident while (n+1)(1-c_n) < this
    entropy_bound: float | None = None  # EB-sampler: also commit, best first, while summed entropy - its max <= this (nats)
    block_length: int | None = None  # semi-autoregressive blocks of this many positions (LLaDA); None = one block
    cache: str | None = None  # Fast-dLLM key/value cache, refreshed when a block starts: see CACHES; None = exact
    cfg_scale: float = 0.0  # classifier-free guidance strength; 0 = off (unconditional branch masks the prompt)
    allow_eos: bool = True  # True: the text ends at the first EOS; False: EOS is never sampled
    num_samples: int = 1  # samples drawn side by side in one forward pass

    def __post_init__(self) -> None:
        _check(self.length >= 1, lambda: f"length must be >= 1, got {self.length}")
        _check(self.steps >= 1, lambda: f"steps must be >= 1, got {self.steps}")
        _check(self.schedule in SCHEDULES,
               lambda: f"unknown schedule {self.schedule!r}; choose from {sorted(SCHEDULES)}")
        _check(self.remasking in REMASKING,
               lambda: f"unknown remasking {self.remasking!r}; choose from {sorted(REMASKING)}")
        _check(self.temperature >= 0, lambda: f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        _check(
            self.temperature_end is None or self.temperature_end > 0,
            lambda: f"temperature_end must be > 0 or None (constant), got {self.temperature_end}",
        )
        _check(self.top_k >= 0, lambda: f"top_k must be >= 0 (0 = off), got {self.top_k}")
        _check(0 < self.top_p <= 1, lambda: f"top_p must be in (0, 1] (1 = off), got {self.top_p}")
        _check(0 <= self.min_p <= 1, lambda: f"min_p must be in [0, 1] (0 = off), got {self.min_p}")
        _check(
            self.threshold is None or 0 < self.threshold <= 1,
            lambda: f"threshold must be in (0, 1] or None (off), got {self.threshold}",
        )
        _check(self.factor is None or self.factor > 0, lambda: f"factor must be > 0 or None (off), got {self.factor}")
        _check(
            self.entropy_bound is None or self.entropy_bound >= 0,
            lambda: f"entropy_bound must be >= 0 or None (off), got {self.entropy_bound}",
        )
        rules = [name for name in PARALLEL_RULES if getattr(self, name) is not None]
        _check(len(rules) <= 1, lambda: f"choose one parallel-decoding rule, not {' and '.join(rules)}")
        _check(
            self.block_length is None or self.block_length >= 1,
            lambda: f"block_length must be >= 1 or None (one block), got {self.block_length}",
        )
        _check(
            self.cache is None or self.cache in CACHES,
            lambda: f"unknown cache {self.cache!r}; choose from {sorted(CACHES)} or None (exact)",
        )
        _check(self.cfg_scale >= 0, lambda: f"cfg_scale must be >= 0 (0 = off), got {self.cfg_scale}")
        _check(self.num_samples >= 1, lambda: f"num_samples must be >= 1, got {self.num_samples}")

    def replace(self, **overrides) -> SamplerConfig:
        """`dataclasses.replace` with an error that names the valid fields."""
        unknown = set(overrides) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown sampler option(s) {sorted(unknown)}; choose from {sorted(FIELDS)}")
        return dataclasses.replace(self, **overrides)

    def at_temperature(self, temperature: float) -> SamplerConfig:
        """This config at another temperature (an annealed step's): `replace` without re-running every
        check, as the sampler makes one each step."""
        _check(temperature >= 0, lambda: f"temperature must be >= 0 (0 = greedy), got {temperature}")
        config = copy.copy(self)
        object.__setattr__(config, "temperature", temperature)  # frozen: set as dataclasses' __init__ does
        return config

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SamplerConfig:
        """Build from a checkpoint's recommendations, ignoring keys this version does not know."""
        return cls(**{k: v for k, v in d.items() if k in FIELDS})


FIELDS = tuple(f.name for f in dataclasses.fields(SamplerConfig))


def _check(ok: bool, message: Callable[[], str]) -> None:
    """Raise ValueError(message()) unless ok; the message is built only then (a config is made every
    step of an annealed run, and fifteen f-strings cost more than the checks)."""
    if not ok:
        raise ValueError(message())
