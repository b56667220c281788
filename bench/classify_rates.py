"""Which mask rates decide a diffusion classifier? Its score gap per mask-rate band, on labelled texts.

    python bench/classify_rates.py --classifier default-classifier --split validation --json runs/rates_val.json
    python bench/classify_rates.py --classifier default-classifier --split test --json runs/rates_test.json
    python bench/classify_rates.py --analyse runs/rates_val.json                        # weights by 10-fold cross-validation
    python bench/classify_rates.py --analyse runs/rates_val.json runs/rates_test.json   # fit on the first, test on the second

The ELBO a masked classifier scores is an average over mask rates: a sample that masks l of a piece's L
tokens contributes L / l times the log-probabilities of the masked tokens, and l is uniform on 1..L. At a
high rate the models guess nearly from nothing (a bag of words, like Naive Bayes); at a low one they
predict a token from its context. Bayes' rule weighs every rate alike. This bench scores each text (read
as the classifier reads it: up to max_pieces pieces) with `--per-band` masks in each of `--bands` equal
bands of rates per piece, the mask counts stratified within each band (the same masks for every class, tiled over positions),
and keeps each class's mean ELBO estimate per band. `--analyse` then reports the accuracy of each band
alone, of rate ranges, of the uniform average (the classifier's own estimate with this many samples),
and of a weighting over the bands fitted by logistic regression (cross-validated on one file's texts, or
fitted on the first file's and applied to the second's).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from dlm.classify import load_classifier  # noqa: E402
from dlm.classify.scoring import masked_terms  # noqa: E402
from dlm.cli import progress_bar  # noqa: E402
from dlm.masking import tiled_masks  # noqa: E402


def band_counts(length: int, bands: int, per_band: int, generator: torch.Generator) -> tuple[torch.Tensor, list[int]]:
    """Mask counts stratified within each of `bands` equal bands of 1..length, `per_band` each, and each
    count's band. One random offset per piece, shared by its bands (as `stratified_counts`)."""
    u = float(torch.rand(1, generator=generator))
    counts, band_of = [], []
    for b in range(bands):
        for s in range(per_band):
            rate = (b + (s + u) / per_band) / bands  # in (b / bands, (b + 1) / bands]
            counts.append(min(length, max(1, math.ceil(rate * length))))
            band_of.append(b)
    return torch.tensor(counts), band_of


def score_bands(classifier, texts: list[str], bands: int, per_band: int, batch_texts: int, seed: int,
                progress: bool | None) -> list[list[list[float]]]:
    """Per text: [class][band] the mean ELBO estimate of the text (its pieces' estimates added)."""
    out = []
    with progress_bar(total=len(texts), desc="texts", unit="text", show=progress) as bar:
        for begin in range(0, len(texts), batch_texts):
            chunk = texts[begin : begin + batch_texts]
            targets, owner = [], []
            for t, text in enumerate(chunk):
                for piece in classifier._pieces(text)[2]:
                    targets.append(piece)
                    owner.append(t)
            masks, band_of = {}, {}
            for i, piece in enumerate(targets):
                generator = torch.Generator().manual_seed(seed * 1_000_003 + begin * 1_000 + i)
                counts, band_of[i] = band_counts(len(piece), bands, per_band, generator)
                masks[i] = tiled_masks(counts, len(piece), generator)
            sums = torch.zeros(len(chunk), len(classifier.models), bands, dtype=torch.float64)
            for c, (lm, context) in enumerate(zip(classifier.models, classifier._contexts)):
                terms = masked_terms(lm, context, dict(enumerate(targets)), masks, classifier.batch_size)
                for i, t in terms.items():
                    estimates = t.sum(dim=1)  # (samples,) ELBO estimates of the piece
                    for j, b in enumerate(band_of[i]):
                        sums[owner[i], c, b] += estimates[j] / per_band
            out += sums.tolist()
            bar.update(len(chunk))
    return out


def accuracy(scores: torch.Tensor, truth: torch.Tensor, log_priors: torch.Tensor) -> float:
    return float(((scores + log_priors).argmax(dim=1) == truth).double().mean())


def analyse(fit: dict, test: dict) -> dict:
    """Accuracy on `test` of each band, of rate ranges, of the uniform average, and (two classes) of band
    weights fitted by logistic regression on the per-band score gaps: on `fit`, or, when `fit` is None,
    10-fold cross-validated on `test` itself beside the uniform average with a fitted scale and bias."""
    from sklearn.linear_model import LogisticRegression

    labels = test["labels"]
    log_priors = torch.tensor([math.log(p) for p in test["priors"]], dtype=torch.float64)

    def tensors(d):
        return (torch.tensor(d["scores"], dtype=torch.float64),
                torch.tensor([labels.index(y) for y in d["truth"]]))

    x_test, y_test = tensors(test)
    bands = x_test.shape[2]
    rows = {"uniform (the ELBO)": accuracy(x_test.mean(dim=2), y_test, log_priors)}
    for b in range(bands):
        rows[f"band {b * 100 // bands}-{(b + 1) * 100 // bands}%"] = accuracy(x_test[:, :, b], y_test, log_priors)
    for lo, hi in ((0, bands // 2), (bands // 2, bands), (0, bands * 3 // 10), (bands * 7 // 10, bands),
                   (bands * 3 // 10, bands * 7 // 10)):
        rows[f"rates {lo * 100 // bands}-{hi * 100 // bands}%"] = accuracy(x_test[:, :, lo:hi].mean(dim=2), y_test, log_priors)
    out = {"accuracy": rows}
    if len(labels) != 2:
        return out
    gap = lambda x: (x[:, 1] - x[:, 0]).numpy()  # noqa: E731  per band: log p(x | 1) - log p(x | 0)
    if fit is None:  # one file: 10-fold cross-validation on its texts, uniform (one weight) against per band
        from sklearn.model_selection import StratifiedKFold, cross_val_score

        folds = StratifiedKFold(10, shuffle=True, random_state=0)
        for name, features in (("uniform, fitted scale and bias (10-fold CV)", gap(x_test).mean(axis=1, keepdims=True)),
                               ("fitted band weights (10-fold CV)", gap(x_test))):
            rows[name] = float(cross_val_score(LogisticRegression(max_iter=2000), features, y_test.numpy(),
                                               cv=folds).mean())
        fit = test
    model = LogisticRegression(max_iter=2000).fit(gap(tensors(fit)[0]), tensors(fit)[1].numpy())
    if fit is not test:
        rows["fitted band weights"] = float((torch.tensor(model.predict(gap(x_test))) == y_test).double().mean())
    out["weights"] = model.coef_[0].tolist()
    out["intercept"] = float(model.intercept_[0])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classifier", default="default-classifier")
    parser.add_argument("--split", default="validation", choices=["validation", "test"])
    parser.add_argument("--limit", type=int, help="first N texts of the split")
    parser.add_argument("--bands", type=int, default=10)
    parser.add_argument("--per-band", type=int, default=2, help="mask samples per band and piece")
    parser.add_argument("--batch-texts", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json")
    parser.add_argument("--analyse", nargs="+", metavar="JSON",
                        help="one file: its figures with 10-fold cross-validated weights; two: fit on the first, test on the second")
    args = parser.parse_args(argv)
    if args.analyse:
        if len(args.analyse) > 2:
            parser.error("--analyse takes one or two files")
        files = [json.loads(Path(p).read_text()) for p in args.analyse]
        test, fit = files[-1], (files[0] if len(files) == 2 else None)
        result = analyse(fit, test)
        print(f"| weighting over mask rates | accuracy on {args.analyse[-1]} ({len(test['truth'])} texts) |")
        print("|---|---:|")
        for name, value in result["accuracy"].items():
            print(f"| {name} | {100 * value:.1f}% |")
        if "weights" in result:
            print("fitted weights per band:", " ".join(f"{w:.3f}" for w in result["weights"]))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    from bench.classify import labelled_rows

    rows = labelled_rows(args.split, None)[: args.limit]
    classifier = load_classifier(args.classifier)
    start = time.perf_counter()
    scores = score_bands(classifier, [t for t, _ in rows], args.bands, args.per_band, args.batch_texts, args.seed, None)
    result = {"command": "python " + " ".join(sys.argv), "classifier": args.classifier, "split": args.split,
              "labels": list(classifier.labels), "priors": list(classifier.priors), "bands": args.bands,
              "per_band": args.per_band, "seconds": time.perf_counter() - start, "machine": platform.machine(),
              "truth": [y for _, y in rows], "scores": scores}
    summary = analyse(None, result)
    for name, value in summary["accuracy"].items():
        print(f"{name}: {100 * value:.1f}%")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
