"""Held-out perplexity of a diffusion model (ELBO bound) and an AR model (exact), on the same texts.

    python bench/perplexity.py --models default default-ar --texts 100 --samples 32 --json bench/results/perplexity.json

Texts are the first --texts paragraphs of the offline prose corpus's validation split (or any
one-text-per-line file via --file), each cut to --max-tokens tokens. Both models score exactly the same
tokens with `dlm.log_likelihood`, so with a shared tokenizer the perplexities are comparable; the
diffusion figure is an upper bound (its ELBO), with a Monte-Carlo standard error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dlm  # noqa: E402
from dlm.cli import add_progress_option, progress_bar  # noqa: E402


def held_out_reviews(count: int, split: str = "validation") -> list[str]:
    """The first count/2 full reviews and count/2 Rotten Tomatoes sentences of the reviews' `split`,
    interleaved (the split holds far more sentences than reviews, so both kinds are scored)."""
    import csv

    from training.corpus import build_reviews

    with contextlib.redirect_stdout(sys.stderr):  # its summary is not a result: keep stdout for the table
        folder = build_reviews()
    with open(folder / f"{split}.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    reviews = [r for r in rows if r["source"] == "pang_lee_reviews"][: (count + 1) // 2]
    sentences = [r for r in rows if r["source"] == "rt_snippets"][: count // 2]
    paired = [row for pair in zip(reviews, sentences) for row in pair] + reviews[len(sentences):]
    return [" ".join(r["text"].split()) for r in paired][:count]


def held_out_texts(path: Path | None, count: int, source: str = "prose", split: str = "validation") -> list[str]:
    if source == "reviews" and path is None:
        return held_out_reviews(count, split)
    if path is None:
        from training.corpus import build_prose_corpus

        path = build_prose_corpus() / f"{split}.txt"
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines[:count]


def score(lm, texts: list[str], samples: int, max_tokens: int, progress: bool | None = False) -> dict:
    """progress: a bar on stderr (None: only when stderr is a terminal)."""
    total, tokens, variance, nfe = 0.0, 0, 0.0, 0
    start = time.perf_counter()
    for text in progress_bar(texts, desc=f"scoring {lm.source}", unit="text", show=progress):
        ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens]
        text = lm.tokenizer.decode(ids)
        result = dlm.log_likelihood(lm, text, num_samples=samples, seed=0)
        total += result.log_likelihood
        tokens += result.num_tokens
        variance += 0.0 if result.exact else result.stderr**2
        nfe += result.nfe
    per_token = total / tokens
    return {"perplexity": math.exp(-per_token), "nats_per_token": -per_token,
            "stderr_nats_per_token": math.sqrt(variance) / tokens, "tokens": tokens, "nfe": nfe,
            "seconds": time.perf_counter() - start, "exact": lm.kind == "causal"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["default", "default-ar"])
    parser.add_argument("--file", type=Path, help="one text per line (default: the --source validation split)")
    parser.add_argument("--source", choices=["prose", "reviews"], default="prose",
                        help="held-out texts: prose paragraphs, or movie reviews (half full reviews, half sentences)")
    parser.add_argument("--split", choices=["validation", "train"], default="validation",
                        help="which split of --source: the held-out one, or the training texts themselves (the "
                             "difference is the generalisation gap: how much a model has memorised)")
    parser.add_argument("--texts", type=int, default=100)
    parser.add_argument("--samples", type=int, default=32, help="Monte-Carlo samples per text (diffusion)")
    parser.add_argument("--max-tokens", type=int, default=120)
    parser.add_argument("--json", type=Path)
    add_progress_option(parser)
    args = parser.parse_args(argv)
    texts = held_out_texts(args.file, args.texts, args.source, args.split)
    rows = {}
    for source in args.models:
        lm = dlm.load(source)
        rows[source] = {"kind": lm.kind, **score(lm, texts, args.samples, args.max_tokens, args.progress)}
    what = "held-out" if args.file or args.split == "validation" else "training"
    print(f"{len(texts)} {what} texts, at most {args.max_tokens} tokens each\n")
    print("| model | kind | perplexity | nats/token | ± (s.e.) | tokens | forward passes |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for source, r in rows.items():
        bound = "≤ " if not r["exact"] else ""
        print(f"| {source} | {r['kind']} | {bound}{r['perplexity']:.2f} | {r['nats_per_token']:.4f} | "
              f"{r['stderr_nats_per_token']:.4f} | {r['tokens']} | {r['nfe']} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"texts": len(texts), "split": None if args.file else args.split,
                                         "max_tokens": args.max_tokens, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
