"""Classifiers on the movie-review test split: diffusion (per-class, conditional), AR generative, discriminative, Naive Bayes.

    python bench/classify.py --json bench/results/classify.json
    python bench/classify.py --classifier "diffusion per-class=runs/clf-per-class" --limit 200
    python bench/classify.py --classifier diffusion=default-classifier --no-naive-bayes \
        --scoring 128:128:inf:random 8:32:3:random 4:16:3:tiled    # the Monte-Carlo budget

One row per classifier: test accuracy with a 95% Wilson interval, macro-F1, ECE (15 bins, with the
temperature each classifier fitted on the validation split), forward passes per text, texts per
second, parameters (all class models together) and training time. Every classifier sees the same
texts and was trained on the same train split (the project's split rule, shared/DATA.md). A generative
classifier reads a long text as consecutive pieces of its --max-tokens (up to its max_pieces; the JSON
says how many texts were cut), the discriminative one its first piece. Naive Bayes (scikit-learn, word
uni+bigram counts, alpha = 1) reads the whole text: it is the floor any shipped classifier should
clear. Where the split has a source column (the offline reviews: full reviews and one-sentence
snippets) the accuracy per source follows the table.
Classifiers are folders written by `training.train_classifier` (or bundled names); missing ones are
reported and skipped.

--scoring runs a masked (diffusion) classifier once per Monte-Carlo budget, ROUND:MAX:MARGIN:MASKS:
mask patterns per round, the cap per text, the stopping margin in standard errors (inf: always the
cap) and the masks' design (tiled over positions, or random). Each row then also gives its agreement
with the first budget's decisions, so `128:128:inf:random` first makes that row the reference.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from dlm.classify import CONFIG_FILE, _classifier_folder, load_classifier, report  # noqa: E402
from dlm.classify.classifiers import TRUNCATIONS  # noqa: E402
from dlm.classify.scoring import scoring_options  # noqa: E402
from dlm.cli import add_progress_option, note, progress_bar  # noqa: E402

DEFAULTS = [
    ("diffusion per-class", "runs/clf-per-class-e2"),
    ("diffusion conditional", "runs/clf-conditional"),
    ("AR per-class", "runs/clf-ar-per-class"),
    ("AR conditional", "runs/clf-ar"),
    ("discriminative", "runs/clf-discriminative"),
]


def labelled_rows(split: str, data: str | None, with_source: bool = False) -> list[tuple]:
    """(text, label) rows, or (text, label, source) where the CSV has a source column (else "")."""
    folder = Path(data) if data else None
    if folder is None:
        from training.corpus import build_reviews

        folder = build_reviews()
    with (folder / f"{split}.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [(r["text"], r["label"], r.get("source") or "") if with_source else (r["text"], r["label"]) for r in rows]


def by_source(predicted: list[str], rows: list[tuple[str, str, str]]) -> dict:
    """Accuracy per source of the texts (e.g. full reviews against one-sentence snippets)."""
    out: dict[str, dict] = {}
    for label, (_, truth, source) in zip(predicted, rows):
        entry = out.setdefault(source, {"texts": 0, "correct": 0})
        entry["texts"] += 1
        entry["correct"] += label == truth
    for entry in out.values():
        entry["accuracy"] = entry["correct"] / entry["texts"]
    return out


def parse_scoring(text: str) -> dict:
    """ROUND:MAX:MARGIN:MASKS -> the GenerativeClassifier's scoring options."""
    try:
        return scoring_options(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def bench_classifier(name: str, source: str, rows: list[tuple[str, str]], batch: int,
                     progress: bool | None = False, scoring: dict | None = None, max_pieces: int | None = None,
                     truncation: str | None = None) -> dict:
    """progress: a bar on stderr, moved after every classify() call (None: only when stderr is a terminal).
    scoring: Monte-Carlo options for a masked classifier (`parse_scoring`); max_pieces: how many pieces of
    a long text a generative classifier reads and truncation which (default: its classifier.json's)."""
    folder = _classifier_folder(source)
    spec = json.loads((folder / CONFIG_FILE).read_text())
    options = {"explain": False} if spec["design"] == "discriminative" else dict(scoring or {})
    if max_pieces is not None and spec["design"] != "discriminative":
        options["max_pieces"] = max_pieces
    if truncation is not None and spec["design"] != "discriminative":
        options["truncation"] = truncation
    classifier = load_classifier(source, **options)
    texts, truth = [t for t, _ in rows], [y for _, y in rows]
    predictions = []
    start = time.perf_counter()
    with progress_bar(total=len(texts), desc=name, unit="text", show=progress) as bar:
        for i in range(0, len(texts), batch):
            predictions += classifier.classify(texts[i : i + batch])
            bar.update(len(texts[i : i + batch]))
    seconds = time.perf_counter() - start
    metrics = report(predictions, truth, list(classifier.labels))
    parameters = sum(m["parameters"] for m in spec["training"]["models"].values())
    return {"classifier": name, "source": source, "design": spec["design"], "family": spec["family"], **metrics,
            "texts_per_second": len(texts) / seconds, "seconds": seconds, "parameters": parameters,
            "training_seconds": spec["training"]["wall_seconds"], "temperature": spec.get("temperature", 1.0),
            "temperature_exponent": getattr(classifier, "temperature_exponent", 0.0),
            "validation": spec.get("validation"), "scoring": scoring,
            "max_text_tokens": classifier.max_text_tokens, "truncated": sum(p.truncated for p in predictions),
            "predicted": [p.label for p in predictions]}


def bench_naive_bayes(train: list[tuple[str, str]], rows: list[tuple[str, str]]) -> dict:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.naive_bayes import MultinomialNB

    from dlm.classify import Prediction

    start = time.perf_counter()
    vectorizer = CountVectorizer(ngram_range=(1, 2), lowercase=True)
    model = MultinomialNB(alpha=1.0).fit(vectorizer.fit_transform([t for t, _ in train]), [y for _, y in train])
    trained = time.perf_counter() - start
    start = time.perf_counter()
    probabilities = model.predict_proba(vectorizer.transform([t for t, _ in rows]))
    seconds = time.perf_counter() - start
    labels = list(model.classes_)
    predictions = []
    for p in probabilities:
        order = p.argsort()[::-1]
        predictions.append(Prediction(labels[order[0]], dict(zip(labels, p.tolist())), {}, labels[order[1]], [], [], False, 0))
    metrics = report(predictions, [y for _, y in rows], labels)
    return {"classifier": "Naive Bayes", "source": "scikit-learn MultinomialNB, word 1-2-grams", "design": "bag of words",
            "family": "count-based", **metrics, "texts_per_second": len(rows) / seconds, "seconds": seconds,
            "parameters": int(model.feature_count_.size), "training_seconds": trained, "temperature": 1.0,
            "predicted": [p.label for p in predictions]}


def scoring_label(scoring: dict) -> str:
    margin = "always the cap" if scoring["margin"] == float("inf") else f"stop at {scoring['margin']:g} SE"
    return f"{scoring['masks']} masks, rounds of {scoring['round_samples']}, cap {scoring['max_samples']}, {margin}"


def table(results: list[dict]) -> str:
    lines = ["| classifier | design | test accuracy (95% CI) | macro-F1 | ECE | forward passes / text | texts/s | parameters | training |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        low, high = r["accuracy_ci95"]
        lines.append(f"| {r['classifier']} | {r['design']} | {r['accuracy']:.1%} ({low:.1%}–{high:.1%}) | {r['macro_f1']:.3f} | "
                     f"{r['ece']:.3f} | {r['nfe_per_text']:.1f} | {r['texts_per_second']:.1f} | {r['parameters']:,} | "
                     f"{r['training_seconds'] / 60:.0f} min |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classifier", action="append", metavar="NAME=SOURCE",
                        help="a classifier folder, bundled name or Hub id (repeatable; default: the five runs/clf-* folders)")
    parser.add_argument("--data", help="folder with train/validation/test.csv (text,label); default: the offline reviews")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, help="only N texts of the split, drawn at random (seed 0)")
    parser.add_argument("--sources", nargs="+", metavar="SOURCE",
                        help="only the texts of these sources (the CSV's source column), e.g. pang_lee_reviews")
    parser.add_argument("--batch", type=int, default=64, help="texts per classify() call")
    parser.add_argument("--scoring", nargs="+", type=parse_scoring, metavar="ROUND:MAX:MARGIN:MASKS",
                        help="run each masked classifier once per Monte-Carlo budget (the first is the reference)")
    parser.add_argument("--max-pieces", type=int,
                        help="generative classifiers read up to this many pieces of a long text (default: their own "
                             "setting; 1: the first piece only)")
    parser.add_argument("--truncation", choices=TRUNCATIONS,
                        help="generative classifiers: which pieces of a text longer than --max-pieces they read "
                             "(default: their own setting)")
    parser.add_argument("--no-naive-bayes", action="store_true")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--append", action="store_true",
                        help="keep the other classifiers' rows already in --json (runs split across processes)")
    add_progress_option(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = [tuple(c.split("=", 1)) for c in args.classifier] if args.classifier else DEFAULTS
    if any(len(c) != 2 for c in chosen):
        parser.error("--classifier takes NAME=SOURCE")
    if args.max_pieces is not None and args.max_pieces < 1:
        parser.error("--max-pieces must be >= 1")
    sourced = labelled_rows(args.split, args.data, with_source=True)
    if args.sources:
        sourced = [row for row in sourced if row[2] in args.sources]
        if not sourced:
            parser.error(f"no {args.split} texts from the sources {args.sources}")
    if args.limit:  # a random subset (fixed seed): the files are ordered by source
        import random

        random.Random(0).shuffle(sourced)
        sourced = sourced[: args.limit]
    rows = [(text, label) for text, label, _ in sourced]
    results, skipped = [], []
    for name, source in chosen:
        try:
            _classifier_folder(source)
        except ValueError as error:
            skipped.append({"classifier": name, "source": source, "reason": str(error)})
            note(f"skipping {name}: {error}")
            continue
        spec = json.loads((_classifier_folder(source) / CONFIG_FILE).read_text())
        budgets = args.scoring if args.scoring and spec["family"] == "masked" else [None]
        reference = None
        for scoring in budgets:
            label = name if scoring is None else f"{name} [{scoring_label(scoring)}]"
            results.append(bench_classifier(label, source, rows, args.batch, args.progress, scoring, args.max_pieces,
                                            args.truncation))
            reference = reference or results[-1]["predicted"]
            if scoring is not None:
                results[-1]["agreement"] = sum(a == b for a, b in zip(results[-1]["predicted"], reference)) / len(rows)
            note(f"{label}: accuracy {results[-1]['accuracy']:.3f}, {results[-1]['nfe_per_text']:.1f} passes/text "
                 f"in {results[-1]['seconds']:.0f} s")
    if not args.no_naive_bayes:
        results.append(bench_naive_bayes(labelled_rows("train", args.data), rows))
    for r in results:
        r["by_source"] = by_source(r["predicted"], sourced)
    print(f"{len(rows)} {args.split} texts; {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, {'CUDA' if torch.cuda.is_available() else 'CPU'}\n")
    if args.json and args.append and args.json.is_file():
        names = {r["classifier"] for r in results}
        results = [r for r in json.loads(args.json.read_text())["results"] if r["classifier"] not in names] + results
    print(table(results))
    if len({source for _, _, source in sourced}) > 1:
        print("\naccuracy by source of the texts: " + "; ".join(
            f"{r['classifier']}: " + ", ".join(f"{k or '?'} {v['accuracy']:.1%} ({v['texts']})"
                                              for k, v in sorted(r["by_source"].items())) for r in results))
    agreements = [r for r in results if "agreement" in r]
    if agreements:
        print("\nagreement with the first budget's decisions: " +
              "; ".join(f"{r['classifier']} {r['agreement']:.1%}" for r in agreements))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": "python bench/classify.py " + " ".join(argv or sys.argv[1:]),
                                         "split": args.split, "texts": len(rows), "threads": torch.get_num_threads(),
                                         "device": "cuda" if torch.cuda.is_available() else "cpu",
                                         "results": results, "skipped": skipped}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
