"""The model families dlm runs, in one registry: how each is detected, loaded, streamed and scored.

A family names its pieces by import path ("module:function") and they are imported on first use, so
the front doors (`dlm.load`, `dlm.stream`, `dlm.log_likelihood`) look a family up here instead of
importing every family's module, and no module of dlm imports another in a circle.

Adding a family: write its generation (a `dlm.generation.Generation` subclass and a function with
`stream`'s signature) and, if it has one, its likelihood (`log_likelihood`'s signature), then
`register(Family(...))` them, e.g. from the module that defines them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    kind: str  # the name `dlm.load(kind=...)` and `LanguageModel.kind` use
    auto_class: str  # the transformers Auto class that loads its checkpoints
    stream: str  # "module:function" with `dlm.stream`'s signature, returning a Generation
    score: str | None = None  # "module:function" with `log_likelihood`'s signature; None: no likelihood
    no_score: str = ""  # why there is no likelihood (shown in the error)
    model_types: tuple[str, ...] = ()  # config.model_type values that always belong to this family
    setup: str | None = None  # a module to import before loading (it registers its classes with transformers)
    description: str = ""  # one line for errors and docs

    def stream_function(self) -> Callable:
        return _resolve(self.stream)

    def score_function(self) -> Callable:
        if self.score is None:
            raise ValueError(self.no_score or f"dlm has no likelihood for {self.kind} models")
        return _resolve(self.score)

    def prepare(self) -> None:
        """Import what the family needs before transformers can read its checkpoints."""
        if self.setup:
            importlib.import_module(self.setup)


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add (or replace) a family; returns it."""
    FAMILIES[family.kind] = family
    return family


def family(kind: str) -> Family:
    """The family named `kind`, or a ValueError listing the known ones."""
    try:
        return FAMILIES[kind]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}; choose from {sorted(FAMILIES)}") from None


def _resolve(path: str) -> Callable:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


# ---- the built-in families ------------------------------------------------------------------------

register(Family(
    "masked", "AutoModelForMaskedLM", stream="dlm.sampler:masked_stream", score="dlm.likelihood:masked_log_likelihood",
    description="masked diffusion: any masked LM, or a causal LM made bidirectional and shifted (dlm.shifted)",
))
register(Family(
    "causal", "AutoModelForCausalLM", stream="dlm.ar:causal_stream", score="dlm.likelihood:causal_log_likelihood",
    description="autoregressive: any causal LM, one token per step with a key/value cache",
))
register(Family(
    "continuous", "AutoModel", stream="dlm.continuous:continuous_stream", model_types=("dlm-continuous",),
    setup="dlm.continuous",
    no_score="dlm has no likelihood bound for continuous-diffusion models (their training loss is an x0 MSE plus a "
             "rounding cross-entropy, not an ELBO)",
    description="continuous (Gaussian, embedding-space) diffusion: dlm's own ContinuousDiffusionLM",
))
