"""What a classifier returns for a text (`Prediction`) and what every classifier offers (`Classifier`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Prediction:
    """The decision for one text, with what it rests on."""

    label: str  # the most probable class
    probabilities: dict[str, float]  # p(class | text), sums to 1, in the classifier's label order
    log_likelihoods: dict[str, float]  # nats: log p(text | class) (an ELBO for masked models); {} if discriminative
    runner_up: str  # the second most probable class (the label itself when there is only one)
    tokens: list[str]  # display text of each scored token (after any truncation)
    contributions: list[float]  # per token: its share of the top class's score minus the runner-up's
    truncated: bool  # True when the text was cut to fit
    nfe: int  # sequences the network scored for this text (forward passes at batch 1)
    logits: dict[str, float] = field(default_factory=dict)  # untempered scores z_c: log p(x | c) + log p(c)
    stderr: float = 0.0  # Monte-Carlo standard error of z_top - z_runner_up (0 when exact)
    log_marginal: float | None = None  # nats: log p(text) under the null prompt, same masks; None unless asked

    @property
    def pmi(self) -> dict[str, float]:
        """log p(text | class) - log p(text) per class (needs `classify(..., marginal=True)`)."""
        if self.log_marginal is None:
            raise ValueError("no log p(text): classify with marginal=True, with a model trained with label dropout")
        return {c: ll - self.log_marginal for c, ll in self.log_likelihoods.items()}


class Classifier(Protocol):
    """What the app and the CLI need from a classifier."""

    labels: tuple[str, ...]
    temperature: float

    def classify(self, texts: Sequence[str]) -> list[Prediction]: ...


# ---- the generative classifier -----------------------------------------------------------------------
