"""What the page says about its models: one line per model for the header, and their cards."""

from __future__ import annotations

import html
import json
from pathlib import Path

import dlm
from webapp import models
from webapp.models import TrainedClassifier
from webapp.runs import display_name
from webapp.settings import AR, CLASSIFIER, CONTINUOUS, DIFFUSION


def model_overview() -> tuple[str, str]:
    """(one line per model and the classifier, their cards) for the header; loads them if needed."""
    lines, cards = [], []
    for role in (DIFFUSION, AR, CONTINUOUS):
        source = models.MODELS.source(role)
        try:
            lm = models.MODELS.get(role)
        except (ValueError, OSError) as error:
            lines.append(f"**{role}**: ✗ `{html.escape(source)}` could not be loaded: {html.escape(str(error))}")
            continue
        lines.append(f"**{role}**: `{html.escape(display_name(source))}` ({lm.kind}, {size(lm.num_parameters)}, "
                     f"{memory(lm)}, {lm.device.type})")
        cards.append(f"### {role}: `{html.escape(display_name(source))}`\n\n" + model_card(lm))
    source = models.MODELS.source(CLASSIFIER)
    try:
        trained = models.MODELS.classifier()
    except (ValueError, OSError) as error:
        lines.append(f"**classifier**: ✗ `{html.escape(source)}` could not be loaded: {html.escape(str(error))} "
                     "(zero-shot classification still works)")
    else:
        labels = " / ".join(html.escape(label) for label in trained.classifier.labels)
        lines.append(f"**classifier**: `{html.escape(display_name(source))}` ({trained.design}, {trained.family}, "
                     f"{size(trained.num_parameters)}; {labels})")
        cards.append(f"### classifier: `{html.escape(display_name(source))}`\n\n" + classifier_card(trained))
    return " · ".join(lines), "\n\n---\n\n".join(cards) or "No model could be loaded."


def size(parameters: int) -> str:
    return f"{parameters / 1e6:.1f}M parameters" if parameters >= 100_000 else f"{parameters:,} parameters"


def memory(lm: dlm.LanguageModel) -> str:
    """The weights' memory as loaded, e.g. '16.0 GB in bfloat16' (LLaDA-8B): the least a device needs."""
    amount = lm.weight_bytes
    shown = f"{amount / 1e9:.1f} GB" if amount >= 1e9 else f"{amount / 1e6:.1f} MB"
    return f"{shown} in {str(lm.dtype).removeprefix('torch.')}"


def readme_text(folder: Path) -> str | None:
    """A checkpoint's README.md without its front matter, headings demoted under the card's own (None if absent)."""
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    text = readme.read_text(encoding="utf-8", errors="replace")
    if text.startswith("---"):
        end = text.find("\n---", 3)
        text = text[end + 4 :] if end > 0 else text
    return text.replace("\n# ", "\n#### ").replace("\n## ", "\n#### ").strip()


def model_card(lm: dlm.LanguageModel) -> str:
    """The checkpoint's README (front matter dropped), else what its config says."""
    needs = f"**Memory**: {memory(lm)} of weights ({lm.num_parameters:,} parameters) on {lm.device.type}."
    text = readme_text(Path(lm.path))
    if text is not None:
        return needs + "\n\n" + text
    settings = lm.settings.to_dict()
    if lm.kind == "causal":  # the diffusion-only fields mean nothing to an AR model
        settings = {k: settings[k] for k in ("length", "temperature", "top_k", "top_p", "allow_eos")}
    facts = [f"- kind: {lm.kind}", f"- parameters: {lm.num_parameters:,}", f"- positions: {lm.max_positions}",
             f"- recommended sampler settings: `{json.dumps(settings)}`"]
    training = lm.card.get("training") or {}
    facts += [f"- {k}: {html.escape(str(v))}" for k, v in training.items()]
    return needs + "\n\nNo model card (README.md) in this checkpoint.\n\n" + "\n".join(facts)


def classifier_card(trained: TrainedClassifier) -> str:
    """The classifier's README (or what its classifier.json says), then its validation figures."""
    text = readme_text(trained.folder) if trained.folder else None
    if text is None:
        clf, training = trained.classifier, trained.spec.get("training") or {}
        facts = [f"- design: {trained.design} ({trained.family})", f"- labels: {', '.join(clf.labels)}",
                 f"- parameters: {trained.num_parameters:,}",
                 f"- texts read up to {clf.max_text_tokens:,} tokens; a longer one: {clf.reads()}"]
        if isinstance(training, dict):
            facts += [f"- {k}: {html.escape(str(training[k]))}" for k in ("command", "data", "wall_seconds")
                      if k in training]
        text = "No card (README.md) with this classifier.\n\n" + "\n".join(facts)
    figures = validation_lines(trained.spec)
    if figures:
        text += "\n\n**Validation** (held-out texts, from its classifier.json):\n\n" + "\n".join(figures)
    else:
        text += ("\n\nIts classifier.json has no validation figures: measure its accuracy on labelled texts in the "
                 "Classify tab.")
    return text


def validation_lines(spec: dict) -> list[str]:
    """The validation figures of a classifier.json, as Markdown bullets (none if it has none)."""
    validation = spec.get("validation")
    if not isinstance(validation, dict):
        return []
    names = {"texts": "validation texts", "accuracy": "accuracy", "temperature": "fitted temperature",
             "temperature_exponent": "temperature's growth with length (exponent)",
             "reference_tokens": "tokens at which the temperature is the fitted one",
             "ece_before": "calibration error (ECE) before", "ece_after": "calibration error (ECE) after"}
    lines = []
    for key, value in validation.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        shown = f"{value:.1%}" if key == "accuracy" else f"{value:,}" if isinstance(value, int) else f"{value:.4g}"
        lines.append(f"- {names.get(key, html.escape(str(key)))}: {shown}")
    return lines
