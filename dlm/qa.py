"""Closed-book cloze Q&A: does a model complete "Joshua the son of" with "Nun"?

    items = load_qa("bench/data/qa.jsonl")               # {"prompt": ..., "answers": [...]} per line
    result = run_qa(lm, items)                             # a masked or a causal model
    result.accuracy, result.interval, result.items[0]

Each family answers in its natural way, with the same budget of `answer_tokens` new tokens, greedily:
a causal model continues the prompt token by token; a masked-diffusion model fills `answer_tokens`
blanks appended after the prompt, committing the most confident blank each step (low-confidence
remasking, one token per step). Neither may end the text early (EOS is never sampled): the answer is
never "nothing".

Scoring is SQuAD's exact match adapted to continuations: the output and each answer are normalised
(lowercase, punctuation and the articles a/an/the removed, whitespace collapsed), and an item is
correct when the output's first words are exactly one answer's words ("Nun, and all" matches "Nun";
"Nunc" does not). Accuracy comes with a 95% Wilson interval.
"""

from __future__ import annotations

import json
import re
import string
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from dlm.config import SamplerConfig
from dlm.loading import LanguageModel

ANSWER_TOKENS = 6  # new tokens each model may spend on an answer (a long name takes 3-4 BPE tokens)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation) | set("“”‘’—–…")  # ASCII as in SQuAD, plus typographic marks


@dataclass(frozen=True)
class QAItem:
    """One question: a prompt the answer continues, and the accepted answers."""

    prompt: str
    answers: tuple[str, ...]
    meta: dict = field(default_factory=dict, compare=False)  # anything else on the line (count, source, ...)


def load_qa(path: str | Path) -> list[QAItem]:
    """Read a JSONL file of {"prompt": str, "answers": [str, ...], ...}; ValueError naming the line if bad."""
    path = Path(path)
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected an object with 'prompt' and 'answers', got {type(record).__name__}")
        missing = [key for key in ("prompt", "answers") if key not in record]
        if missing:
            raise ValueError(f"{where}: missing field(s) {missing}; each line needs 'prompt' and 'answers'")
        prompt, answers = record["prompt"], record["answers"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"{where}: 'prompt' must be a non-empty string")
        if isinstance(answers, str):
            answers = [answers]
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise ValueError(f"{where}: 'answers' must be a non-empty list of strings")
        if not all(normalize_answer(a) for a in answers):
            raise ValueError(f"{where}: an answer is empty after normalisation (only punctuation or articles)")
        meta = {k: v for k, v in record.items() if k not in ("prompt", "answers")}
        items.append(QAItem(prompt.strip(), tuple(answers), meta))
    if not items:
        raise ValueError(f"{path.name} has no Q&A items")
    return items


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lowercase, drop punctuation, drop the articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(output: str, answers: tuple[str, ...] | list[str]) -> bool:
    """True when the normalised output starts with all the words of one normalised answer."""
    words = normalize_answer(output).split()
    for answer in answers:
        expected = normalize_answer(answer).split()
        if expected and words[: len(expected)] == expected:
            return True
    return False


def qa_config(answer_tokens: int = ANSWER_TOKENS) -> SamplerConfig:
    """The sampler settings both families answer with: greedy, `answer_tokens` new tokens, no EOS;
    for a masked model one token per step, the most confident blank first."""
    return SamplerConfig(
        length=answer_tokens, steps=answer_tokens, temperature=0.0, remasking="low_confidence", allow_eos=False
    )


def answer(lm: LanguageModel, prompt: str, answer_tokens: int = ANSWER_TOKENS) -> str:
    """The model's continuation of `prompt` (the generated text only)."""
    import dlm

    if lm.kind == "continuous":  # its recommended steps, deterministic DDIM: the analogue of greedy
        config = lm.settings.replace(length=answer_tokens, allow_eos=False, num_samples=1)
        generation = dlm.stream(lm, prompt, config=config, seed=0, solver="ddim")
    else:
        generation = dlm.stream(lm, prompt, config=qa_config(answer_tokens), seed=0)
    generation.run()
    return generation.completions()[0]


@dataclass
class QAResult:
    """Exact-match accuracy of one model on a Q&A set, with every item's output."""

    model: str
    family: str  # "diffusion", "ar" or "continuous"
    correct: int
    total: int
    answer_tokens: int
    items: list[dict]  # {"prompt", "answers", "output", "correct", **meta}

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        from dlm.classify import wilson_interval

        return wilson_interval(self.correct, self.total)

    def by_source(self) -> dict[str, dict]:
        """Accuracy per item `source` (for items that name one)."""
        groups: dict[str, list[bool]] = defaultdict(list)
        for item in self.items:
            if "source" in item:
                groups[str(item["source"])].append(item["correct"])
        return {s: {"correct": sum(v), "total": len(v), "accuracy": sum(v) / len(v)} for s, v in sorted(groups.items())}

    def to_dict(self) -> dict:
        low, high = self.interval
        return {
            "model": self.model,
            "family": self.family,
            "exact_match": self.accuracy,
            "ci95": [low, high],
            "correct": self.correct,
            "total": self.total,
            "answer_tokens": self.answer_tokens,
            "by_source": self.by_source(),
            "items": self.items,
        }


def family_of(lm: LanguageModel) -> str:
    return {"masked": "diffusion", "causal": "ar"}.get(lm.kind, lm.kind)


def run_qa(lm: LanguageModel, items: list[QAItem], answer_tokens: int = ANSWER_TOKENS) -> QAResult:
    """Answer every item with `answer` and score it with `exact_match`."""
    results = []
    for item in items:
        output = answer(lm, item.prompt, answer_tokens)
        results.append({**item.meta, "prompt": item.prompt, "answers": list(item.answers), "output": output,
                        "correct": exact_match(output, item.answers)})
    correct = sum(r["correct"] for r in results)
    return QAResult(lm.source, family_of(lm), correct, len(results), answer_tokens, results)
