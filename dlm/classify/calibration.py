"""Calibration and metrics: probabilities from scores, temperature scaling, ECE, and accuracy with its
interval, macro-F1 and the confusion matrix against known labels.

Probabilities are calibrated by temperature scaling (Guo et al. 2017): p = softmax(z / T) with the
scores z_c = log p(x | c) + log p(c), T fitted on validation texts (`calibration_report`). A generative
classifier's score gaps grow with the length of the text (its log-likelihoods add over tokens), so its
temperature may grow with it too: T(m) = T · (m / m₀)^a for a text of m scored tokens, m₀ its piece
length; a = 0 is plain temperature scaling, and both T and a are fitted (`fit_length_temperature`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
import torch

from dlm.classify.prediction import Classifier, Prediction


def softmax(scores: Sequence[float]) -> list[float]:
    top = max(scores)
    weights = [math.exp(x - top) for x in scores]
    total = sum(weights)
    return [w / total for w in weights]


def posterior(log_likelihoods: Sequence[float]) -> list[float]:
    """Bayes' rule with uniform priors: softmax of the log-likelihoods."""
    return softmax(log_likelihoods)


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The T > 0 minimising the negative log-likelihood of softmax(logits / T) (temperature scaling)."""
    logits, targets = logits.double(), targets.long()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(log_t.detach().exp())


def fit_length_temperature(logits: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor,
                           reference: float) -> tuple[float, float]:
    """(T, a) minimising the negative log-likelihood of softmax(logits / (T · (length / reference)^a)).

    lengths: scored tokens per row; reference: the length at which the temperature is T."""
    logits, targets = logits.double(), targets.long()
    log_ratio = (lengths.double() / reference).log().unsqueeze(1)
    params = torch.zeros(2, dtype=torch.float64, requires_grad=True)  # log T, a
    optimiser = torch.optim.LBFGS([params], lr=0.1, max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / (params[0] + params[1] * log_ratio).exp(), targets)
        loss.backward()
        return loss

    optimiser.step(closure)
    log_t, exponent = params.detach().tolist()
    return math.exp(log_t), exponent


def expected_calibration_error(probabilities: torch.Tensor, targets: torch.Tensor, bins: int = 15) -> float:
    """ECE: the confidence-weighted gap between confidence and accuracy over equal-width bins."""
    confidence, predicted = probabilities.max(dim=1)
    correct = (predicted == targets).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=probabilities.dtype)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            ece += float(inside.double().mean() * (confidence[inside].double().mean() - correct[inside].mean()).abs())
    return ece


def calibration_report(classifier: Classifier, texts: Sequence[str], truth: Sequence[str]) -> dict:
    """Score labelled (validation) texts, fit the temperature, and measure ECE before and after."""
    labels = list(classifier.labels)
    lookup = {c.casefold(): c for c in labels}
    keep = [(t, lookup[y.strip().casefold()]) for t, y in zip(texts, truth) if y.strip().casefold() in lookup]
    if not keep:
        raise ValueError("no text has one of the classifier's labels")
    predictions = classifier.classify([t for t, _ in keep])
    logits = torch.tensor([[p.logits[c] for c in labels] for p in predictions], dtype=torch.float64)
    targets = torch.tensor([labels.index(y) for _, y in keep])
    nll = lambda p: float(-p.gather(1, targets.unsqueeze(1)).clamp_min(1e-300).log().mean())  # noqa: E731
    temperature = fit_temperature(logits, targets)
    before, after = torch.softmax(logits, dim=1), torch.softmax(logits / temperature, dim=1)
    result = {
        "texts": len(keep),
        "accuracy": float((logits.argmax(dim=1) == targets).double().mean()),
        "temperature": temperature,
        "ece_before": expected_calibration_error(before, targets),
        "ece_after": expected_calibration_error(after, targets),
        "nll_before": nll(before),
        "nll_after": nll(after),
        "nfe_per_text": sum(p.nfe for p in predictions) / len(predictions),
    }
    reference = getattr(classifier, "max_tokens", None)
    if hasattr(classifier, "temperature_exponent") and reference:  # generative: the temperature may grow with length
        lengths = torch.tensor([len(p.tokens) for p in predictions], dtype=torch.float64)
        scale, exponent = fit_length_temperature(logits, targets, lengths, reference)
        scaled = torch.softmax(logits / (scale * (lengths / reference).pow(exponent)).unsqueeze(1), dim=1)
        result.update({
            "constant_temperature": {k: result[k] for k in ("temperature", "ece_after", "nll_after")},
            "temperature": scale, "temperature_exponent": exponent, "reference_tokens": reference,
            "ece_after": expected_calibration_error(scaled, targets), "nll_after": nll(scaled),
            "tokens_per_text": {"median": float(lengths.median()), "max": float(lengths.max())},
        })
    return result


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if total == 0:
        return (0.0, 1.0)
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class Evaluation:
    """Accuracy, macro-F1 and the confusion matrix against known labels."""

    correct: int
    total: int  # rows whose label is one of the classes
    unknown: list[str]  # labels in the file that are not classes
    classes: list[str]
    confusion: list[list[int]]  # confusion[i][j]: texts of class i predicted as class j

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.total)

    @property
    def macro_f1(self) -> float:
        scores = []
        for k in range(len(self.classes)):
            tp = self.confusion[k][k]
            predicted = sum(row[k] for row in self.confusion)
            actual = sum(self.confusion[k])
            scores.append(2 * tp / (predicted + actual) if predicted + actual else 0.0)
        return sum(scores) / len(scores) if scores else float("nan")


def evaluate(predicted: list[str], truth: list[str], classes: list[str]) -> Evaluation:
    """Compare predictions with true labels (matched to the classes ignoring case and spaces)."""
    lookup = {c.casefold(): c for c in classes}
    counts = {t: {p: 0 for p in classes} for t in classes}
    correct = total = 0
    unknown: list[str] = []
    for p, t in zip(predicted, truth):
        t_class = lookup.get(t.strip().casefold())
        if t_class is None:
            unknown.append(t)
            continue
        counts[t_class][p] += 1
        total += 1
        correct += t_class == p
    confusion = [[counts[t][p] for p in classes] for t in classes]
    return Evaluation(correct, total, unknown, list(classes), confusion)


def report(predictions: list[Prediction], truth: list[str], classes: list[str]) -> dict:
    """Everything the CLI and the benchmark print for labelled texts (ECE over rows with a known label)."""
    evaluation = evaluate([p.label for p in predictions], truth, classes)
    lookup = {c.casefold(): c for c in classes}
    known = [(p, lookup[t.strip().casefold()]) for p, t in zip(predictions, truth) if t.strip().casefold() in lookup]
    ece = float("nan")
    if known:
        probabilities = torch.tensor([[p.probabilities[c] for c in classes] for p, _ in known], dtype=torch.float64)
        ece = expected_calibration_error(probabilities, torch.tensor([classes.index(t) for _, t in known]))
    low, high = evaluation.interval
    return {
        "texts": len(predictions),
        "labelled": evaluation.total,
        "unknown_labels": len(evaluation.unknown),
        "accuracy": evaluation.accuracy,
        "accuracy_ci95": [low, high],
        "macro_f1": evaluation.macro_f1,
        "ece": ece,
        "classes": classes,
        "confusion": evaluation.confusion,
        "nfe_per_text": sum(p.nfe for p in predictions) / max(len(predictions), 1),
    }
