"""Classification by likelihood, and the seam a trained classifier plugs into.

    clf = ZeroShotClassifier(lm, labels=["positive", "negative"],
                             prompts=["A positive review:", "A negative review:"])
    [prediction] = clf.classify(["A gripping, moving film."])
    prediction.label, prediction.probabilities, prediction.contributions

Anything with `labels` and `classify(texts) -> list[Prediction]` is a `Classifier`; the app only
talks to that protocol, so a trained classifier (one model per class, or a class-conditioned one)
replaces the zero-shot one without touching the UI.

The zero-shot classifier scores each text under one language model given each label's verbalised
prompt, and applies Bayes' rule with uniform priors:  p(c | x) ∝ p(x | prompt_c).
For a masked model, log p(x | prompt_c) is the core's Monte-Carlo ELBO (`dlm.likelihood`: the
number of masked tokens l stratified over 1..L, weight L / l), drawn with the *same* masks for every
class (common random numbers), so most of the Monte-Carlo noise cancels in the differences that
decide the class. For a causal model it is exact.

Explanations come for free: the ELBO estimate is a sum over positions,
    ELBO = sum_i c_i,   c_i = mean_j [ L / l_j * m_ij * log p(x_i | x masked by m_j) ],
so the log-odds of the top class against the runner-up splits exactly into per-token terms
c_i(top) - c_i(runner-up) (for a causal model, the per-token log-probabilities).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from dlm.generation import encode, special_framing, token_pieces
from dlm.loading import LanguageModel
from dlm.masking import mask_by_count, stratified_counts

MAX_TOKENS = 128  # texts are cut to this many tokens before scoring (cost grows with length)


@dataclass(frozen=True)
class Prediction:
    """The decision for one text, with what it rests on."""

    label: str  # the most probable class
    probabilities: dict[str, float]  # p(class | text), sums to 1, in the classifier's label order
    log_likelihoods: dict[str, float]  # nats: log p(text | class) (an ELBO for masked models)
    runner_up: str  # the second most probable class (the label itself when there is only one)
    tokens: list[str]  # display text of each scored token (after any truncation)
    contributions: list[float]  # per token, nats: its share of log p(x | label) - log p(x | runner_up)
    truncated: bool  # True when the text was cut to fit
    nfe: int  # forward passes spent on this text


class Classifier(Protocol):
    """What the app needs from a classifier."""

    labels: tuple[str, ...]

    def classify(self, texts: Sequence[str]) -> list[Prediction]: ...


@dataclass
class ZeroShotClassifier:
    """p(class | text) from one language model's likelihood of the text after each class's prompt."""

    lm: LanguageModel
    labels: Sequence[str]  # class names, as shown to the user
    prompts: Sequence[str]  # one verbalised prompt per class, e.g. "A positive review:"
    num_samples: int = 32  # Monte-Carlo mask patterns per text (masked models), shared by all classes
    seed: int = 0  # the masks' randomness, so the same text always gets the same scores
    max_tokens: int = MAX_TOKENS  # longer texts are cut (Prediction.truncated says so)
    batch_size: int = 32  # mask patterns per forward pass

    def __post_init__(self) -> None:
        self.labels = tuple(self.labels)
        self.prompts = tuple(self.prompts)
        if len(self.labels) < 2:
            raise ValueError(f"give at least two labels, got {list(self.labels)}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be distinct, got {list(self.labels)}")
        if len(self.prompts) != len(self.labels):
            raise ValueError(f"one prompt per label: {len(self.labels)} labels, {len(self.prompts)} prompts")
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")

    def classify(self, texts: Sequence[str]) -> list[Prediction]:
        return [self.classify_one(text) for text in texts]

    def classify_one(self, text: str) -> Prediction:
        if not text or not text.strip():
            raise ValueError("text to classify is empty")
        target = encode(self.lm.tokenizer, text)
        room = self._room()
        limit = min(self.max_tokens, room)
        if limit < 1:
            raise ValueError("the label prompts leave no room for the text; shorten them")
        truncated = len(target) > limit
        target = target[:limit]
        contexts = [encode(self.lm.tokenizer, prompt) for prompt in self.prompts]
        if self.lm.kind == "causal":
            per_token, nfe = [causal_token_log_probs(self.lm, c, target) for c in contexts], len(contexts)
        else:
            generator = torch.Generator().manual_seed(self.seed)
            counts = stratified_counts(self.num_samples, len(target), generator)  # (n,)
            masks = mask_by_count(torch.ones(self.num_samples, len(target), dtype=torch.bool), counts, generator)
            per_token = [masked_token_elbo(self.lm, c, target, masks, self.batch_size) for c in contexts]
            nfe = len(contexts) * self.num_samples
        totals = [float(t.sum()) for t in per_token]
        probabilities = posterior(totals)
        order = sorted(range(len(self.labels)), key=lambda i: -probabilities[i])
        top, second = order[0], order[1]
        return Prediction(
            label=self.labels[top],
            probabilities=dict(zip(self.labels, probabilities)),
            log_likelihoods=dict(zip(self.labels, totals)),
            runner_up=self.labels[second],
            tokens=token_pieces(self.lm.tokenizer, target),
            contributions=(per_token[top] - per_token[second]).tolist(),
            truncated=truncated,
            nfe=nfe,
        )

    def _room(self) -> int:
        """Tokens left for the text after the longest prompt and the framing specials."""
        limit = self.lm.max_positions
        if limit is None:
            return self.max_tokens
        prefix, suffix = special_framing(self.lm.tokenizer)
        if self.lm.kind == "causal":
            prefix, suffix = ([self.lm.bos_id] if self.lm.bos_id is not None else []), []
        longest = max(len(encode(self.lm.tokenizer, p)) for p in self.prompts)
        return limit - len(prefix) - len(suffix) - longest


def posterior(log_likelihoods: Sequence[float]) -> list[float]:
    """Bayes' rule with uniform priors: softmax of the log-likelihoods (in float64)."""
    top = max(log_likelihoods)
    weights = [math.exp(x - top) for x in log_likelihoods]
    total = sum(weights)
    return [w / total for w in weights]


def masked_token_elbo(
    lm: LanguageModel, context: list[int], target: list[int], masks: torch.Tensor, batch_size: int = 32
) -> torch.Tensor:
    """(L,) float64 per-token terms of the Monte-Carlo ELBO of `target` given `context`; they sum to it.

    masks: (n, L) bool over the target tokens, each row masking l_j >= 1 of them; pass the same masks
    for every context to compare classes with common random numbers. Term i is
    mean_j [ L / l_j * m_ij * log p(x_i | context, target masked by m_j) ], the estimator of
    `dlm.likelihood.elbo_estimates` split by position.
    """
    num_masked = masks.sum(dim=1)  # (n,)
    if (num_masked == 0).any():
        raise ValueError("every mask pattern must mask at least one token")
    prefix, suffix = special_framing(lm.tokenizer)
    ids = torch.tensor(prefix + context + target + suffix, device=lm.device)  # (T,)
    start = len(prefix) + len(context)
    scored = slice(start, start + len(target))
    terms = []
    with torch.inference_mode():
        for rows in masks.split(batch_size):
            rows = rows.to(lm.device)  # (b, L)
            noisy = ids.expand(rows.shape[0], -1).clone()  # (b, T)
            noisy[:, scored] = noisy[:, scored].masked_fill(rows, lm.mask_id)
            logits = lm.model(input_ids=noisy, attention_mask=torch.ones_like(noisy)).logits[:, scored].float()
            logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[scored].expand(rows.shape[0], -1).unsqueeze(-1))
            terms.append((logp.squeeze(-1) * rows).double().cpu())  # (b, L)
    weights = len(target) / num_masked.double()  # (n,) = 1 / p_mask
    return (torch.cat(terms) * weights.unsqueeze(1)).mean(dim=0)


def causal_token_log_probs(lm: LanguageModel, context: list[int], target: list[int]) -> torch.Tensor:
    """(L,) float64 exact log p(x_i | BOS, context, x_<i) of each target token."""
    prefix = [lm.bos_id] if lm.bos_id is not None else []
    if not prefix and not context:
        raise ValueError("this causal model has no BOS token, so every label needs a non-empty prompt")
    ids = torch.tensor([prefix + context + target], device=lm.device)  # (1, T)
    with torch.inference_mode():
        logits = lm.model(input_ids=ids).logits[0, :-1].float()  # (T-1, V): predicts ids[1:]
    logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[0, 1:].unsqueeze(-1)).squeeze(-1)
    return logp[-len(target) :].double().cpu()


# ---- measuring a classifier against known labels ---------------------------------------------------


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if total == 0:
        return (0.0, 1.0)
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class Evaluation:
    """Accuracy and confusion matrix against the file's labels."""

    correct: int
    total: int  # rows whose label is one of the classes
    unknown: list[str]  # labels in the file that are not classes
    classes: list[str]
    confusion: list[list[int]]  # confusion[i][j]: texts of class i predicted as class j

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else float("nan")


def evaluate(predicted: list[str], truth: list[str], classes: list[str]) -> Evaluation:
    """Compare predictions with true labels (matched to the classes ignoring case and spaces)."""
    lookup = {c.casefold(): c for c in classes}
    counts = {t: {p: 0 for p in classes} for t in classes}
    correct = total = 0
    unknown: list[str] = []
    for p, t in zip(predicted, truth):
        t_class = lookup.get(t.strip().casefold())
        if t_class is None:
            unknown.append(t)
            continue
        counts[t_class][p] += 1
        total += 1
        correct += t_class == p
    confusion = [[counts[t][p] for p in classes] for t in classes]
    return Evaluation(correct, total, unknown, list(classes), confusion)
