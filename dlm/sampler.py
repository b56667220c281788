"""The masked-diffusion sampler: start from masks, reveal a few positions per step.

Each step runs the model once over the whole canvas, takes its guess at every masked position (the
argmax, or a sample (temperature / top-k / top-p; the temperature may anneal over a block's steps,
`temperature_end`) wherever a token is committed or the choice reads it), scores the still-masked
positions (random, confidence, margin, entropy, or the dilated order's fixed ranks) and commits the
best of them; how many follows the schedule, or a parallel rule
(a confidence threshold, Fast-dLLM's factor rule or the EB-sampler's entropy bound) that may commit
several positions per step when the model is sure of them. Positions split into semi-autoregressive
blocks are finished left to right (LLaDA's `block_length`). Classifier-free guidance runs the
conditional and the prompt-masked canvas in one batch: logits = uncond + (1 + s) * (cond - uncond),
as in LLaDA. The logits come from `dlm.shifted.canvas_logits`, so a shifted model (Dream-style)
needs nothing special here.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from dlm.cache import KVCache
from dlm.config import SamplerConfig
from dlm.generation import Generation, check_fits, forbidden_ids, infill_canvas, prompt_canvas
from dlm.loading import LanguageModel
from dlm.sampling import argmax, dilated_order, entropy, forbid, position_scores, row_uniforms, sample_tokens
from dlm.schedules import num_transfer_tokens, step_temperature
from dlm.shifted import canvas_logits
from dlm.trace import Step


class MaskedGeneration(Generation):
    """A masked-diffusion run; see `dlm.stream` for how to start one."""

    def _run(self) -> Iterator[Step]:
        config, lm = self.config, self.lm
        device, mask_id = lm.device, lm.mask_id
        canvas = self.initial.to(device)  # (B, T)
        num_positions = canvas.shape[1]
        to_generate = ~self.canvas.fixed  # (T,)
        blocks = block_masks(to_generate, config.block_length)
        budget = allocate_steps([int(b.sum()) for b in blocks], config.steps)
        forbidden = torch.tensor(forbidden_ids(lm, config.allow_eos), dtype=torch.long, device=device)
        prompt = (self.canvas.fixed & ~self.canvas.hidden).to(device)  # masked in the unconditional branch
        cache = KVCache(lm.model) if config.cache else None
        guess = torch.full_like(canvas, -1)  # (B, T): the model's latest guess everywhere
        confidence = torch.zeros(canvas.shape, device=device)
        nfe, index = 0, 0
        for block, block_steps in zip(blocks, budget):
            block = block.to(device)
            counts = num_transfer_tokens(int(block.sum()), block_steps, config.schedule)
            span = block.nonzero().flatten()
            window = (int(span[0]), num_positions if config.cache == "prefix" else int(span[-1]) + 1)
            dilated = None  # (T,) dilated remasking's order over this block's positions
            if config.remasking == "dilated":
                dilated = torch.zeros(num_positions, device=device)
                dilated[span] = dilated_order(len(span), block_steps).to(device)
            for i in range(int(block.sum())):  # a step commits >= 1 per row, so this bounds the loop
                masked = (canvas == mask_id) & block  # (B, T)
                if not masked.any():
                    break
                # a block's first step (and every step without a cache) sees the whole canvas; with a
                # cache the later ones feed only the window and reuse the other keys and values
                lo, hi = window if cache is not None and i > 0 else (0, num_positions)
                open_here = canvas[:, lo:hi] == mask_id  # (B, W) every mask in the window, this block's and later
                if cache is not None and i == 0:
                    with cache.fill():
                        rows = self._logits(canvas, prompt, open_here)
                else:
                    rows = self._logits(canvas, prompt, open_here, cache, (lo, hi))  # (N, V) the open positions'
                nfe += 2 if config.cfg_scale > 0 else 1
                # Everything after the forward works on rows: the positions of the window still masked
                # (the only ones whose guess is shown or can be committed; a committed position keeps the
                # token and confidence it was committed with), and of those the block's (`eligible`, the
                # candidates now). Sampling is the costly part, so it happens only where it can matter:
                # where low-confidence order or a threshold / factor rule reads the sampled token's
                # probability, at the candidates that could change the choice (`sample_candidates`); else
                # (entropy, margin or random order) only at the positions committed. The same uniforms
                # serve every way, so the text is the same; unsampled guesses show the argmax.
                masked_here = masked[:, lo:hi]  # (B, W) the candidates
                open_flat = open_here.flatten().nonzero().flatten()  # (N,) their flat positions, ascending
                rows = forbid(rows, forbidden)
                eligible = masked_here.flatten().index_select(0, open_flat).nonzero().flatten()  # (M,) candidate rows
                guess_rows = argmax(rows)  # (N,)
                probs = torch.softmax(rows, dim=-1)  # the model's own belief, before temperature
                late = sampled_late(config)
                k = counts[i] if i < len(counts) else 0  # parallel decoding may finish the block early
                sampling = config  # this step's temperature (annealed when temperature_end is set)
                if config.temperature_end is not None and config.temperature > 0:  # greedy stays greedy
                    sampling = config.at_temperature(step_temperature(config.temperature, config.temperature_end,
                                                                      i, block_steps))
                if config.temperature > 0:
                    draw = row_uniforms(self.generators, num_positions, device)[:, lo:hi]  # full rows: batch-invariant
                order = None
                if config.remasking == "random":
                    order = row_uniforms(self.generators, num_positions, device)[:, lo:hi][masked_here]
                elif dilated is not None:
                    order = dilated[lo:hi].expand_as(masked_here)[masked_here]
                order_given = config.remasking in ("random", "dilated")  # read no probabilities
                candidates = None if order_given and config.entropy_bound is None else probs.index_select(0, eligible)
                value = None  # (M,) the candidates' scores; low-confidence order reads the sampled tokens
                if config.remasking != "low_confidence":
                    value = position_scores(candidates, guess_rows.index_select(0, eligible), config.remasking, order)
                unsampled = None  # (M,) candidates left unsampled: they can be neither committed nor ranked
                if config.temperature > 0 and not late:
                    unsampled = sample_candidates(rows, probs, guess_rows, eligible,
                                                  open_flat.index_select(0, eligible) // (hi - lo),
                                                  draw[masked_here], sampling, k, value)
                if value is None:
                    value = position_scores(candidates, guess_rows.index_select(0, eligible), config.remasking)
                confidence_rows = probs.gather(-1, guess_rows.unsqueeze(-1)).squeeze(-1)  # (N,)
                score = torch.full(masked_here.shape, float("-inf"), device=device)
                confidence_here = torch.zeros(masked_here.shape, device=device)
                confidence_here[open_here] = confidence_rows
                if unsampled is not None and bool(unsampled.any()):  # shown with the argmax, never chosen
                    value = value.masked_fill(unsampled, float("-inf"))
                    confidence_here.view(-1)[open_flat.index_select(0, eligible[unsampled])] = 0.0
                score[masked_here] = value.float()
                spread = None
                if config.entropy_bound is not None:  # only where a token may be committed
                    spread = torch.zeros(masked_here.shape, device=device)
                    spread[masked_here] = -value if config.remasking == "entropy" else entropy(candidates)
                commit = torch.zeros_like(masked)
                commit[:, lo:hi] = choose_positions(score, confidence_here, masked_here, k, config.threshold,
                                                    factor=config.factor, entropy=spread,
                                                    entropy_bound=config.entropy_bound)
                if late:
                    chosen = commit[:, lo:hi][open_here].nonzero().flatten()  # (C,) rows committed now
                    picked = sample_tokens(rows.index_select(0, chosen).unsqueeze(0), sampling,
                                           draw[commit[:, lo:hi]].unsqueeze(0))[0]
                    guess_rows[chosen] = picked
                    confidence_rows[chosen] = probs.index_select(0, chosen).gather(-1, picked.unsqueeze(-1)).squeeze(-1)
                guess[:, lo:hi][open_here] = guess_rows
                confidence[:, lo:hi][open_here] = confidence_rows.float()
                canvas = torch.where(commit, guess, canvas)
                yield Step(
                    index=index,
                    canvas=canvas.cpu(),
                    guess=guess.to("cpu", copy=True),  # updated in place by the next step
                    confidence=confidence.to("cpu", copy=True),
                    committed=commit.cpu(),
                    nfe=nfe,
                    elapsed=self._elapsed(),
                )
                index += 1

    def _logits(
        self,
        canvas: torch.Tensor,
        prompt: torch.Tensor,
        wanted: torch.Tensor,
        cache: KVCache | None = None,
        window: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """(N, V) float32 logits of the positions `wanted` (B, W) of the window (the whole canvas without
        a cache), in row-major order, guided when cfg_scale > 0. Without a cache the vocabulary projection
        runs at those positions only (`canvas_logits`' rows); with one, the window's positions are fed, the
        rest of the canvas seen through the cached keys and values."""
        scale = self.config.cfg_scale
        batch = canvas
        if scale > 0:
            batch = torch.cat([canvas, canvas.masked_fill(prompt, self.lm.mask_id)])
            wanted = torch.cat([wanted, wanted])
        if cache is None:
            logits = canvas_logits(self.lm.model, batch, torch.ones_like(batch), rows=wanted).float()
        else:
            logits = cache.forward(batch, *window)[wanted]
        if scale > 0:
            cond, uncond = logits.chunk(2)
            return uncond + (1 + scale) * (cond - uncond)
        return logits


def sample_candidates(
    rows: torch.Tensor,
    probs: torch.Tensor,
    guess_rows: torch.Tensor,
    eligible: torch.Tensor,
    sample_of: torch.Tensor,
    uniforms: torch.Tensor,
    config: SamplerConfig,
    k: int,
    value: torch.Tensor | None = None,
    chunk: int = 8,
) -> torch.Tensor:
    """Sample the candidates whose sampled token a step's choice reads, writing the tokens into
    `guess_rows`; returns (M,) bool, the candidates left unsampled.

    The choice reads a sampled token only through its probability c <= p_max (the row's top
    probability): in low-confidence order (the score is c) and in the threshold and factor rules. So a
    candidate needs its sample only where it could change the choice: where c could reach the threshold
    (p_max >= threshold), pass the factor rule (2 (1 - p_max) < factor, the test at rank 1, the loosest),
    or rank among the k best. In entropy, margin or random order the k best are known without a sample; in
    low-confidence order candidates are sampled in descending p_max, `chunk` at a time, until the k-th
    best score sampled exceeds every p_max left. The committed positions and tokens are those of
    sampling every candidate (the same uniforms); the caller shows an unsampled candidate's argmax and
    keeps it out of the choice. The entropy bound reads the whole order: every candidate is sampled.

    rows, probs: (N, V) the window's masked rows; guess_rows: (N,) their argmax; eligible: (M,) the
    candidate rows; sample_of: (M,) which sample each belongs to; uniforms: (M,) their draws; value:
    (M,) the candidates' scores where the order reads no sample (None: low-confidence order).
    """
    m = eligible.numel()
    top = probs.index_select(0, eligible).gather(-1, guess_rows.index_select(0, eligible).unsqueeze(-1)).flatten()
    if config.threshold is not None:  # in choose_positions' own arithmetic, so a tie at the threshold counts
        todo = (top >= config.threshold).nonzero().flatten().tolist()
    elif config.factor is not None:  # rank 1 is the loosest: (1 + 1)(1 - c) < factor
        todo = (2 * (1 - top) < config.factor).nonzero().flatten().tolist()
    elif config.entropy_bound is not None:
        todo = list(range(m))
    else:
        todo = []
    top, group = top.tolist(), sample_of.tolist()
    want = max(k, 1)  # at least what the schedule takes; more only samples more
    ranked = value is not None  # the order needs no sample
    bound = value.tolist() if ranked else top  # a candidate's score, or the most it can be
    queues: dict[int, list[int]] = {}  # per sample: its candidates in the order in which they may rank
    for j in sorted(range(m), key=lambda j: -bound[j]):  # stable: ties in position order, as choose_positions
        queues.setdefault(group[j], []).append(j)
    for b, queue in queues.items():
        todo += queue[:want]
        queues[b] = queue[want:]
    left, score = [True] * m, [0.0] * m
    while todo:
        todo = sorted(j for j in set(todo) if left[j])
        if todo:
            picked = torch.tensor(todo, device=eligible.device)
            chosen = eligible.index_select(0, picked)
            tokens = sample_tokens(rows.index_select(0, chosen).unsqueeze(0), config,
                                   uniforms.index_select(0, picked).unsqueeze(0))[0]
            guess_rows[chosen] = tokens
            chances = probs.index_select(0, chosen).gather(-1, tokens.unsqueeze(-1)).flatten().tolist()
            for j, c in zip(todo, chances):
                left[j], score[j] = False, c
        todo = []
        if ranked:
            break
        for b, queue in queues.items():  # low-confidence order: on while a row left could still rank
            while queue and not left[queue[0]]:
                queue.pop(0)
            mine = sorted((score[j] for j in range(m) if group[j] == b and not left[j]), reverse=True)
            if queue and (len(mine) < want or mine[want - 1] <= top[queue[0]]):
                todo += queue[:chunk]
                queues[b] = queue[chunk:]
    return torch.tensor(left, dtype=torch.bool, device=eligible.device)


def sampled_late(config: SamplerConfig) -> bool:
    """True when which positions a step commits does not depend on the tokens sampled there, so only the
    committed positions need sampling: the order comes from entropy, margin, random or dilated remasking,
    and no threshold or factor rule reads the sampled tokens' confidence."""
    return (config.temperature > 0 and config.remasking in ("entropy", "margin", "random", "dilated")
            and config.threshold is None and config.factor is None)  # an entropy bound reads no sample


def choose_positions(
    score: torch.Tensor,
    confidence: torch.Tensor,
    eligible: torch.Tensor,
    k: int,
    threshold: float | None,
    *,
    factor: float | None = None,
    entropy: torch.Tensor | None = None,
    entropy_bound: float | None = None,
) -> torch.Tensor:
    """Which positions to commit: the k best-scored eligible ones per row, plus what a parallel rule adds;
    never fewer than one while any remain.

    - threshold (Fast-dLLM): every eligible position whose confidence reaches it;
    - factor (Fast-dLLM's factor rule): the n most confident, for the largest n such that
      (m + 1)(1 - c_(m)) < factor for every m <= n, c_(m) the m-th highest confidence;
    - entropy_bound (EB-sampler, Ben-Hamu et al. 2025): the longest run of positions in score order
      whose summed entropy minus the largest entropy among them stays <= the bound (nats), so
      positions are committed together only while the error they may add together stays bounded.

    score, confidence, entropy: (B, T) float; eligible: (B, T) bool. Returns (B, T) bool.
    """
    b, t = score.shape
    order = score.masked_fill(~eligible, float("-inf")).argsort(dim=1, descending=True, stable=True)
    if threshold is None and factor is None and entropy_bound is None:  # the schedule's k (>= 1) best
        return eligible & torch.zeros_like(eligible).scatter_(1, order[:, : max(k, 1)], True)
    remaining = eligible.sum(dim=1)  # (B,)
    if threshold is not None:
        above = eligible & (confidence >= threshold)
    elif factor is not None:  # in confidence order: (n + 1)(1 - c_(n)) < factor
        def passes(order):
            n = torch.arange(1, t + 1, device=score.device)
            return (n + 1) * (1 - confidence.gather(1, order)) < factor
        above = _longest_prefix(confidence, eligible, passes)
    else:  # an entropy bound, in score order: summed entropy minus its largest <= the bound
        if entropy is None:
            raise ValueError("an entropy bound needs the positions' entropies")

        def passes(order):
            ranked = entropy.gather(1, order).masked_fill(~eligible.gather(1, order), 0.0)
            return ranked.cumsum(1) - ranked.cummax(1).values <= entropy_bound
        above = _longest_prefix(score, eligible, passes)
    want = torch.full_like(remaining, k)
    want = torch.where(above.any(dim=1), want, want.clamp(min=1))  # at least one per step
    want = torch.minimum(want, remaining)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(t, device=score.device).expand(b, t))
    return eligible & ((ranks < want.unsqueeze(1)) | above)


def _longest_prefix(key: torch.Tensor, eligible: torch.Tensor, passes) -> torch.Tensor:
    """(B, T) bool: per row, the eligible positions in descending `key` order for as long as each passes;
    passes(order) gets the (B, T) ranking and says, rank by rank, whether that prefix may be committed."""
    order = key.masked_fill(~eligible, float("-inf")).argsort(dim=1, descending=True, stable=True)
    keep = (passes(order) & eligible.gather(1, order)).long().cumprod(1).bool()
    return torch.zeros_like(eligible).scatter_(1, order, keep)


def block_masks(to_generate: torch.Tensor, block_length: int | None) -> list[torch.Tensor]:
    """Split the positions to generate into consecutive blocks of `block_length` canvas positions,
    counted from the first one; blocks with nothing to generate are dropped. (T,) bool each."""
    if block_length is None:
        return [to_generate]
    positions = to_generate.nonzero().flatten()
    start, end = int(positions[0]), int(positions[-1]) + 1
    blocks = []
    for lo in range(start, end, block_length):
        block = torch.zeros_like(to_generate)
        block[lo : lo + block_length] = to_generate[lo : lo + block_length]
        if block.any():
            blocks.append(block)
    return blocks


def allocate_steps(sizes: list[int], steps: int) -> list[int]:
    """Share `steps` across blocks in proportion to their sizes, each block 1..size steps."""
    total = sum(sizes)
    if not len(sizes) <= steps <= total:
        raise ValueError(
            f"steps must be between the number of blocks ({len(sizes)}) and the number of "
            f"masked tokens ({total}), got {steps}"
        )
    alloc = [min(size, max(1, steps * size // total)) for size in sizes]
    while sum(alloc) < steps:  # give a step to the block with the most tokens per step
        j = max((j for j in range(len(sizes)) if alloc[j] < sizes[j]), key=lambda j: sizes[j] / alloc[j])
        alloc[j] += 1
    while sum(alloc) > steps:  # take one from the block with the fewest tokens per step
        j = max((j for j in range(len(sizes)) if alloc[j] > 1), key=lambda j: alloc[j] / sizes[j])
        alloc[j] -= 1
    return alloc


def masked_stream(
    lm: LanguageModel,
    prompt: str = "",
    *,
    config: SamplerConfig | None = None,
    infill: str | None = None,
    fixed: dict[int, str | int] | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    **overrides,
) -> MaskedGeneration:
    """`dlm.stream` for masked models (the front door dispatches here); the arguments are the same."""
    config = (config or lm.settings).replace(**overrides)
    if infill is not None and prompt:
        raise ValueError("give either a prompt to continue or an infill template, not both")
    if infill is not None:
        canvas = infill_canvas(lm, infill)
    else:
        canvas = prompt_canvas(lm, prompt, config.length, fixed or {})
    check_fits(lm, canvas)
    to_generate = int((~canvas.fixed).sum())
    if "steps" not in overrides and config.steps > to_generate:
        config = config.replace(steps=to_generate)  # a default, not the caller's choice: one token per step
    return MaskedGeneration(lm, canvas, config, generator, seed, prompt if infill is None else infill)
