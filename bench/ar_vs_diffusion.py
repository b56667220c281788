"""A fair race between a masked-diffusion model and an autoregressive one: speed, quality, memory, recall.

    python bench/ar_vs_diffusion.py --quick --threads 2             # < 3 minutes on 2 CPU cores
    python bench/ar_vs_diffusion.py --diffusion default --ar default-ar --lengths 64 128 256 \\
        --judge smollm2 --json bench/results/ar_vs_diffusion.json --plot bench/results/ar_vs_diffusion.png

For every length L, both models continue the same prompts (bench/data/prompts.txt, sentence
beginnings from the corpus's held-out splits), one prompt at a time, each with the seed of its prompt:

- diffusion with steps L/16, L/8, L/4, L/2, L and the model's own step count (its recommended sampler settings otherwise,
  `lm.settings`, its semi-autoregressive blocks included);
- parallel decoding, steps L as an upper bound and low-confidence remasking, the model's sampling
  temperature and nucleus: Fast-dLLM's threshold (every masked position whose confidence reaches
  0.7 / 0.8 / 0.9 / 0.95 committed at once) and factor rule (the n most confident while
  (n + 1)(1 - c_n) < 1 / 2), the EB-sampler's entropy bound (positions in confidence order while
  their summed entropy minus the largest stays <= 0.1 / 0.5 / 2 nats); and Fast-dLLM's own
  combination, threshold 0.9 / factor 1 / entropy bound 0.5 inside blocks of 32 with the dual cache;
- diffusion decoded semi-autoregressively (SEMI_AR: blocks of 32 positions left to right, low-confidence
  remasking, temperature 1, no top-p) with steps L/8, L/4, L/2, without a cache and with the
  Fast-dLLM dual key/value cache (`dlm.cache`: a block's later steps feed only the block);
- autoregressive decoding with the KV cache (one token per forward), its recommended settings.

EOS is never sampled (`allow_eos=False`), so every run writes exactly L tokens: time, NFE and the
judge compare equal amounts of text. Per setting: wall time from `dlm.stream` to the last step and
time to the first step (medians over prompts; a warm-up run per model comes first; at each length the
settings are timed interleaved, every setting on prompt i before any on prompt i + 1, so drift in the
machine's speed touches them alike and their ratios hold within the run), tokens/s
(median of L / wall time), NFE (forward passes per sample), peak memory during generation
(`dlm.quality.PeakMemory`: the process's peak RSS on CPU, allocated tensors on CUDA; the largest over
prompts; "+run" is what a run added to what the process already held), the judge's perplexity of
the continuations given their prompts, the unigram entropy of each continuation under the judge's
tokenizer (mean and bootstrap 95% interval, as MDLM reports beside generative perplexity: a looping
sample has low entropy), distinct-1/2/3 and the 4-gram repetition rate (`dlm.quality`). The judge is
loaded only after all generation, so its weights are not in the memory figures. A model whose
positions cannot hold a prompt and L tokens is skipped at that length (the bundled AR model has 256
positions, so L = 256 is diffusion only), and the table says so. The same quality numbers for human
text (held-out paragraphs: the first 6 words as the prompt, the next L tokens of the diffusion
tokenizer as the continuation) show the judge's scale. Q&A (bench/data/qa.jsonl, cloze questions
whose answers are in the training text) gives exact match with a 95% Wilson interval for both models
(`dlm.qa`).

MAUVE (Pillutla et al. 2021) compares each setting's texts with human text as distributions. The 32
timing prompts are too few for it, so at --mauve-lengths (default 128) it uses --mauve-prompts
held-out prompts (default 256; --quick 8), built by the rule that wrote prompts.txt
(`bench.make_qa.sentence_beginning`: a validation or test paragraph's words up to its first comma),
each with that paragraph's own continuation cut to the same L tokens as the human side: first the
timing prompts that begin such a paragraph (their timed outputs are reused), then others spread over
the splits, which every setting continues untimed. Features: the judge's last hidden state
mean-pooled over the continuation (`dlm.quality.judge_features`); n/10 k-means buckets; mean and sd
over --mauve-seeds (5) k-means seeds. It costs up to --mauve-prompts more samples per setting at
those lengths, and the judge's pass over them.

The goal (`goal_check`), at L = 128: a diffusion setting faster than AR (median wall time) whose judge
perplexity is at most 1.1 x AR's and whose mean unigram entropy is at least 0.95 x AR's.

Prints markdown tables (also written beside the JSON as .md) and writes a JSON file ({"machine",
"command", "judge", "human", "mauve", "qa", "goal", "records", ...}; each record has family, model,
length, steps, threshold, factor, entropy_bound, block_length, cache, nfe, wall_seconds, first_step_seconds,
tokens_per_second, peak_memory_mb, judge_perplexity, entropy, entropy_ci95, entropy_per_sample,
distinct_1/2/3, repetition, mauve (null where not measured, else mean, std, per_seed, seeds, n_p, n_q,
num_buckets and its samples under outputs), and every continuation under outputs; parallel-rule records
have steps null and max_steps L) and a PNG frontier plot (judge perplexity against wall time and NFE,
entropy and MAUVE against wall time). --quick measures a subset (4 prompts, L = 64, steps L/16, L/4,
L, threshold 0.9, factor 1, entropy bound 0.5, threshold 0.9 in blocks with the dual cache, semi-AR L/4 without and with the cache, 60 Q&A items, MAUVE on 8 prompts: a check
that it runs, not a measurement) and writes *_quick.json / *_quick.png unless --json / --plot say
otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dlm  # noqa: E402
from dlm.allocator import keep_freed_memory  # noqa: E402
from dlm.cli import add_progress_option, progress_bar  # noqa: E402
from dlm.cli import note as progress_note  # noqa: E402  (a line on stderr that leaves the bars whole)
from dlm.config import PARALLEL_RULES, SamplerConfig  # noqa: E402
from dlm.generation import encode, special_framing  # noqa: E402
from dlm.loading import LanguageModel, bundled_models  # noqa: E402
from dlm.qa import ANSWER_TOKENS, QAResult, family_of, load_qa, run_qa  # noqa: E402
from dlm.quality import (  # noqa: E402
    MAUVE_SEEDS,
    Judge,
    PeakMemory,
    distinct_n,
    judge_features,
    judge_perplexity,
    load_judge,
    mauve_score,
    mean_interval,
    paired_perplexity_ratio,
    perplexity_interval,
    repetition_rate,
    smollm2_folder,
    unigram_entropy,
)
from dlm.race import filled_tokens  # noqa: E402

from bench.make_qa import sentence_beginning  # noqa: E402  (the rule that wrote bench/data/prompts.txt)

HERE = Path(__file__).resolve().parent
FAMILIES = {"diffusion": "masked", "ar": "causal", "continuous": "continuous"}  # family: the model kind it needs
STEP_DIVISORS = (16, 8, 4, 2, 1)  # diffusion steps = L / divisor
THRESHOLDS = (0.7, 0.8, 0.9, 0.95)  # Fast-dLLM confidence thresholds
FACTORS = (1.0, 2.0)  # Fast-dLLM's factor rule
ENTROPY_BOUNDS = (0.1, 0.5, 2.0)  # the EB-sampler's bound (nats)
# each rule again in Fast-dLLM's setting: blocks of 32, the dual cache
BLOCKED_RULES = ({"threshold": 0.9}, {"factor": 1.0}, {"entropy_bound": 0.5})
# Semi-autoregressive decoding (LLaDA blocks, low-confidence remasking, plain temperature sampling),
# without and with the Fast-dLLM dual key/value cache: steps L / divisor.
SEMI_AR = {"block_length": 32, "remasking": "low_confidence", "temperature": 1.0, "top_p": 1.0}
SEMI_AR_DIVISORS = (8, 4, 2)
CACHES = (None, "dual")
CONTINUOUS_STEPS = (16, 32, 64, 128)  # continuous (embedding-space) diffusion: denoising steps, whatever L
GOAL_LENGTH, GOAL_TOLERANCE = 128, 0.10  # the goal: faster than AR at 128 tokens, judge PPL <= 1.1 x AR's
GOAL_ENTROPY_RATIO = 0.95  # ... and mean unigram entropy >= 0.95 x AR's (no fluency bought with repetition)
HUMAN_PROMPT_WORDS = 6  # words of a held-out paragraph that prompt its human continuation
MAUVE_SPLITS = ("validation", "test")  # held-out splits MAUVE's prompts and human continuations come from
# mauve_prompts: held-out prompts (and so samples per side) for MAUVE; mauve_lengths None: GOAL_LENGTH if
# measured, else the shortest length
FULL = {"prompts": None, "lengths": [64, 128, 256], "divisors": STEP_DIVISORS, "thresholds": THRESHOLDS,
        "factors": FACTORS, "entropy_bounds": ENTROPY_BOUNDS, "blocked_rules": BLOCKED_RULES,
        "semi_ar": SEMI_AR_DIVISORS, "continuous": CONTINUOUS_STEPS, "qa_items": None,
        "human_texts": 64, "mauve_prompts": 256}  # None: all of them
QUICK = {"prompts": 4, "lengths": [64], "divisors": (16, 4, 1), "thresholds": (0.9,), "semi_ar": (4,),
         "factors": (1.0,), "entropy_bounds": (0.5,), "blocked_rules": ({"threshold": 0.9},),
         "continuous": (16, 64),
         "qa_items": 60, "human_texts": 16, "mauve_prompts": 8}  # quick MAUVE only checks the path runs


# ---- inputs ------------------------------------------------------------------------------------


def read_prompts(path: Path, count: int | None = None) -> list[str]:
    """One prompt per line (blank lines skipped), the first `count` of them."""
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"{path} has no prompts: write one per line")
    return prompts[:count] if count else prompts


def human_paragraphs(path: Path | None, splits: tuple[str, ...] = ("validation",)) -> list[str]:
    """Held-out paragraphs, one per line: `path`, or the prose corpus's `splits` (in that order)."""
    if path is None:
        from training.corpus import build_prose_corpus

        corpus = build_prose_corpus()
        paths = [corpus / f"{split}.txt" for split in splits]
    else:
        paths = [path]
    return [line.strip() for p in paths for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def human_reference(tokenizer, paragraphs: list[str], length: int, count: int) -> tuple[list[str], list[str]]:
    """(prompts, continuations) of human text: the first HUMAN_PROMPT_WORDS words of a paragraph, and
    the next `length` tokens of `tokenizer` decoded (with their leading space). Paragraphs too short
    for that are skipped; `count` pairs are taken evenly across the rest (the file is in book order,
    so every book is represented)."""
    pairs = []
    for paragraph in paragraphs:
        words = paragraph.split()
        if len(words) <= HUMAN_PROMPT_WORDS:
            continue
        ids = encode(tokenizer, " " + " ".join(words[HUMAN_PROMPT_WORDS:]))
        if len(ids) >= length:
            pairs.append((" ".join(words[:HUMAN_PROMPT_WORDS]), tokenizer.decode(ids[:length])))
    if not pairs:
        raise ValueError(f"no held-out paragraph has {length} tokens after its first {HUMAN_PROMPT_WORDS} words")
    pairs = spread(pairs, count)
    return [p for p, _ in pairs], [c for _, c in pairs]


def mauve_reference(tokenizer, paragraphs: list[str], length: int, count: int, timed: list[str] = ()) -> dict:
    """Held-out prompts for MAUVE, each with its real human continuation of `length` tokens.

    A prompt is a paragraph's sentence beginning, the rule that wrote bench/data/prompts.txt
    (`bench.make_qa.sentence_beginning`: its words up to the first comma, 4..9 plain words), and its
    continuation is what the paragraph says next (", ..."), cut to the next `length` tokens of
    `tokenizer` and decoded, exactly as long as a model's continuation. Paragraphs with fewer tokens
    after their prompt are left out. The timing prompts (`timed`) come first, each continued by the
    first paragraph it begins (so their timed outputs serve as MAUVE samples too); the rest of the
    `count` are taken evenly over the other paragraphs (book order, so every book is represented).
    Where no paragraph has a sentence beginning (a --human file of other text), the human row's
    rule is used instead: the first HUMAN_PROMPT_WORDS words and the tokens after them
    (`human_reference`), and no timing prompt is reused.

    Returns {"length", "rule", "prompts", "continuations", "timed" (per prompt: its index among the
    timing prompts, or None)}; fewer than `count` prompts where the paragraphs have no more.
    """
    pairs = []  # (prompt, continuation) of every paragraph long enough, in book order
    for paragraph in paragraphs:
        paragraph = " ".join(paragraph.split())
        prompt = sentence_beginning(paragraph)
        if prompt is None:
            continue
        ids = encode(tokenizer, paragraph[len(prompt) :])
        if len(ids) >= length:
            pairs.append((prompt, tokenizer.decode(ids[:length])))
    if not pairs:
        prompts, continuations = human_reference(tokenizer, paragraphs, length, count)
        return {"length": length, "rule": f"first {HUMAN_PROMPT_WORDS} words, the paragraph's next tokens",
                "prompts": prompts, "continuations": continuations, "timed": [None] * len(prompts)}
    chosen, used = [], set()  # (pair, timing index), indices into pairs
    for i, prompt in enumerate(timed):
        k = next((k for k, (p, _) in enumerate(pairs) if p == prompt and k not in used), None)
        if k is not None and len(chosen) < count:
            chosen.append((pairs[k], i))
            used.add(k)
    others = [pair for k, pair in enumerate(pairs) if k not in used]
    if count > len(chosen):
        chosen += [(pair, None) for pair in spread(others, count - len(chosen))]
    return {"length": length, "rule": "sentence beginning (bench.make_qa), the paragraph's next tokens",
            "prompts": [p for (p, _), _ in chosen], "continuations": [c for (_, c), _ in chosen],
            "timed": [i for _, i in chosen]}


def spread(items: list, count: int | None) -> list:
    """`count` items taken evenly over the list (every k-th), all of them if count is None or larger."""
    if not count or count >= len(items):
        return items
    return [items[int(i * len(items) / count)] for i in range(count)]


# ---- settings ----------------------------------------------------------------------------------


def sweep_configs(
    lm: LanguageModel,
    length: int,
    divisors=STEP_DIVISORS,
    thresholds=THRESHOLDS,
    semi_ar=SEMI_AR_DIVISORS,
    continuous_steps=CONTINUOUS_STEPS,
    factors=FACTORS,
    entropy_bounds=ENTROPY_BOUNDS,
    blocked_rules=BLOCKED_RULES,
) -> list[SamplerConfig]:
    """The settings a model is measured at, for one length: for a masked model a steps sweep at its
    recommended settings (its blocks included; L/16 to L and its own step count), the parallel-decoding rules (without blocks, then in
    blocks of 32 with the dual cache) and semi-AR decoding without and with the dual cache (SEMI_AR);
    KV-cached decoding for a causal one; for a continuous one its recommended solver at
    `continuous_steps` steps. Never EOS."""
    off = dict.fromkeys(PARALLEL_RULES)
    recommended = lm.settings.replace(length=length, allow_eos=False, num_samples=1, cache=None, **off)
    base = recommended.replace(block_length=None)
    if lm.kind == "causal":
        return [base]
    if lm.kind == "continuous":
        return [base.replace(steps=s) for s in continuous_steps]
    own_block = recommended.block_length
    own_blocks = -(-length // own_block) if own_block else 1
    steps = {max(own_blocks, length // d) for d in divisors}
    if own_blocks <= recommended.steps <= length:  # the model's own step count, where the sweep skips it
        steps.add(recommended.steps)
    configs = [recommended.replace(steps=s) for s in sorted(steps)]
    parallel = base.replace(steps=length, remasking="low_confidence")
    configs += [parallel.replace(threshold=t) for t in thresholds]
    configs += [parallel.replace(factor=f) for f in factors]
    configs += [parallel.replace(entropy_bound=b) for b in entropy_bounds]
    block = min(SEMI_AR["block_length"], length)
    blocks = -(-length // block)
    configs += [parallel.replace(block_length=block, cache="dual", **rule) for rule in blocked_rules]
    for cache in CACHES:
        for s in sorted({max(blocks, length // d) for d in semi_ar}):
            configs.append(base.replace(steps=s, cache=cache, **{**SEMI_AR, "block_length": block}))
    return configs


def positions_needed(lm: LanguageModel, prompt: str, length: int) -> int:
    """Canvas positions a run needs: framing (or BOS), the prompt and the generated tokens."""
    if lm.kind == "causal":
        return (1 if lm.bos_id is not None else 0) + len(encode(lm.tokenizer, prompt)) + length
    prefix, suffix = special_framing(lm.tokenizer)
    if lm.kind == "continuous":
        suffix = []  # no closing framing (dlm.continuous.continuous_canvas)
    return len(prefix) + len(encode(lm.tokenizer, prompt)) + length + len(suffix)


def does_not_fit(lm: LanguageModel, prompts: list[str], length: int) -> str | None:
    """Why this model cannot generate `length` tokens after every prompt (None when it can)."""
    limit = lm.max_positions
    needed = max(positions_needed(lm, p, length) for p in prompts)
    if limit is not None and needed > limit:
        return f"needs {needed} positions (prompt and {length} tokens), the model has {limit}"
    return None


# ---- measuring ---------------------------------------------------------------------------------


def timed_run(lm: LanguageModel, prompt: str, config: SamplerConfig, seed: int) -> dict:
    """One generation, timed from `dlm.stream` (canvas building included) to its first and last step,
    with the peak memory while it ran."""
    with PeakMemory(lm.device) as memory:
        start = time.perf_counter()
        generation = dlm.stream(lm, prompt, config=config, seed=seed)
        first = None
        for _ in generation:  # the sampler synchronises CUDA before each step is yielded
            if first is None:
                first = time.perf_counter() - start
        wall = time.perf_counter() - start
    trace = generation.trace()
    return {
        "wall": wall,
        "first_step": first if first is not None else wall,
        "nfe": trace.nfe,
        "tokens": filled_tokens(trace),
        "continuation": continuation_of(trace, generation, prompt),
        "peak_bytes": memory.peak_bytes,
        "increase_bytes": memory.increase_bytes,
        "memory_method": memory.method,
    }


def continuation_of(trace, generation, prompt: str) -> str:
    """The continuation exactly as it follows the prompt (its own leading space or punctuation)."""
    text = trace.texts[0]
    return text[len(prompt) :] if text.startswith(prompt) else " " + generation.completions()[0]


def sample_continuations(lm: LanguageModel, prompts: list[str], config: SamplerConfig, seed: int = 0,
                         progress: bool | None = False, desc: str = "sampling") -> list[str]:
    """Untimed: prompt i's continuation at one setting, with seed + i. progress: a passing bar on stderr
    (None: only when stderr is a terminal)."""
    outputs = []
    for i, prompt in enumerate(progress_bar(prompts, desc=desc, unit="prompt", show=progress, leave=False)):
        generation = dlm.stream(lm, prompt, config=config, seed=seed + i)
        outputs.append(continuation_of(generation.run(), generation, prompt))
    return outputs


def mauve_samples(lm: LanguageModel, reference: dict, config: SamplerConfig, timed_outputs: list[str],
                  seed: int = 0, progress: bool | None = False) -> list[str]:
    """MAUVE's samples at one setting: for prompt j of `reference`, the timed continuation where it is
    a timing prompt (`reference["timed"]`), else a new, untimed one with seed + j."""
    pairs = progress_bar(list(zip(reference["prompts"], reference["timed"])), desc="MAUVE samples", unit="prompt",
                         show=progress, leave=False)
    return [timed_outputs[timed] if timed is not None else sample_continuations(lm, [prompt], config, seed + j)[0]
            for j, (prompt, timed) in enumerate(pairs)]


def text_quality(judge: Judge, continuations: list[str], prompts: list[str], batch_size: int) -> dict:
    """Judge perplexity of continuations given their prompts (with a bootstrap 95% interval over the
    prompts, and each text's NLL for paired comparisons), the unigram entropy of each (under the
    judge's tokenizer; mean and bootstrap 95% interval), distinct-1/2/3 and the repetition rate."""
    scored = judge_perplexity(judge, continuations, contexts=prompts, batch_size=batch_size)
    interval = perplexity_interval(scored["nll"], scored["num_tokens"])
    entropies = unigram_entropy(continuations, judge.tokenizer)
    entropy = mean_interval(entropies)
    return {
        "judge_perplexity": scored["perplexity"],
        "judge_perplexity_ci95": [interval["low"], interval["high"]],  # bootstrap over prompts
        "judge_nats_per_token": scored["nats_per_token"],
        "judge_tokens": scored["tokens"],
        "judge_nll_per_sample": scored["nll"],  # nats, None where skipped: for paired comparisons
        "judge_tokens_per_sample": scored["num_tokens"],
        "entropy": entropy["mean"],  # nats, mean over samples
        "entropy_ci95": [entropy["low"], entropy["high"]],
        "entropy_per_sample": entropies,
        "distinct_1": distinct_n(continuations, 1),
        "distinct_2": distinct_n(continuations, 2),
        "distinct_3": distinct_n(continuations, 3),
        "repetition": repetition_rate(continuations),
    }


def add_mauve(record: dict, judge: Judge, reference: dict, reference_features, seeds: int = MAUVE_SEEDS,
              batch_size: int = 8) -> dict:
    """Score the record's MAUVE samples (record["mauve"]["outputs"], continuations of reference["prompts"])
    against the human continuations (their judge features, `reference_features`), in place."""
    samples = record["mauve"]
    features = judge_features(judge, samples["outputs"], batch_size, contexts=reference["prompts"])
    samples.update(mauve_score(features, reference_features, seeds=seeds))
    return record


def continuous_options(lm: LanguageModel):
    from dlm.continuous import ContinuousOptions

    return ContinuousOptions.from_dict(lm.card.get("sampler", {}))


def decoding_of(lm: LanguageModel, config: SamplerConfig) -> str:
    if lm.kind == "causal":
        return "autoregressive (KV cache)"
    if lm.kind == "continuous":
        options = continuous_options(lm)
        return f"{options.solver.upper()}, {options.rounding} rounding" + (", clamp" if options.clamp else "")
    rule = parallel_rule(config)
    if rule is not None:
        name, value = rule
        blocks = f", b{config.block_length}" if config.block_length else ""
        return f"{name.replace('_', ' ')} {value:g}{blocks}" + (f", {config.cache} cache" if config.cache else "")
    semi_ar = {k: getattr(config, k) for k in SEMI_AR if k != "block_length"} == \
        {k: v for k, v in SEMI_AR.items() if k != "block_length"}
    if config.block_length is not None and (semi_ar or config.cache):
        return f"semi-AR b{config.block_length}, T {config.temperature:g}, " + (
            f"{config.cache} cache" if config.cache else "no cache")
    return "fixed steps"


def parallel_rule(config: SamplerConfig) -> tuple[str, float] | None:
    """(name, value) of the parallel-decoding rule a config uses (its step count is then only a cap)."""
    return next(((name, getattr(config, name)) for name in PARALLEL_RULES if getattr(config, name) is not None), None)


def measure_settings(settings: list[tuple[LanguageModel, SamplerConfig]], prompts: list[str], seed: int = 0,
                     progress: bool | None = False) -> list[dict]:
    """One record per (model, config) setting, timed interleaved: prompt by prompt, every setting runs
    prompt i (with seed + i) before any runs prompt i + 1, starting at setting i mod n so none always
    follows the same neighbour. A machine that speeds up or slows down during the bench (other load,
    clocks) then touches every setting alike, so the ratios between settings hold within one run even
    when the absolute times drift. Each run's own time is kept (`wall_per_sample`) for paired ratios;
    every continuation is under "outputs" (scored later by `add_quality`). progress: a passing bar on
    stderr, moved between runs (outside what they time); None: only when stderr is a terminal."""
    runs = [[] for _ in settings]
    work = [(i, (i + k) % len(settings)) for i in range(len(prompts)) for k in range(len(settings))]
    for i, index in progress_bar(work, desc="timing", unit="run", show=progress, leave=False):
        lm, config = settings[index]
        runs[index].append(timed_run(lm, prompts[i], config, seed + i))
    return [_summary(lm, config, prompts, setting_runs) for (lm, config), setting_runs in zip(settings, runs)]


def _summary(lm: LanguageModel, config: SamplerConfig, prompts: list[str], runs: list[dict]) -> dict:
    continuations = [r["continuation"] for r in runs]
    return {
        "family": family_of(lm),
        "model": lm.source,
        "decoding": decoding_of(lm, config),
        "length": config.length,
        # parallel decoding has no fixed step count: `steps` is None, `max_steps` its upper bound
        "steps": config.steps if lm.kind != "causal" and parallel_rule(config) is None else None,
        "max_steps": config.steps if lm.kind == "masked" else None,
        "threshold": config.threshold if lm.kind == "masked" else None,
        "factor": config.factor if lm.kind == "masked" else None,
        "entropy_bound": config.entropy_bound if lm.kind == "masked" else None,
        "remasking": config.remasking if lm.kind == "masked" else None,
        "block_length": config.block_length if lm.kind == "masked" else None,
        "cache": config.cache if lm.kind == "masked" else None,
        "solver": continuous_options(lm).solver if lm.kind == "continuous" else None,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "prompts": len(prompts),
        "nfe": statistics.median(r["nfe"] for r in runs),
        "nfe_mean": statistics.fmean(r["nfe"] for r in runs),
        "wall_seconds": statistics.median(r["wall"] for r in runs),
        "wall_per_sample": [r["wall"] for r in runs],  # prompt i's run, for ratios paired over prompts
        "first_step_seconds": statistics.median(r["first_step"] for r in runs),
        "tokens": statistics.median(r["tokens"] for r in runs),
        "tokens_per_second": statistics.median(r["tokens"] / r["wall"] for r in runs),
        "peak_memory_mb": max(r["peak_bytes"] for r in runs) / 2**20,
        "peak_memory_increase_mb": max(r["increase_bytes"] for r in runs) / 2**20,
        "memory_method": runs[0]["memory_method"],
        "outputs": continuations,  # prompt i's continuation, exactly as it follows the prompt
    }


def add_quality(record: dict, judge: Judge, prompts: list[str], batch_size: int = 8) -> dict:
    """Add the judge's perplexity and the diversity of the record's outputs (in place; returns it)."""
    record.update(text_quality(judge, record["outputs"], prompts, batch_size))
    return record


def qa_results_of(lm: LanguageModel, items: list, progress: bool | None = False) -> QAResult:
    """`dlm.qa.run_qa`, one item at a time so that a bar on stderr can follow it; the same result (every
    item is answered on its own, with seed 0)."""
    answered = []
    for item in progress_bar(items, desc=f"Q&A {family_of(lm)}", unit="item", show=progress, leave=False):
        answered += run_qa(lm, [item]).items
    return QAResult(lm.source, family_of(lm), sum(r["correct"] for r in answered), len(answered), ANSWER_TOKENS,
                    answered)


def warm_up(lm: LanguageModel, prompt: str) -> None:
    """One short untimed run, so one-off costs (allocations, kernel selection) stay out of the timings."""
    dlm.generate(lm, prompt, config=lm.settings.replace(length=8, steps=8, allow_eos=False, num_samples=1), seed=0)


# ---- reporting ---------------------------------------------------------------------------------


def machine_info(device: torch.device) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass  # not Linux: platform.processor() it is
    import transformers

    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


COLUMNS = ("family", "L", "decoding", "steps", "NFE", "wall s", "first step s", "tokens/s", "peak MB (+run)",
           "judge PPL (95% CI)", "entropy (95% CI)", "distinct-1/2/3", "rep-4", "MAUVE ± sd")
ALIGN = ("---", "---:", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---", "---:", "---:")


def _row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def _quality_cells(r: dict) -> list[str]:
    distinct = "/".join(_fmt(r[f"distinct_{n}"]) for n in (1, 2, 3))
    low, high = r["entropy_ci95"]
    entropy = f"{_fmt(r['entropy'])} ({_fmt(low)}–{_fmt(high)})"
    mauve = r.get("mauve")
    score = f"{mauve['mean']:.3f} ± {mauve['std']:.3f}" if mauve and "mean" in mauve else "—"
    judged = _fmt(r["judge_perplexity"], 1)
    if r.get("judge_perplexity_ci95"):  # records written before it was measured have none
        judged += " ({}–{})".format(*(_fmt(x, 1) for x in r["judge_perplexity_ci95"]))
    return [judged, entropy, distinct, _fmt(r["repetition"], 3), score]


def markdown_tables(records: list[dict], human: list[dict], qa: list[dict], skipped: list[dict],
                    mauve: list[dict] = ()) -> str:
    """The sweep (by length: every setting, then the human reference), how MAUVE was measured, and the
    Q&A results, as markdown."""
    lines = [_row(COLUMNS), _row(ALIGN)]
    for length in sorted({r["length"] for r in records} | {h["length"] for h in human}):
        for r in (r for r in records if r["length"] == length):
            steps = f"≤ {r['max_steps']}" if _is_parallel(r) else _fmt(r["steps"])
            memory = f"{r['peak_memory_mb']:.0f} (+{r['peak_memory_increase_mb']:.0f})"
            lines.append(_row([r["family"], str(length), r["decoding"], steps, _fmt(r["nfe"], 1),
                               _fmt(r["wall_seconds"], 3), _fmt(r["first_step_seconds"], 3),
                               _fmt(r["tokens_per_second"], 1), memory, *_quality_cells(r)]))
        for h in (h for h in human if h["length"] == length):
            lines.append(_row(["human", str(length), f"held-out text ({h['texts']} texts)", *["—"] * 6,
                               *_quality_cells(h)]))
    for s in skipped:
        lines.append(_row([s["family"], str(s["length"]), f"skipped: {s['reason']}", *[""] * 11]))
    lines += ["", "Entropy: the unigram entropy of each continuation's token ids under the judge's tokenizer "
                  "(nats), mean over samples with a bootstrap 95% interval."]
    for m in mauve:
        lines.append(f"MAUVE at L={m['length']}: {m['n_p']} samples per setting against {m['n_q']} held-out human "
                     f"continuations of the same prompts ({m['rule']}; {m['reused_timed_outputs']} of them "
                     f"the timing prompts, whose timed outputs are reused), judge features (last hidden state, "
                     f"mean-pooled over the continuation), {m['num_buckets']} k-means buckets, mean ± sd over "
                     f"{len(m['seeds'])} k-means seeds.")
    if qa:
        lines += ["", _row(["Q&A model", "family", "exact match", "95% CI", "items", "answer tokens"]),
                  _row(["---", "---", "---:", "---", "---:", "---:"])]
        for q in qa:
            low, high = q["ci95"]
            lines.append(_row([q["model"], q["family"], f"{q['exact_match']:.1%}", f"{low:.1%}–{high:.1%}",
                               str(q["total"]), str(q["answer_tokens"])]))
    return "\n".join(lines)


def _is_parallel(record: dict) -> bool:
    return any(record.get(name) is not None for name in PARALLEL_RULES)


def _rule_note(record: dict) -> str:
    symbols = {"threshold": "τ", "factor": "f", "entropy_bound": "γ"}
    name = next(n for n in PARALLEL_RULES if record.get(n) is not None)
    return f"{symbols[name]}={record[name]:g}" + (" b" if record.get("block_length") else "")


def _mauve_mean(record: dict) -> float | None:
    mauve = record.get("mauve")
    return mauve.get("mean") if mauve else None


# the frontier plot's y axes: (label, value of a record or human row (None: not measured), log scale)
PANEL_METRICS = {
    "judge_perplexity": ("judge perplexity ({judge}), lower = more fluent", lambda r: r["judge_perplexity"], True),
    "entropy": ("unigram entropy per sample (nats), higher = more varied", lambda r: r.get("entropy"), False),
    "mauve": ("MAUVE vs human text (± sd over seeds), higher = closer", _mauve_mean, False),
}


def _plot_panel(ax, records: list[dict], human: list[dict], lengths: list[int], colours: dict, x_key: str,
                metric: str) -> None:
    """One panel of the frontier plot: `metric` against `x_key`, one series per length and decoding family."""
    y_of = PANEL_METRICS[metric][1]
    for length in lengths:
        colour = colours[length]
        rows = [r for r in records if r["length"] == length and y_of(r) is not None and math.isfinite(y_of(r))]
        series = [  # (records, marker, label, annotation, label offset)
            ([r for r in rows if r["family"] == "diffusion" and r.get("decoding") == "fixed steps"],
             "o-", f"diffusion, L={length}, steps L/16..L", lambda r: str(r["steps"]), (4, 4)),
            ([r for r in rows if r["family"] == "diffusion" and _is_parallel(r)], "^", f"diffusion, L={length}, "
             "parallel rules", _rule_note, (4, -10)),
        ]
        for cache, marker in ((None, "d-."), ("dual", "s-")):
            series.append(([r for r in rows if r["family"] == "diffusion" and str(r.get("decoding")).startswith("semi-AR")
                            and r.get("cache") == cache], marker, f"diffusion, L={length}, semi-AR, {cache or 'no'} cache",
                           lambda r: str(r["steps"]), (4, 4)))
        series.append(([r for r in rows if r["family"] == "continuous"], "P:",
                       f"continuous diffusion, L={length}, steps", lambda r: str(r["steps"]), (4, -10)))
        for group, marker, label, note, offset in series:
            group = sorted(group, key=lambda r: r[x_key])
            if not group:
                continue
            ax.plot([r[x_key] for r in group], [y_of(r) for r in group], marker, color=colour, label=label,
                    alpha=0.8 if "semi-AR" in label else 1.0)
            for r in group:
                ax.annotate(note(r), (r[x_key], y_of(r)), textcoords="offset points", xytext=offset, fontsize=7,
                            color=colour)
            if metric == "mauve":  # its spread over k-means seeds
                ax.errorbar([r[x_key] for r in group], [y_of(r) for r in group], fmt="none", ecolor=colour,
                            yerr=[r["mauve"]["std"] for r in group], capsize=2, alpha=0.6)
        for r in (r for r in rows if r["family"] == "ar"):
            ax.scatter([r[x_key]], [y_of(r)], marker="*", s=220, color=colour, edgecolors="black", zorder=5,
                       label=f"autoregressive, L={length}")
            if metric == "mauve":
                ax.errorbar([r[x_key]], [y_of(r)], yerr=[r["mauve"]["std"]], fmt="none", ecolor=colour, capsize=2)
            if metric == "entropy":  # the goal's entropy bar
                ax.axhline(GOAL_ENTROPY_RATIO * y_of(r), color=colour, linestyle="--", linewidth=0.8,
                           label=f"{GOAL_ENTROPY_RATIO:g} × AR's entropy, L={length}")
        for h in (h for h in human if h["length"] == length and metric != "mauve" and y_of(h) is not None):
            ax.axhline(y_of(h), color=colour, linestyle=":", label=f"human text, L={length}")


def frontier_plot(records: list[dict], human: list[dict], path: Path, judge_name: str) -> None:
    """Quality against cost: judge perplexity against wall time and against NFE (top), unigram entropy
    and, where measured, MAUVE against wall time (bottom). One line per length for the diffusion steps
    sweep (circles), parallel rules (triangles), semi-AR (diamonds, squares with the cache) and
    continuous diffusion (plus signs), a star for AR, a dotted line for human text."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    lengths = sorted({r["length"] for r in records} | {h["length"] for h in human})
    colours = {length: plt.get_cmap("tab10")(i % 10) for i, length in enumerate(lengths)}
    measured_mauve = any(_mauve_mean(r) is not None for r in records)
    panels = [("wall_seconds", "judge_perplexity"), ("nfe", "judge_perplexity"), ("wall_seconds", "entropy")]
    if measured_mauve:
        panels.append(("wall_seconds", "mauve"))
    fig, axes = plt.subplots(2, 2, figsize=(13, 10))
    x_labels = {"wall_seconds": "wall time per sample (s, median over prompts)", "nfe": "NFE (forward passes per sample)"}
    for ax, (x_key, metric) in zip(axes.flat, panels):
        _plot_panel(ax, records, human, lengths, colours, x_key, metric)
        label, _, log_y = PANEL_METRICS[metric]
        ax.set_xscale("log")
        if log_y:
            ax.set_yscale("log")
        if metric == "mauve":
            ax.set_ylim(0, 1.05)  # MAUVE is in [0, 1]
        axes_to_format = (ax.xaxis, ax.yaxis) if log_y else (ax.xaxis,)
        for axis in axes_to_format:  # plain numbers, and minor labels only at 2 and 5 per decade
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
        ax.set_xlabel(x_labels[x_key])
        ax.set_ylabel(label.format(judge=judge_name))
        ax.grid(True, which="both", alpha=0.3)
    if not measured_mauve:
        axes.flat[3].axis("off")
        axes.flat[3].text(0.5, 0.5, "MAUVE not measured", ha="center", va="center", transform=axes.flat[3].transAxes)
    handles, labels = {}, []
    for ax in axes.flat:  # one legend for all panels, each label once
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    fig.legend([handles[label] for label in labels], labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8)
    fig.suptitle("AR vs diffusion: quality against cost")
    rows_of_legend = -(-len(labels) // 4)
    fig.tight_layout(rect=(0, min(0.3, 0.02 + 0.022 * rows_of_legend), 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def goal_check(records: list[dict], length: int = GOAL_LENGTH, tolerance: float = GOAL_TOLERANCE,
               entropy_ratio: float = GOAL_ENTROPY_RATIO) -> dict:
    """The goal: a diffusion setting at `length` tokens that is, against AR at that length,

    1. faster: median wall time < AR's;
    2. as fluent: judge perplexity <= (1 + tolerance) x AR's;
    3. as varied: mean unigram entropy per sample >= entropy_ratio x AR's (a low perplexity bought
       with repetition is no win; a missing or NaN entropy fails).

    Every setting that meets all three, fastest first, with its diversity beside AR's; and those that
    meet 1 and 2 but fail 3 ("failed_entropy"), so the summary can say what the entropy bar ruled out.
    """
    keys = ("decoding", "steps", "nfe", "wall_seconds", "judge_perplexity", "entropy", "distinct_2", "repetition")
    ar = next((r for r in records if r["family"] == "ar" and r["length"] == length), None)
    result = {"length": length, "tolerance": tolerance, "entropy_ratio": entropy_ratio, "met": None, "ar": None,
              "perplexity_limit": None, "entropy_floor": None, "settings": [], "failed_entropy": []}
    if ar is None:
        result["summary"] = f"Goal at L={length}: not measured (no AR record at this length)."
        return result
    result["ar"] = {k: ar.get(k) for k in keys}
    limit = (1 + tolerance) * ar["judge_perplexity"]
    ar_entropy = ar.get("entropy")
    floor = entropy_ratio * ar_entropy if ar_entropy is not None else float("nan")
    result["perplexity_limit"], result["entropy_floor"] = limit, floor

    def varied(r: dict) -> bool:
        entropy = r.get("entropy")
        return entropy is not None and math.isfinite(entropy) and entropy >= floor  # NaN floor: never

    fast_and_fluent = sorted((r for r in records if r["family"] != "ar" and r["length"] == length
                              and r["wall_seconds"] < ar["wall_seconds"] and r["judge_perplexity"] <= limit),
                             key=lambda r: r["wall_seconds"])
    meeting = [r for r in fast_and_fluent if varied(r)]
    result["met"] = bool(meeting)
    result["settings"] = [{**{k: r.get(k) for k in keys}, "speedup": ar["wall_seconds"] / r["wall_seconds"]}
                          for r in meeting]
    result["failed_entropy"] = [{k: r.get(k) for k in keys} for r in fast_and_fluent if not varied(r)]
    head = (f"Goal at L={length} (faster than AR's {ar['wall_seconds']:.3f} s, judge PPL <= {limit:.1f} "
            f"(AR's {ar['judge_perplexity']:.1f} + {tolerance:.0%}), mean unigram entropy >= {floor:.2f} nats "
            f"({entropy_ratio:g} x AR's {_fmt(ar_entropy)})): ")
    if not meeting:
        result["summary"] = head + "not met by any diffusion setting."
        closest = _closest_to_ar(records, ar, length, floor)
        if closest:
            result["closest"] = closest
            ratio = closest["judge_ratio_to_ar"]
            result["summary"] += (f" Closest on judge perplexity among the varied enough: {closest['decoding']}, "
                                  f"{closest['steps']} steps, {ratio['ratio']:.2f}x AR's (paired over the prompts, "
                                  f"95% CI {ratio['low']:.2f}–{ratio['high']:.2f}), "
                                  f"{closest['time_ratio_to_ar']:.2f}x AR's time.")
    else:
        best = meeting[0]
        result["summary"] = head + (
            f"met by {len(meeting)} setting(s); fastest: {best['decoding']}, {best['steps']} steps, "
            f"{best['wall_seconds']:.3f} s ({ar['wall_seconds'] / best['wall_seconds']:.2f}x AR), judge PPL "
            f"{best['judge_perplexity']:.1f}, entropy {best['entropy']:.2f} vs AR's {ar_entropy:.2f} nats, "
            f"distinct-2 {best['distinct_2']:.2f} vs AR's {ar['distinct_2']:.2f}, "
            f"4-gram repetition {best['repetition']:.3f} vs AR's {ar['repetition']:.3f}.")
    if result["failed_entropy"]:
        failed = ", ".join(f"{r['decoding']} {r['steps']} steps: {_fmt(r.get('entropy'))}" for r in result["failed_entropy"])
        result["summary"] += (f" Entropy condition: it rules out {len(result['failed_entropy'])} faster, fluent-enough "
                              f"setting(s), below {floor:.2f} nats ({failed}).")
    elif meeting:
        result["summary"] += " Entropy condition: every faster, fluent-enough setting meets it."
    return result


def _closest_to_ar(records: list[dict], ar: dict, length: int, floor: float) -> dict | None:
    """The diffusion setting at `length` with entropy >= floor and the lowest judge perplexity, with its
    judge perplexity over AR's paired prompt by prompt (both continue the same prompts) and its wall time
    over AR's (the median of the per-prompt ratios where the records keep each prompt's time, else the
    ratio of the medians); None when no setting is varied enough or the records predate per-prompt NLLs."""
    varied = [r for r in records if r["family"] != "ar" and r["length"] == length and r.get("entropy") is not None
              and math.isfinite(r["entropy"]) and r["entropy"] >= floor and "judge_nll_per_sample" in r]
    if not varied or "judge_nll_per_sample" not in ar:
        return None
    best = min(varied, key=lambda r: r["judge_perplexity"])
    ratio = paired_perplexity_ratio((best["judge_nll_per_sample"], best["judge_tokens_per_sample"]),
                                    (ar["judge_nll_per_sample"], ar["judge_tokens_per_sample"]))
    if best.get("wall_per_sample") and len(best["wall_per_sample"]) == len(ar.get("wall_per_sample") or ()):
        time_ratio = statistics.median(b / a for b, a in zip(best["wall_per_sample"], ar["wall_per_sample"]))
    else:
        time_ratio = best["wall_seconds"] / ar["wall_seconds"]
    return {"decoding": best["decoding"], "steps": best.get("steps"), "wall_seconds": best["wall_seconds"],
            "judge_perplexity": best["judge_perplexity"], "entropy": best["entropy"],
            "judge_ratio_to_ar": {k: ratio[k] for k in ("ratio", "low", "high", "n")}, "time_ratio_to_ar": time_ratio}


def _json_safe(value):
    """NaN and infinities become null (they are not JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


# ---- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--diffusion", default="default", help="masked model: bundled name, folder or Hub id")
    parser.add_argument("--ar", default="default-ar", help="causal model: bundled name, folder or Hub id")
    parser.add_argument("--continuous", help="continuous (embedding-space) diffusion model: bundled name, folder "
                        "or Hub id (default: default-continuous when it is bundled; 'none' to leave it out)")
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES),
                        help="which families to measure (default: all)")
    parser.add_argument("--prompts", type=Path, default=HERE / "data" / "prompts.txt", help="one prompt per line")
    parser.add_argument("--num-prompts", type=int, help="use only the first N prompts (default: all; --quick: 4)")
    parser.add_argument("--qa", type=Path, default=HERE / "data" / "qa.jsonl", help="Q&A items, JSONL")
    parser.add_argument("--qa-items", type=int, help="Q&A items, spread over the file (default: all; --quick: 60)")
    parser.add_argument("--human", type=Path, help="held-out texts, one per line (default: the prose validation split)")
    parser.add_argument("--human-texts", type=int, help="human reference texts per length (default 64; --quick: 16)")
    parser.add_argument("--lengths", type=int, nargs="+", help="tokens to generate (default 64 128 256; --quick: 64)")
    parser.add_argument("--mauve-prompts", type=int, help="held-out prompts MAUVE uses, i.e. samples per side and "
                        "setting (default 256; --quick: 8; 0: no MAUVE); each setting generates this many more samples")
    parser.add_argument("--mauve-lengths", type=int, nargs="+", help="lengths MAUVE is measured at (default: "
                        f"{GOAL_LENGTH} if measured, else the shortest)")
    parser.add_argument("--mauve-seeds", type=int, default=MAUVE_SEEDS, help="k-means seeds MAUVE is averaged over")
    parser.add_argument("--judge", default="smollm2", help="'smollm2' or a causal LM folder / Hub id")
    parser.add_argument("--judge-batch", type=int, default=8, help="texts per judge forward pass")
    parser.add_argument("--seed", type=int, default=0, help="prompt i is sampled with seed + i")
    parser.add_argument("--device", help="default: CUDA when present, else CPU")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--quick", action="store_true", help="a small subset that runs in minutes on a CPU")
    parser.add_argument("--system-malloc", action="store_true",
                        help="keep glibc's own mmap and trim thresholds (default: dlm.allocator's, as the app)")
    parser.add_argument("--steps-only", action="store_true",
                        help="diffusion at its recommended settings over the steps sweep only: no parallel-decoding "
                             "rules, no semi-AR rows (a quarter of the time when only the recommendation changed)")
    parser.add_argument("--json", type=Path, help="default bench/results/ar_vs_diffusion[_quick].json")
    parser.add_argument("--plot", type=Path, help="default bench/results/ar_vs_diffusion[_quick].png")
    add_progress_option(parser)
    args = parser.parse_args(argv)
    allocator = "system" if args.system_malloc or not keep_freed_memory() else "dlm.allocator"
    started = time.perf_counter()
    command = "python bench/ar_vs_diffusion.py " + shlex.join(sys.argv[1:] if argv is None else argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    plan = QUICK if args.quick else FULL  # what a flag left unset defaults to
    if args.steps_only:
        plan = {**plan, "thresholds": (), "semi_ar": (), "factors": (), "entropy_bounds": (), "blocked_rules": ()}
    divisors, thresholds, semi_ar = plan["divisors"], plan["thresholds"], plan["semi_ar"]
    num_prompts = args.num_prompts or plan["prompts"]
    qa_items = args.qa_items or plan["qa_items"]
    human_texts = args.human_texts or plan["human_texts"]
    lengths = args.lengths or plan["lengths"]
    mauve_prompts = plan["mauve_prompts"] if args.mauve_prompts is None else args.mauve_prompts
    mauve_lengths = args.mauve_lengths or [GOAL_LENGTH if GOAL_LENGTH in lengths else min(lengths)]
    if mauve_prompts < 0 or args.mauve_seeds < 1:
        parser.error("--mauve-prompts must be >= 0 and --mauve-seeds >= 1")
    if mauve_prompts and not set(mauve_lengths) <= set(lengths):
        parser.error(f"--mauve-lengths {mauve_lengths} must be among the measured lengths {lengths}")
    if not mauve_prompts:
        mauve_lengths = []
    suffix = "_quick" if args.quick else ""
    json_path = args.json or HERE / "results" / f"ar_vs_diffusion{suffix}.json"
    plot_path = args.plot or HERE / "results" / f"ar_vs_diffusion{suffix}.png"

    prompts = read_prompts(args.prompts, num_prompts)
    qa = spread(load_qa(args.qa), qa_items)  # every source represented
    paragraphs = human_paragraphs(args.human)
    held_out = human_paragraphs(args.human, MAUVE_SPLITS) if mauve_lengths else []
    continuous = args.continuous or ("default-continuous" if "default-continuous" in bundled_models() else "none")
    sources = {"diffusion": args.diffusion, "ar": args.ar, "continuous": continuous}
    models = []
    for family in (f for f in FAMILIES if f in args.families and sources[f] != "none"):
        lm = dlm.load(sources[family], device=args.device)
        if lm.kind != FAMILIES[family]:
            parser.error(f"--{family} {sources[family]!r} is a {lm.kind} model; it must be {FAMILIES[family]}")
        models.append(lm)
    if not models:
        parser.error("no model to measure: --families and --continuous none left nothing")
    if args.judge == "smollm2":
        smollm2_folder()  # fail now, not after the sweep, when the judge is not installed

    # MAUVE's held-out prompts and their human continuations, in the first model's tokenizer (as the human row)
    references = {length: mauve_reference(models[0].tokenizer, held_out, length, mauve_prompts, prompts)
                  for length in mauve_lengths}
    for reference in references.values():
        if len(reference["prompts"]) < mauve_prompts:
            print(f"MAUVE at L={reference['length']}: only {len(reference['prompts'])} held-out paragraphs have "
                  f"{reference['length']} tokens after their prompt (asked for {mauve_prompts})", file=sys.stderr)

    # Generate first and load the judge afterwards, so that the judge's weights are not resident
    # while generation's peak memory is measured.
    records, skipped = [], []
    for lm in models:
        warm_up(lm, prompts[0])
    sweep = []  # (length, model, setting, MAUVE reference or None), in the order they are measured
    for length in lengths:
        for lm in models:
            family = family_of(lm)
            reason = does_not_fit(lm, prompts, length)
            if reason:
                skipped.append({"family": family, "model": lm.source, "length": length, "reason": reason})
                print(f"skipping {family} at L={length}: {reason}", file=sys.stderr)
                continue
            reference = references.get(length)
            if reference and (reason := does_not_fit(lm, reference["prompts"], length)):
                print(f"no MAUVE for {family} at L={length}: its prompts {reason}", file=sys.stderr)
                reference = None
            sweep += [(length, lm, config, reference)
                      for config in sweep_configs(lm, length, divisors, thresholds, semi_ar, plan["continuous"],
                                                  plan["factors"], plan["entropy_bounds"], plan["blocked_rules"])]
    for length in lengths:  # each length's settings timed interleaved, prompt by prompt (measure_settings)
        at_length = [(lm, config, reference) for n, lm, config, reference in sweep if n == length]
        if not at_length:
            continue
        print(f"L={length}: timing {len(at_length)} settings interleaved over {len(prompts)} prompts ...",
              file=sys.stderr)
        timed = measure_settings([(lm, config) for lm, config, _ in at_length], prompts, args.seed,
                                 progress=args.progress)
        for (lm, config, reference), record in zip(at_length, timed):
            record["mauve"] = None  # not measured at this length
            if reference:  # untimed samples for MAUVE, scored once the judge is loaded
                record["mauve"] = {"outputs": mauve_samples(lm, reference, config, record["outputs"], args.seed,
                                                            progress=args.progress)}
            records.append(record)
            progress_note(f"L={length} {family_of(lm)} {record['decoding']} steps={record['steps']}: "
                          f"{record['wall_seconds']:.3f} s, NFE {record['nfe']}")
    qa_results = [qa_results_of(lm, qa, args.progress).to_dict() for lm in models]

    print(f"loading the judge {args.judge!r} ...", file=sys.stderr)
    judge = load_judge(args.judge, device=args.device)
    for record in progress_bar(records, desc="judging", unit="setting", show=args.progress):
        add_quality(record, judge, prompts, args.judge_batch)
    human = []
    for length in lengths:
        reference_prompts, reference = human_reference(models[0].tokenizer, paragraphs, length, human_texts)
        human.append({"length": length, "texts": len(reference),
                      **text_quality(judge, reference, reference_prompts, args.judge_batch)})
    mauve = []  # how MAUVE was measured, per length
    for length, reference in references.items():
        print(f"MAUVE at L={length}: featuring {len(reference['prompts'])} human continuations ...", file=sys.stderr)
        features = judge_features(judge, reference["continuations"], args.judge_batch, contexts=reference["prompts"])
        measured = [r for r in records if r["length"] == length and r["mauve"] is not None]
        scored = [add_mauve(r, judge, reference, features, args.mauve_seeds, args.judge_batch)
                  for r in progress_bar(measured, desc=f"MAUVE L={length}", unit="setting", show=args.progress)]
        if scored:
            m = scored[0]["mauve"]
            mauve.append({**reference, "reused_timed_outputs": sum(t is not None for t in reference["timed"]),
                          "n_p": m["n_p"], "n_q": m["n_q"], "num_buckets": m["num_buckets"],
                          "seeds": m["seeds"], "features": "judge's last hidden state, mean-pooled over the continuation"})
    elapsed = time.perf_counter() - started

    machine = {**machine_info(models[0].device), "allocator": allocator}
    print(f"\n{len(prompts)} prompts, batch 1, on {machine['device']} ({machine['torch_threads']} threads); "
          f"judge {args.judge}; medians over prompts; peak memory: {records[0]['memory_method'] if records else '-'}\n")
    print(markdown_tables(records, human, qa_results, skipped, mauve))
    goal = goal_check(records)
    print("\n" + goal["summary"])
    result = {
        "machine": machine,
        "command": command,
        "quick": args.quick,
        "elapsed_seconds": elapsed,
        "judge": judge.describe(),
        "models": {family_of(lm): {"source": lm.source, "parameters": lm.num_parameters,
                                   "settings": lm.settings.to_dict()} for lm in models},
        "prompts": prompts,
        "human": human,
        "mauve": mauve,
        "qa": qa_results,
        "skipped": skipped,
        "goal": goal,
        "records": records,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(_json_safe(result), indent=2, ensure_ascii=False), encoding="utf-8")
    tables = markdown_tables(records, human, qa_results, skipped, mauve) + "\n\n" + goal["summary"] + "\n"
    json_path.with_suffix(".md").write_text(tables, encoding="utf-8")
    frontier_plot(records, human, plot_path, args.judge)
    print(f"\nwrote {json_path} (and .md) and {plot_path}; elapsed {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
