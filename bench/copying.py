"""How much of the generated text is copied from the training texts: the share of word n-grams of each
setting's outputs that occur verbatim in the training split (prose and reviews).

    python bench/copying.py bench/results/ar_vs_diffusion_current.json --n 4 6 8 --json bench/results/copying.json

Reads the outputs an `bench/ar_vs_diffusion.py` JSON holds (every setting, every prompt). Words are
lowercased runs of letters, digits and apostrophes. A memorising model copies long n-grams; fluent text of
its own shares many 4-grams with any corpus and almost no 8-grams.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def training_words() -> list[str]:
    from training.corpus import build_prose_corpus, build_reviews

    with contextlib.redirect_stdout(sys.stderr):
        prose, reviews = build_prose_corpus(), build_reviews()
    texts = [(prose / "train.txt").read_text(encoding="utf-8")]
    with open(reviews / "train.csv", encoding="utf-8", newline="") as f:
        texts += [row["text"] for row in csv.DictReader(f)]
    return words("\n".join(texts))


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def copy_rates(outputs: list[str], corpus: set[tuple[str, ...]], n: int) -> tuple[float, int]:
    grams = [g for text in outputs for g in ngrams(words(text), n)]
    return (sum(g in corpus for g in grams) / len(grams) if grams else float("nan")), len(grams)


def label(record: dict) -> str:
    if record["family"] != "diffusion":
        return record["family"]
    return f"{record['family']}, {record.get('steps')} steps"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="a bench/ar_vs_diffusion.py JSON")
    parser.add_argument("--n", nargs="+", type=int, default=[4, 6, 8])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    records = [r for r in json.loads(args.results.read_text())["records"] if r.get("outputs")]
    corpus_words = training_words()
    rows = [{"setting": label(r), "model": r.get("model"), "length": r.get("length")} for r in records]
    for n in args.n:
        corpus = set(ngrams(corpus_words, n))
        for row, record in zip(rows, records):
            texts = [o if isinstance(o, str) else o.get("text", "") for o in record["outputs"]]
            row[f"copied_{n}"], row[f"ngrams_{n}"] = copy_rates(texts, corpus, n)
    print(f"share of word n-grams found in the training texts ({len(corpus_words):,} words)\n")
    print("| setting | length | " + " | ".join(f"{n}-grams" for n in args.n) + " |")
    print("|---|---:|" + "---:|" * len(args.n))
    for row in rows:
        print(f"| {row['setting']} | {row['length']} | " + " | ".join(f"{row[f'copied_{n}']:.1%}" for n in args.n) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"source": str(args.results), "training_words": len(corpus_words),
                                         "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
