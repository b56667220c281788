"""log p(text | class) for a generative classifier: the Monte-Carlo ELBO with common random numbers and
adaptive stopping (masked models), or the exact log-likelihood (causal models), as per-token terms.

For a masked model log p(x | c) is the core's Monte-Carlo ELBO (`dlm.masking`: the number of masked
tokens l stratified over 1..L, weight L / l), drawn with the *same* masks for every class (common
random numbers), so most of the Monte-Carlo noise cancels in the differences that decide the class.
Masks are drawn in rounds: a text stops as soon as its top class leads the runner-up by `margin`
standard errors of their per-sample difference, or at `max_samples`. For a causal model the
likelihood is exact.

The ELBO estimate is a sum over positions,
    ELBO = sum_i c_i,   c_i = mean_j [ L / l_j * m_ij * log p(x_i | x masked by m_j) ],
so the per-token terms returned here are what `dlm.classify.classifiers` splits the log-odds into
(for a causal model, the per-token log-probabilities).

Every row is framed the same way (`framing`), here and in the rows a conditional model is trained on.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import torch

from dlm.generation import special_framing
from dlm.loading import LanguageModel
from dlm.masking import mask_by_count, stratified_counts, tiled_masks
from dlm.shifted import canvas_logits

# What one text's scoring gives: per class its per-token terms (L,) and its per-sample estimates of
# log p(text | class) (n,), and the estimates of log p(text) under the null prompt (n,), or None.
TextScores = tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor | None]


def framing(tokenizer, kind: str) -> tuple[list[int], list[int]]:
    """The tokens around `prompt + text` in every scored row, and in every row a conditional model is
    trained on (`training.conditional`): a masked model's special framing (<s> ... </s>, [CLS] ... [SEP]),
    a causal model's start token (BOS, else CLS, else EOS, as `LanguageModel.bos_id`) and nothing after."""
    if kind != "causal":
        return special_framing(tokenizer)
    candidates = (tokenizer.bos_token_id, tokenizer.cls_token_id, tokenizer.eos_token_id)
    start = next((t for t in candidates if t is not None), None)
    return ([start] if start is not None else []), []


# ---- masked models: Monte-Carlo ELBO with common random numbers and adaptive stopping --------------------

MASK_DESIGNS = ("tiled", "random")  # how a round's mask patterns share out the positions


def scoring_options(text: str) -> dict:
    """"ROUND:MAX:MARGIN:MASKS" (e.g. "4:24:2:tiled") -> a masked classifier's Monte-Carlo budget, as the
    keyword arguments of `GenerativeClassifier` and the "scoring" block of a `classifier.json`."""
    parts = text.split(":")
    if len(parts) != 4:
        raise ValueError(f"{text!r}: give ROUND:MAX:MARGIN:MASKS, e.g. 4:24:2:tiled")
    try:
        options = {"round_samples": int(parts[0]), "max_samples": int(parts[1]), "margin": float(parts[2]),
                   "masks": parts[3]}
    except ValueError as error:
        raise ValueError(f"{text!r}: {error}") from error
    if options["masks"] not in MASK_DESIGNS:
        raise ValueError(f"{text!r}: masks must be one of {MASK_DESIGNS}")
    if options["round_samples"] < 2 or options["max_samples"] < options["round_samples"]:
        raise ValueError(f"{text!r}: need ROUND >= 2 and MAX >= ROUND")
    if not options["margin"] > 0:
        raise ValueError(f"{text!r}: MARGIN (standard errors) must be > 0")
    return options


def score_masked(models: Sequence[LanguageModel], contexts: Sequence[list[int]], targets: list[list[int]], *,
                 priors: Sequence[float], round_samples: int, max_samples: int, margin: float, batch_size: int,
                 seed: int, null_context: list[int] | None = None, masks: str = "tiled",
                 groups: Sequence[Sequence[int]] | None = None) -> list[TextScores]:
    """Per text: the mean per-token terms per class, the per-sample ELBOs per class, and (when
    `null_context` is given) the per-sample ELBOs under the null prompt, scored with the same masks
    on `models[0]`. Masks come in rounds of `round_samples` until the text is `settled`; within a round
    they are `tiled` over the positions (`dlm.masking.tiled_masks`) or drawn independently (`random`).

    groups: texts made of several targets (a long text's pieces, each scored in its own row), as lists of
    target indices; a text's per-sample ELBO is the sum of its pieces' (each piece has its own masks), its
    per-token terms are theirs end to end, and it stops as a whole. Default: one target per text."""
    if masks not in MASK_DESIGNS:
        raise ValueError(f"masks must be one of {MASK_DESIGNS}, got {masks!r}")
    groups = [list(g) for g in groups] if groups is not None else [[i] for i in range(len(targets))]
    num_classes = len(models)
    generators = [torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(repr(t).encode())) for t in targets]
    token_sums = [torch.zeros(num_classes, len(t), dtype=torch.float64) for t in targets]  # sum over samples
    estimates: list[list[list[torch.Tensor]]] = [[[] for _ in range(num_classes)] for _ in targets]
    null_estimates: list[list[torch.Tensor]] = [[] for _ in targets]  # log p(x) under the null prompt

    def summed(group: list[int]) -> torch.Tensor:  # (C, n): the text's per-sample ELBOs
        return sum(torch.stack([torch.cat(e) for e in estimates[i]]) for i in group)

    active = list(range(len(groups)))
    while active:
        drawn = {}
        for i in (i for g in active for i in groups[g]):
            length = len(targets[i])
            counts = stratified_counts(round_samples, length, generators[i])
            drawn[i] = (tiled_masks(counts, length, generators[i]) if masks == "tiled" else
                        mask_by_count(torch.ones(round_samples, length, dtype=torch.bool), counts, generators[i]))
        for c in range(num_classes):
            terms = masked_terms(models[c], contexts[c], {i: targets[i] for i in drawn}, drawn, batch_size)
            for i, t in terms.items():  # (n, L)
                token_sums[i][c] += t.sum(dim=0)
                estimates[i][c].append(t.sum(dim=1))
        if null_context is not None:  # the same masks again, under the null prompt
            terms = masked_terms(models[0], null_context, {i: targets[i] for i in drawn}, drawn, batch_size)
            for i, t in terms.items():
                null_estimates[i].append(t.sum(dim=1))
        active = [g for g in active if not settled(summed(groups[g]), priors, margin, max_samples)]
    scores: list[TextScores] = []
    for group in groups:
        n = len(torch.cat(estimates[group[0]][0]))
        per_token = [torch.cat([token_sums[i][c] / n for i in group]) for c in range(num_classes)]
        samples = summed(group)
        null = sum(torch.cat(null_estimates[i]) for i in group) if null_context is not None else None
        scores.append((per_token, list(samples), null))
    return scores


def settled(samples: torch.Tensor, priors: Sequence[float], margin: float, max_samples: int) -> bool:
    """True when the top class's lead over the runner-up is `margin` standard errors, or at the cap."""
    n = samples.shape[1]
    if n >= max_samples:
        return True
    scores = samples.mean(dim=1) + torch.log(torch.tensor(priors, dtype=torch.float64))
    top, second = scores.topk(2).indices.tolist()
    stderr = float((samples[top] - samples[second]).std() / math.sqrt(n))
    return stderr == 0.0 or float(scores[top] - scores[second]) > margin * stderr


def masked_terms(lm: LanguageModel, context: list[int], targets: dict[int, list[int]],
                 masks: dict[int, torch.Tensor], batch_size: int) -> dict[int, torch.Tensor]:
    """Per text: (n, L) float64 terms L / l_j * m_ij * log p(x_i | context, x masked by m_j)."""
    prefix, suffix = framing(lm.tokenizer, lm.kind)
    start = len(prefix) + len(context)
    rows = []  # (text, row of its masks)
    for i, m in masks.items():
        rows += [(i, j) for j in range(m.shape[0])]
    rows.sort(key=lambda r: len(targets[r[0]]))  # similar lengths share a batch: little padding
    out = {i: torch.zeros(m.shape, dtype=torch.float64) for i, m in masks.items()}
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else lm.mask_id
    for begin in range(0, len(rows), batch_size):
        batch = rows[begin : begin + batch_size]
        width = start + max(len(targets[i]) for i, _ in batch) + len(suffix)
        clean = torch.full((len(batch), width), pad, dtype=torch.long)
        masked = torch.zeros(len(batch), width, dtype=torch.bool)
        attention = torch.zeros(len(batch), width, dtype=torch.long)
        for b, (i, j) in enumerate(batch):
            seq = prefix + context + targets[i] + suffix
            clean[b, : len(seq)] = torch.tensor(seq)
            attention[b, : len(seq)] = 1
            masked[b, start : start + len(targets[i])] = masks[i][j]
        noisy = clean.masked_fill(masked, lm.mask_id).to(lm.device)
        with torch.inference_mode():
            logits = canvas_logits(lm.model, noisy, attention.to(lm.device))
            picked = logits[masked.to(lm.device)].float()  # (M, V): only where a token is masked
            logp = torch.log_softmax(picked, dim=-1).gather(-1, clean[masked].to(lm.device).unsqueeze(-1)).squeeze(-1)
        logp = logp.double().cpu()
        full = torch.zeros(len(batch), width, dtype=torch.float64)
        full[masked] = logp
        for b, (i, j) in enumerate(batch):
            length = len(targets[i])
            weight = length / float(masks[i][j].sum())
            out[i][j] = full[b, start : start + length] * weight
    return out


# ---- causal models: exact ---------------------------------------------------------------------------------


def score_causal(models: Sequence[LanguageModel], contexts: Sequence[list[int]], targets: list[list[int]], *,
                 batch_size: int, null_context: list[int] | None = None,
                 groups: Sequence[Sequence[int]] | None = None) -> list[TextScores]:
    """Per text: the per-token log-probabilities per class, the (single, exact) log-likelihood per class,
    and (when `null_context` is given) log p(text) under the null prompt on `models[0]`. groups: as in
    `score_masked` (a text's pieces, each scored from the start token; their log-likelihoods add)."""
    groups = [list(g) for g in groups] if groups is not None else [[i] for i in range(len(targets))]
    num_classes = len(models)
    per_token = [causal_terms(models[c], contexts[c], targets, batch_size)
                 for c in range(num_classes)]  # [class][target] (L,)
    null = causal_terms(models[0], null_context, targets, batch_size) if null_context is not None else None
    out: list[TextScores] = []
    for group in groups:
        terms = [torch.cat([per_token[c][i] for i in group]) for c in range(num_classes)]
        out.append((terms, [t.sum().reshape(1) for t in terms],
                    None if null is None else torch.cat([null[i] for i in group]).sum().reshape(1)))
    return out


def causal_terms(lm: LanguageModel, context: list[int], targets: list[list[int]],
                 batch_size: int) -> list[torch.Tensor]:
    """Per text: (L,) float64 exact log p(x_i | BOS, context, x_<i)."""
    prefix = framing(lm.tokenizer, lm.kind)[0] + context
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    out: list[torch.Tensor | None] = [None] * len(targets)
    order = sorted(range(len(targets)), key=lambda i: len(targets[i]))
    for begin in range(0, len(order), batch_size):
        batch = order[begin : begin + batch_size]
        width = len(prefix) + max(len(targets[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attention = torch.zeros(len(batch), width, dtype=torch.long)
        for b, i in enumerate(batch):
            seq = prefix + targets[i]
            ids[b, : len(seq)] = torch.tensor(seq)
            attention[b, : len(seq)] = 1
        with torch.inference_mode():
            logits = lm.model(input_ids=ids.to(lm.device), attention_mask=attention.to(lm.device)).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:].to(lm.device).unsqueeze(-1))
        logp = logp.squeeze(-1).double().cpu()  # (b, width - 1): position k predicts ids[k + 1]
        for b, i in enumerate(batch):
            first = len(prefix) - 1
            out[i] = logp[b, first : first + len(targets[i])]
    return out  # type: ignore[return-value]
