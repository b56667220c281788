"""The dlm Space: watch text emerge from masks, export the animation, classify texts, race diffusion against AR.

    python app.py                                              # bundled models on http://127.0.0.1:7860
    python app.py --model runs/diffusion --ar-model runs/ar    # any folder or Hub repo id
    python app.py --share                                      # also a public gradio.live link
    DLM_MODEL=user/dlm-small python app.py                     # the same through the environment (a Space's variables)

Models load lazily, once, on the first request that needs them (or in a warm-up thread after launch).
Reading order: limits, then pure functions that know nothing of Gradio, then the handlers that turn
their results and errors into components, the layout in `with gr.Blocks() as demo:`, the event
wiring, and `main()`.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from abc import ABCMeta
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import gradio as gr
import pandas as pd

import dlm
from dlm.classify import CONFIG_FILE as CLASSIFIER_FILE
from dlm.classify import DiscriminativeClassifier, GenerativeClassifier, evaluate, wilson_interval
from dlm.config import CACHES, REMASKING, SCHEDULES
from dlm.race import Lane, filled_tokens, race
from dlm.render import COLOR_MAP, highlight
from dlm.render.snapshot import KIND_NAMES
from dlm.tables import guess_label_column, guess_text_column, read_table, select_texts

ROOT = Path(__file__).resolve().parent
BENCH_RESULTS = ROOT / "bench" / "results"

# ---- per-request limits: one user cannot starve the others -------------------------------------
MAX_LENGTH = 256  # tokens a generation may write (the model's own position limit may be lower)
MAX_STEPS = 256  # denoising steps per generation
MAX_SAMPLES = 4  # samples drawn side by side in one generation
MAX_PROMPT_CHARS = 2_000  # characters of prompt or infilling template
MAX_UPLOAD_MB = 5  # size of an uploaded .txt / .csv (also enforced by the server on upload)
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
MAX_ROWS = 200  # texts classified per request; longer files are cut, with a warning
MAX_LABELS = 8  # classes in one classification
MAX_LABEL_CHARS = 40  # characters of one class name
MAX_CLASSIFY_SAMPLES = 64  # Monte-Carlo mask patterns per text: zero-shot, or the trained classifier's cap
MAX_FRAME_MS = 2_000  # slowest animation frame
MIN_FRAME_MS = 40  # fastest animation frame (browsers clamp faster GIF frames anyway)
RACE_FRAMES = 150  # a side-by-side race GIF has at most about this many frames (it plays faster instead)

# ---- serving ------------------------------------------------------------------------------------
CONCURRENCY = 2  # model-bound requests running at once, all tabs together (2 CPU cores on a free Space)
QUEUE_SIZE = 32  # requests waiting in the queue; more get "queue full"
MIN_UPDATE_SECONDS = 0.05  # at most ~20 streamed updates a second per request
OUTPUT_TTL_SECONDS = 3_600  # rendered files are deleted after an hour
DIFFUSION, AR, CLASSIFIER = "diffusion", "autoregressive", "classifier"  # what the app loads, by role
CONTINUOUS = "continuous"  # the embedding-space diffusion model (Generate and Animate)
ENV = {DIFFUSION: "DLM_MODEL", AR: "DLM_AR_MODEL", CONTINUOUS: "DLM_CONTINUOUS_MODEL", CLASSIFIER: "DLM_CLASSIFIER"}
DEFAULTS = {DIFFUSION: "default", AR: "default-ar", CONTINUOUS: "default-continuous",
            CLASSIFIER: "default-classifier"}  # bundled names, folders or Hub ids

# ---- what the controls start at (the diffusion model's recommendations replace them on page load) ----
START = dlm.SamplerConfig(length=48, steps=24, temperature=0.8, top_p=0.95)
DEFAULT_PROMPT = "Once upon a time"
DEFAULT_TEMPLATE = "The [MASK] [MASK] sat on the [MASK] and looked at the [MASK]."
DEFAULT_LABELS = "positive, negative"
DEFAULT_LABEL_PROMPT = "A {label} review:"
TRAINED, ZERO_SHOT = "trained", "zero-shot"  # the Classify tab's two kinds of classifier
MODEL_COLORS = {DIFFUSION: "#6366f1", AR: "#f97316"}  # indigo and orange, in the Compare charts


def _gpu_decorator():
    """`spaces.GPU` on a ZeroGPU Space; elsewhere a decorator that returns the function unchanged."""
    try:
        import spaces
    except ImportError:
        spaces = None
    # our own spaces/ folder (deployment files, no __init__.py) imports as an empty namespace package
    return getattr(spaces, "GPU", None) or (lambda fn: fn)


gpu = _gpu_decorator()


class _NoStubs(type(gr.Slider)):
    """Gradio's component metaclass writes a .pyi copy of the defining module next to it (app.pyi) for
    every component subclass; a subclass that adds no events or __init__ needs none of its work."""

    def __new__(mcs, name, bases, attrs):
        return ABCMeta.__new__(mcs, name, bases, attrs)


class Slider(gr.Slider, metaclass=_NoStubs):
    """gr.Slider whose out-of-range values (possible through the API) get an error naming the control.

    A missing value (None) reaches the handler, which knows what it means (e.g. "no length").
    """

    is_template = True  # drawn by the frontend as a plain slider

    def preprocess(self, payload):
        if payload is None:
            return None
        if isinstance(payload, bool) or not isinstance(payload, (int, float)) or not self.minimum <= payload <= self.maximum:
            message = f"{self.label} must be between {self.minimum:g} and {self.maximum:g}, got {payload!r}"
            raise gr.Error(html.escape(message, quote=False))
        return super().preprocess(payload)


# =================================================================================================
# Models: loaded lazily, once, shared by every request
# =================================================================================================


class Models:
    """The app's models by role and its trained classifier, each loaded on first use under a lock (once per source).

    A load that fails is not remembered: the next request tries again (a Hub outage may pass).
    """

    KINDS = {DIFFUSION: ("masked", "continuous"), AR: ("causal",), CONTINUOUS: ("continuous",)}  # what each role may be

    def __init__(self, sources: dict[str, str | None] | None = None):
        self.sources = dict(DEFAULTS)
        self.sources.update({role: value for role, value in (sources or {}).items() if value})
        self._loaded: dict[str, dlm.LanguageModel] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._classifiers: dict[str, TrainedClassifier] = {}
        self._classifier_lock = threading.Lock()  # one classifier load at a time; the others wait for it

    def source(self, role: str) -> str:
        return self.sources[role]

    def get(self, role: str) -> dlm.LanguageModel:
        """The model for `role`, loading it on first use; ValueError/OSError with the loader's message."""
        if role not in self.KINDS:
            raise ValueError(f"unknown model role {role!r}; choose from {sorted(self.KINDS)}")
        source = self.source(role)
        with self._guard:
            lock = self._locks.setdefault(source, threading.Lock())
        with lock:
            if source not in self._loaded:
                self._loaded[source] = dlm.load(source)
        lm = self._loaded[source]
        want = self.KINDS[role]
        if lm.kind not in want:
            raise ValueError(f"the {role} model {source!r} is a {lm.kind} model; this role needs a {' or '.join(want)} one")
        return lm

    def loaded(self, role: str) -> dlm.LanguageModel | None:
        return self._loaded.get(self.source(role))

    def classifier(self) -> TrainedClassifier:
        """The trained classifier, loaded on first use; ValueError/OSError with the loader's message."""
        source = self.source(CLASSIFIER)
        with self._classifier_lock:
            if source not in self._classifiers:
                self._classifiers[source] = TrainedClassifier.load(source)
        return self._classifiers[source]

    def loaded_classifier(self) -> TrainedClassifier | None:
        return self._classifiers.get(self.source(CLASSIFIER))

    def warm_up(self) -> None:
        """Load every model and the classifier now (errors are kept for the page to show)."""
        for role in (DIFFUSION, AR, CONTINUOUS, CLASSIFIER):
            try:
                if role == CLASSIFIER:
                    self.classifier()
                else:
                    self.get(role)
            except (ValueError, OSError) as error:
                print(f"[dlm app] could not load the {role} {self.source(role)!r}: {error}", file=sys.stderr)


MODELS = Models()  # the bundled defaults; configure() points the app elsewhere


# =================================================================================================
# Pure functions: requests, runs and tables (no Gradio in here)
# =================================================================================================


@dataclass(frozen=True)
class GenerateRequest:
    """A validated generation request."""

    role: str  # DIFFUSION or AR
    infill: bool  # True: fill the [MASK] blanks of `text`; False: continue `text`
    text: str  # the prompt, or the infilling template
    seed: int
    overrides: dict  # SamplerConfig fields

    def key(self, source: str) -> str:
        """Identifies the run (same key, same text: the sampler is seeded)."""
        return json.dumps([source, self.role, self.infill, self.text, self.seed, self.overrides], sort_keys=True)


def _int(value, name: str) -> int | None:
    """An integer from a UI or API value (floats from sliders allowed when whole)."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a whole number, got {value!r}") from None
    if not math.isfinite(number) or number != int(number):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(number)


def _float(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def _in_range(value: int | None, name: str, low: int, high: int) -> int:
    if value is None or not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def parse_generate_request(
    model: str,
    mode: str,
    text: str,
    length,
    steps,
    schedule: str,
    temperature,
    top_k,
    top_p,
    remasking: str,
    threshold,
    block_length,
    cache: str | None,
    guidance,
    seed,
    num_samples,
    allow_eos: bool,
) -> GenerateRequest:
    """Check every field of a generation request; ValueError with a message meant for the user."""
    if model not in (DIFFUSION, AR, CONTINUOUS):
        raise ValueError(f"unknown model {model!r}; choose from {[DIFFUSION, AR, CONTINUOUS]}")
    if mode not in ("continue", "infill"):
        raise ValueError(f"unknown mode {mode!r}; choose 'continue' (a prompt) or 'infill' (a template with [MASK])")
    text = text or ""
    if len(text) > MAX_PROMPT_CHARS:
        raise ValueError(f"the text is {len(text):,} characters; the limit is {MAX_PROMPT_CHARS:,}")
    infill = mode == "infill"
    if infill and model == AR:
        raise ValueError("filling in blanks needs the diffusion model: an autoregressive model only continues text")
    length = _int(length, "length")
    steps = _int(steps, "steps")
    if not infill:
        if not text.strip() and not length:
            raise ValueError("the prompt is empty and no length is set: write a prompt, or choose how many tokens to generate")
        _in_range(length, "length", 1, MAX_LENGTH)
        _in_range(steps, "steps", 1, MAX_STEPS)
        if model != AR and steps > length:
            raise ValueError(f"steps ({steps}) cannot exceed the length ({length}): every step reveals at least one token")
    else:
        if not text.strip():
            raise ValueError("the template is empty: write a text with [MASK] where tokens are missing")
        _in_range(steps, "steps", 1, MAX_STEPS)
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose from {sorted(SCHEDULES)}")
    if remasking not in REMASKING:
        raise ValueError(f"unknown remasking {remasking!r}; choose from {sorted(REMASKING)}")
    threshold = _float(threshold if threshold is not None else 0, "threshold")
    block = _int(block_length, "block length") or 0
    cache = None if cache in (None, "", "off") else cache
    if cache is not None and cache not in CACHES:
        raise ValueError(f"unknown key/value cache {cache!r}; choose 'off' or one of {sorted(CACHES)}")
    samples = _in_range(_int(num_samples, "number of samples"), "number of samples", 1, MAX_SAMPLES)
    seed = _in_range(_int(seed, "seed"), "seed", 0, 2**31 - 1)
    overrides = dict(
        steps=steps,
        schedule=schedule,
        temperature=_float(temperature, "temperature"),
        top_k=_in_range(_int(top_k, "top-k"), "top-k", 0, 1_000_000),
        top_p=_float(top_p, "top-p"),
        remasking=remasking,
        threshold=threshold if threshold > 0 else None,  # 0 in the UI: off
        block_length=block if block > 0 else None,  # 0 in the UI: one block
        cache=cache,
        cfg_scale=_float(guidance, "guidance scale"),
        allow_eos=bool(allow_eos),
        num_samples=samples,
    )
    if not infill:
        overrides["length"] = length
    dlm.SamplerConfig().replace(**overrides)  # the core's own checks, with its messages
    return GenerateRequest(model, infill, text, seed, overrides)


def start_generation(lm: dlm.LanguageModel, request: GenerateRequest) -> tuple[dlm.Generation, str | None]:
    """Start the run; returns it with a note for the user when a setting had to give way."""
    overrides, note = dict(request.overrides), None
    if request.infill:
        from dlm.generation import infill_canvas

        blanks = int((~infill_canvas(lm, request.text).fixed).sum())
        if blanks > MAX_LENGTH:
            raise ValueError(f"the template has {blanks} blanks; the limit is {MAX_LENGTH}")
        if overrides["steps"] > blanks:
            note = f"The template has {blanks} blank(s), so it runs {blanks} step(s) instead of {overrides['steps']}."
            overrides["steps"] = blanks
        return dlm.stream(lm, infill=request.text, seed=request.seed, **overrides), note
    if lm.kind == "causal":
        for name in ("steps", "schedule", "remasking", "threshold", "block_length", "cache", "cfg_scale"):
            overrides.pop(name)  # diffusion-only settings; an AR model writes one token per step
    if lm.kind == "continuous":
        for name in ("schedule", "remasking", "threshold", "block_length", "cache"):
            overrides.pop(name)  # masked-only settings; a continuous model uses its card's solver
    return dlm.stream(lm, request.text, seed=request.seed, **overrides), note


def run_stats(trace: dlm.Trace, total_steps: int, done: bool) -> str:
    """The status line over the canvas: step, forward passes, time and speed (Markdown, no user text)."""
    seconds = trace.seconds
    tokens = filled_tokens(trace)
    speed = f"{tokens / seconds:,.0f} tokens/s" if seconds > 0 else "–"
    unit = "Token" if trace.kind == "causal" else "Step"
    head = f"**Done** in {len(trace.steps)} steps" if done else f"**{unit} {len(trace.steps)} / {total_steps}**"
    return f"{head} · NFE {trace.nfe} · {seconds:.2f} s · {tokens} tokens · {speed}"


def joined_texts(texts: Sequence[str]) -> str:
    if len(texts) == 1:
        return texts[0]
    return "\n\n".join(f"[sample {i + 1}]\n{t}" for i, t in enumerate(texts))


def display_name(source: str) -> str:
    """A short name for a model source: a folder's last two parts, else the name or repo id."""
    path = Path(source)
    if path.is_dir():
        return "/".join(path.resolve().parts[-2:])
    return source


# ---- output files ----------------------------------------------------------------------------------


@cache
def output_dir() -> Path:
    """The one folder this app writes to (and the only extra path Gradio may serve)."""
    return Path(tempfile.mkdtemp(prefix="dlm-app-"))


def request_dir() -> Path:
    """A fresh subfolder for one request's files; folders older than OUTPUT_TTL_SECONDS are removed."""
    root = output_dir()
    cutoff = time.time() - OUTPUT_TTL_SECONDS
    for old in root.iterdir():
        if old.is_dir() and old.stat().st_mtime < cutoff:
            shutil.rmtree(old, ignore_errors=True)
    folder = root / uuid.uuid4().hex[:12]
    folder.mkdir()
    return folder


# ---- animation -----------------------------------------------------------------------------------


def render_animation(trace: dlm.Trace, folder: Path, frame_ms: int, mode: str, title: str) -> list[Path]:
    """GIF, MP4 and the interactive HTML player of sample 0."""
    from dlm import render

    gif = render.to_gif(trace, folder / "denoising.gif", frame_ms=frame_ms, mode=mode, title=title)
    mp4 = render.to_mp4(trace, folder / "denoising.mp4", fps=1000 / frame_ms, mode=mode, title=title)
    page = folder / "denoising.html"
    render.to_html(trace, page, title=title)
    return [gif, mp4, page]


def render_race(traces: list[dlm.Trace], titles: list[str], folder: Path, mode: str) -> list[Path]:
    """Side-by-side GIF raced in real time (sped up to keep it under RACE_FRAMES frames) and its HTML."""
    from dlm import render

    frame_ms = 100
    duration = max(trace.seconds for trace in traces)
    speed = max(1.0, duration / ((RACE_FRAMES - 1) * frame_ms / 1000))
    gif = render.to_gif_side_by_side(traces, folder / "race.gif", titles=titles, frame_ms=frame_ms, speed=speed, mode=mode)
    page = folder / "race.html"
    render.to_html_side_by_side(traces, page, titles=titles)
    return [gif, page]


# ---- classification --------------------------------------------------------------------------------


def parse_labels(labels: str, template: str) -> tuple[list[str], list[str]]:
    """Class names from "a, b, c" and one prompt per class from a template with {label}."""
    names = [name.strip() for name in (labels or "").split(",") if name.strip()]
    if len(names) < 2:
        raise ValueError("give at least two labels, separated by commas (e.g. positive, negative)")
    if len(names) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels, got {len(names)}")
    if len({name.casefold() for name in names}) != len(names):
        raise ValueError(f"labels must be distinct: {names}")
    for name in names:
        if len(name) > MAX_LABEL_CHARS:
            raise ValueError(f"a label has at most {MAX_LABEL_CHARS} characters, got {len(name)}")
    template = template or ""
    if "{label}" not in template:
        raise ValueError("the label prompt must contain {label}, e.g. 'A {label} review:'")
    if len(template) > 200:
        raise ValueError(f"the label prompt has {len(template)} characters; the limit is 200")
    return names, [template.replace("{label}", name) for name in names]


@dataclass(frozen=True)
class TrainedClassifier:
    """A loaded trained classifier with what the page says about it."""

    source: str  # as configured: a bundled name, a folder or a Hub repo id
    classifier: GenerativeClassifier | DiscriminativeClassifier
    folder: Path | None  # where its classifier.json (and README.md) are, when they can be found
    spec: dict  # its classifier.json ({} when the folder cannot be found)

    @classmethod
    def load(cls, source: str) -> TrainedClassifier:
        """`dlm.classify.load_classifier`, with a KeyError (a key missing from classifier.json) as a ValueError."""
        from dlm.classify import load_classifier

        try:
            classifier = load_classifier(source)
        except KeyError as error:
            raise ValueError(f"{source!r}: its {CLASSIFIER_FILE} has no {error.args[0]!r}") from None
        folder = classifier_folder(source)
        spec = json.loads((folder / CLASSIFIER_FILE).read_text(encoding="utf-8")) if folder else {}
        return cls(source, classifier, folder, spec if isinstance(spec, dict) else {})

    @property
    def design(self) -> str:
        """per-class, conditional or discriminative (read off the classifier when its file says nothing)."""
        if isinstance(self.classifier, DiscriminativeClassifier):
            return "discriminative"
        design = self.spec.get("design")
        if isinstance(design, str):
            return design
        return "conditional" if len({id(lm) for lm in self.classifier.models}) == 1 else "per-class"

    @property
    def family(self) -> str:
        """What scores the text: masked diffusion, autoregressive, or the discriminative head's encoder."""
        if isinstance(self.classifier, DiscriminativeClassifier):
            return f"{self.classifier.model.config.model_type} encoder"
        return "masked diffusion" if self.classifier.kind == "masked" else "autoregressive"

    @property
    def num_parameters(self) -> int:
        if isinstance(self.classifier, DiscriminativeClassifier):
            return self.classifier.model.num_parameters()
        return sum(lm.num_parameters for lm in {id(lm): lm for lm in self.classifier.models}.values())


def classifier_folder(source: str) -> Path | None:
    """Where a loaded classifier's files are: bundled, a folder, or the Hub cache (None if not found)."""
    from dlm.classify import bundled_classifiers
    from dlm.loading import BUNDLED_DIR

    if source in bundled_classifiers():
        return BUNDLED_DIR / source
    folder = Path(source).expanduser()
    if (folder / CLASSIFIER_FILE).is_file():
        return folder
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(source, CLASSIFIER_FILE)
    except ValueError:  # not a repo id
        return None
    return Path(cached).parent if isinstance(cached, str) else None


def describe_classifier(trained: TrainedClassifier, samples: int | None = None) -> str:
    """How the trained classifier decides, in one sentence (Markdown; `samples`: the cap in use)."""
    clf = trained.classifier
    if isinstance(clf, DiscriminativeClassifier):
        how = "a classification head on the encoder, one forward pass per text"
    else:
        models = "one model per class" if trained.design == "per-class" else "one model given each class's prompt"
        if clf.kind == "masked":
            rounds = min(clf.round_samples, samples) if samples is not None else clf.round_samples
            cap = f", at most {samples} per text" if samples is not None else ""
            how = (f"{models}; Bayes' rule over their ELBOs, {rounds} shared mask patterns at a time, "
                   f"stopping once the top class leads by {clf.margin:g} standard errors{cap}")
        else:
            how = f"{models}; Bayes' rule over their exact likelihoods"
    return f"{trained.design}, {trained.family}: {how}"


def calibration_note(trained: TrainedClassifier) -> str:
    validation = trained.spec.get("validation")
    temperature = f"temperature {trained.classifier.temperature:.2f}"
    if isinstance(validation, dict) and isinstance(validation.get("texts"), int):
        return f"{temperature}, fitted on {validation['texts']:,} validation texts"
    return f"{temperature} (not calibrated on validation texts)"


def validation_lines(spec: dict) -> list[str]:
    """The validation figures of a classifier.json, as Markdown bullets (none if it has none)."""
    validation = spec.get("validation")
    if not isinstance(validation, dict):
        return []
    names = {"texts": "validation texts", "accuracy": "accuracy", "temperature": "fitted temperature",
             "ece_before": "calibration error (ECE) before", "ece_after": "calibration error (ECE) after"}
    lines = []
    for key, value in validation.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        shown = f"{value:.1%}" if key == "accuracy" else f"{value:,}" if isinstance(value, int) else f"{value:.4g}"
        lines.append(f"- {names.get(key, html.escape(str(key)))}: {shown}")
    return lines


def make_classifier(mode: str, samples: int, trained: GenerativeClassifier | DiscriminativeClassifier | None = None,
                    lm: dlm.LanguageModel | None = None, labels: Sequence[str] = (), prompts: Sequence[str] = ()):
    """The one place that decides which classifier the Classify tab uses (see dlm.classify.Classifier).

    TRAINED: the loaded classifier, its Monte-Carlo samples capped at `samples` per text (fewer when a
    round is already larger); ZERO_SHOT: the diffusion model `lm` after each label's prompt, `samples`
    mask patterns per text.
    """
    from dlm.classify import ZeroShotClassifier

    if mode == TRAINED:
        if isinstance(trained, GenerativeClassifier):
            return dataclasses.replace(trained, max_samples=samples, round_samples=min(trained.round_samples, samples))
        return trained  # discriminative: one forward pass per text, nothing to cap
    return ZeroShotClassifier(lm, labels, prompts, num_samples=samples)


def results_frame(texts: list[str], predictions, truth: list[str] | None, short: bool) -> pd.DataFrame:
    """One row per text: prediction, probabilities, log-likelihoods when the classifier has them (and the true label)."""
    labels = list(predictions[0].probabilities) if predictions else []
    records = []
    for i, (text, pred) in enumerate(zip(texts, predictions)):
        shown = text if not short or len(text) <= 60 else text[:57] + "..."
        record = {"#": i + 1, "text": shown, "prediction": pred.label}
        record.update({f"p({label})": round(pred.probabilities[label], 4) for label in labels})
        if pred.log_likelihoods:  # generative classifiers only
            name = "log p | {}" if short else "log p(text | {})"  # short headers on screen, explicit ones in the CSV
            record.update({name.format(label): round(pred.log_likelihoods[label], 2) for label in labels})
        if truth is not None:
            record["true label"] = truth[i]
            record["correct"] = "✓" if truth[i].strip().casefold() == pred.label.casefold() else "✗"
        records.append(record)
    return pd.DataFrame(records)


def token_highlights(prediction) -> list[tuple[str, float]]:
    """(token, score in [-1, 1]) for gr.HighlightedText: > 0 favours the prediction over the runner-up."""
    contributions = prediction.contributions
    scale = max((abs(c) for c in contributions), default=0.0) or 1.0
    return [(token, round(c / scale, 3)) for token, c in zip(prediction.tokens, contributions)]


METRIC_FORMATS = {
    "wall time (s)": "{:.2f}",
    "time to first step (s)": "{:.3f}",
    "tokens": "{:.0f}",
    "tokens/s": "{:,.0f}",
    "NFE (forward passes)": "{:.0f}",
    "time per token (ms)": "{:.1f}",
    "peak memory (MB)": "{:,.0f}",
}


def metrics_frame(metrics: dict[str, dict[str, float]]) -> pd.DataFrame:
    names = list(metrics)
    rows = [[metric] + [METRIC_FORMATS[metric].format(metrics[n][metric]) for n in names] for metric in METRIC_FORMATS]
    return pd.DataFrame(rows, columns=["metric"] + names)


def bar_frame(metrics: dict[str, dict[str, float]], metric: str) -> pd.DataFrame:
    return pd.DataFrame({"model": list(metrics), metric: [round(m[metric], 4) for m in metrics.values()]})


def peak_memory_note(cuda: bool) -> str:
    if cuda:
        return "Peak memory: `torch.cuda.max_memory_allocated` during each model's own steps."
    return (
        "Peak memory on CPU is the whole process's peak resident set size (`resource.getrusage`): "
        "both models live in one process, so it is shared, not per model."
    )


# ---- benchmark data for the charts and the Learn tab -------------------------------------------------------

QUALITY_FILES = (BENCH_RESULTS / "ar_vs_diffusion.json", BENCH_RESULTS / "ar_vs_diffusion_quick.json")  # first found
QUALITY_LENGTH = 128  # the length the chart starts at (else the smallest measured)
QUALITY_COLORS = {"diffusion, fixed steps": "#6366f1", "diffusion, confidence threshold": "#a855f7",
                  "diffusion, semi-AR": "#14b8a6", "diffusion, semi-AR + KV cache": "#16a34a",
                  "continuous diffusion": "#0ea5e9",
                  AR: "#f97316", "human text (reference)": "#9ca3af"}


@dataclass(frozen=True)
class QualityChart:
    """One length of the AR-vs-diffusion benchmark: judge perplexity against wall time and NFE."""

    frame: pd.DataFrame | None  # a row per point: series, setting, wall time (s), NFE, judge perplexity; None: no chart
    note: str  # Markdown: where the numbers come from, or why there is no chart
    lengths: list[int]  # the lengths the file has
    length: int | None  # the one shown


def quality_chart(length: int | None = None) -> QualityChart:
    """The chart's points at one `length` (default QUALITY_LENGTH, else the smallest); lengths are never averaged.

    Reads the first of QUALITY_FILES that exists: the full sweep, else the quick one. Each diffusion
    setting (fixed steps, confidence threshold) is a point and AR is its own; human text, which has no
    time or NFE, is a row of dots at its judge perplexity. A missing or malformed file: a note, no chart.
    """
    path = next((p for p in QUALITY_FILES if p.is_file()), None)
    if path is None:
        names = " or ".join(f"`{_shown(p)}`" for p in QUALITY_FILES)
        return _no_chart(f"No quality data yet: the AR-vs-diffusion benchmark (`bench/ar_vs_diffusion.py`) has not "
                         f"been run here ({names} does not exist). The chart appears once it does.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return _no_chart(f"`{_shown(path)}` could not be read ({html.escape(str(error))}); no quality chart.")
    records = data.get("records") if isinstance(data, dict) else None
    points = [r for r in records if _quality_record(r)] if isinstance(records, list) else []
    if not points:
        return _no_chart(f"`{_shown(path)}` has no records with a length, wall time, NFE and judge perplexity; "
                         "no quality chart.")
    lengths = sorted({int(r["length"]) for r in points})
    if length is None:
        length = QUALITY_LENGTH if QUALITY_LENGTH in lengths else lengths[0]
    rows = [_quality_row(r) for r in points if r["length"] == length]
    if not rows:
        return QualityChart(None, f"`{_shown(path)}` has no records at length {length} (it has {lengths}).",
                            lengths, length)
    references = data.get("human") if isinstance(data.get("human"), list) else []
    human = [h for h in references
             if isinstance(h, dict) and h.get("length") == length and _finite(h.get("judge_perplexity"))]
    if human:  # a reference level: one dot under each measured point
        level = round(float(human[0]["judge_perplexity"]), 2)
        rows += [{**row, "series": "human text (reference)", "setting": "held-out human text", "judge perplexity": level}
                 for row in list(rows)]
    return QualityChart(pd.DataFrame(rows), _quality_note(path, data, length, bool(human)), lengths, length)


def _no_chart(note: str) -> QualityChart:
    return QualityChart(None, note, [], None)


def _quality_record(record) -> bool:
    keys = ("length", "wall_seconds", "nfe", "judge_perplexity")
    return isinstance(record, dict) and all(_finite(record.get(k)) for k in keys)


def _quality_row(record: dict) -> dict:
    if _is_ar(str(record.get("family") or "")):
        series, setting = AR, f"autoregressive ({record.get('model', '?')})"
    elif record.get("family") == "continuous":
        steps = f"{record['steps']:g}" if _finite(record.get("steps")) else "?"
        series, setting = "continuous diffusion", f"continuous diffusion, {steps} steps"
    elif _finite(record.get("block_length")):
        steps = f"{record['steps']:g}" if _finite(record.get("steps")) else "?"
        cache = record.get("cache")
        series = "diffusion, semi-AR + KV cache" if cache else "diffusion, semi-AR"
        setting = f"diffusion, {steps} steps, blocks of {record['block_length']:g}" + (f", {cache} cache" if cache else "")
    elif _finite(record.get("threshold")):
        series, setting = "diffusion, confidence threshold", f"diffusion, threshold {record['threshold']:g}"
    else:
        steps = f"{record['steps']:g}" if _finite(record.get("steps")) else "?"
        series, setting = "diffusion, fixed steps", f"diffusion, {steps} steps"
    return {"series": series, "setting": setting, "wall time (s)": round(float(record["wall_seconds"]), 4),
            "NFE": float(record["nfe"]), "judge perplexity": round(float(record["judge_perplexity"]), 2)}


def _quality_note(path: Path, data: dict, length: int, human: bool) -> str:
    """Where the chart's numbers come from: the file, the machine and the command that wrote it."""
    machine = data.get("machine") if isinstance(data.get("machine"), dict) else {}
    where = [str(machine[k]) for k in ("device", "cpu") if machine.get(k)]
    where += [f"{machine[k]} {name}" for k, name in (("cpu_count", "cores"), ("torch_threads", "torch threads"))
              if machine.get(k)]
    parts = [f"{length} tokens per continuation, from `{_shown(path)}`"]
    if where:
        parts.append(f"measured on {html.escape(', '.join(where))}")
    if isinstance(data.get("command"), str):
        parts.append(f"by `{data['command']}`")
    note = ", ".join(parts) + "."
    judge = data.get("judge") if isinstance(data.get("judge"), dict) else {}
    if judge.get("source"):
        note += f" Judge: `{judge['source']}`, its perplexity of each continuation given its prompt (lower is better)."
    if data.get("quick"):
        note += " A quick run: few prompts, so the points are rough."
    if human:
        note += " Grey dots: held-out human text's judge perplexity at this length (a reference level; it has no time)."
    return note


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def _is_ar(family: str) -> bool:
    return family.strip().lower() in ("ar", "causal", "autoregressive", "gpt2", "gpt-2")


def read_bench(name: str) -> dict | None:
    path = BENCH_RESULTS / name
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Tradeoffs:
    """Timings of one matched pair on this machine, measured by `measure_tradeoffs`."""

    length: int
    device: str
    rows: list[dict]  # one per setting: setting, seconds, nfe, tokens_per_second


_TRADEOFFS: dict[str, Tradeoffs] = {}
_TRADEOFFS_LOCK = threading.Lock()


def measure_tradeoffs(diffusion: dlm.LanguageModel, ar: dlm.LanguageModel, length: int = 64) -> Tradeoffs:
    """Seconds and forward passes for `length` tokens: AR, and diffusion at L, L/4 steps and with a
    confidence threshold. Measured once per process (after a warm-up run) and cached."""
    key = f"{diffusion.source}|{ar.source}|{length}"
    with _TRADEOFFS_LOCK:
        if key in _TRADEOFFS:
            return _TRADEOFFS[key]
        prompt = "The"
        settings = [
            (f"autoregressive, {length} tokens, KV cache", ar, {}),
            (f"diffusion, {length} steps (one token per step)", diffusion, {"steps": length}),
            (f"diffusion, {length // 4} steps", diffusion, {"steps": length // 4}),
            (f"diffusion, {length} steps, threshold 0.9", diffusion, {"steps": length, "threshold": 0.9}),
        ]
        dlm.generate(diffusion, prompt, length=8, steps=2, seed=0)  # warm-up: first calls are slow
        dlm.generate(ar, prompt, length=8, seed=0)
        rows = []
        for name, lm, overrides in settings:
            trace = dlm.generate(lm, prompt, length=length, allow_eos=False, temperature=0.0, seed=0, **overrides)
            rows.append({"setting": name, "seconds": trace.seconds, "nfe": trace.nfe,
                         "tokens_per_second": length / trace.seconds if trace.seconds else 0.0})
        result = Tradeoffs(length, str(diffusion.device), rows)
        _TRADEOFFS[key] = result
        return result


def learn_markdown(tradeoffs: Tradeoffs | None, diffusion: dlm.LanguageModel | None, ar: dlm.LanguageModel | None) -> str:
    """The Learn tab: the differences, told with numbers our own code measured."""
    parts = [LEARN_INTRO]
    parts.append("## Measured here")
    if tradeoffs is None:
        parts.append("_Timing both models on this machine…_")
    else:
        parts.append(
            f"Both models write the same {tradeoffs.length} tokens after the prompt “The”, greedy, end-of-text off, "
            f"on this machine ({tradeoffs.device}), timed by `dlm.generate`:\n"
        )
        parts.append("| setting | seconds | forward passes (NFE) | tokens/s |\n|---|---:|---:|---:|")
        for row in tradeoffs.rows:
            parts.append(f"| {row['setting']} | {row['seconds']:.2f} | {row['nfe']} | {row['tokens_per_second']:,.0f} |")
        ar_row, full, quarter, thresh = tradeoffs.rows
        diffusion_pass = full["seconds"] / full["nfe"]
        ar_step = ar_row["seconds"] / ar_row["nfe"]
        break_even = ar_row["seconds"] / diffusion_pass  # diffusion steps that take as long as the AR run
        parts.append("")
        parts.append(
            f"- One diffusion pass (over the whole canvas) took {diffusion_pass * 1000:.1f} ms, one AR step (one new "
            f"position, the rest cached) {ar_step * 1000:.1f} ms: a pass costs {diffusion_pass / ar_step:.1f}× a step here."
        )
        parts.append(
            f"- So on this machine diffusion is faster than AR for {tradeoffs.length} tokens when it takes fewer than "
            f"about **{break_even:.0f} steps**. At {tradeoffs.length // 4} steps (4 tokens per pass) it took "
            f"{quarter['seconds']:.2f} s against AR's {ar_row['seconds']:.2f} s. Fewer steps cost quality: the "
            "Compare tab's chart shows how much, once the benchmark has run."
        )
        if thresh["nfe"] < full["nfe"]:
            parts.append(
                f"- With a confidence threshold of 0.9 the sampler also commits every token it is at least 90% sure "
                f"of: {thresh['nfe']} forward passes instead of {full['nfe']}."
            )
        else:
            parts.append(
                f"- With a confidence threshold of 0.9 the sampler may commit several tokens per pass, but this model "
                f"was rarely that sure here: {thresh['nfe']} forward passes, as many as without it."
            )
    perplexity = read_bench("perplexity.json")
    if perplexity and perplexity.get("rows"):
        parts.append("\n### Held-out perplexity (`bench/perplexity.py`)\n")
        parts.append("| model | kind | perplexity | tokens |\n|---|---|---:|---:|")
        for source, row in perplexity["rows"].items():
            bound = "≤ " if not row.get("exact") else ""
            parts.append(f"| {html.escape(source)} | {row.get('kind', '')} | {bound}{row['perplexity']:.2f} | {row.get('tokens', '')} |")
        parts.append(f"\nOn {perplexity.get('texts', '?')} held-out texts. The diffusion figure is an upper bound (its ELBO); "
                     "AR's is exact. Same tokenizer, same texts.")
    else:
        cards = [(name, lm) for name, lm in ((DIFFUSION, diffusion), (AR, ar)) if lm is not None]
        found = [(name, lm.card.get("training", {}).get("perplexity")) for name, lm in cards]
        found = [(name, p) for name, p in found if isinstance(p, (int, float))]
        if found:
            parts.append("\n### Held-out perplexity (from training, in each model's card)\n")
            parts.append("| model | perplexity |\n|---|---:|")
            for name, p in found:
                bound = "≤ " if name == DIFFUSION else ""
                parts.append(f"| {name} | {bound}{p:.2f} |")
            parts.append("\nThe diffusion figure is an upper bound (its ELBO); AR's is exact.")
    parts.append(LEARN_WHEN)
    return "\n".join(parts)


LEARN_INTRO = """
## Two ways to write text

| | Masked diffusion | Autoregressive (AR) |
|---|---|---|
| **Attention** | bidirectional: every position sees the whole canvas, left and right | causal: a token sees only the tokens before it |
| **How text appears** | starts as all `[MASK]`; each step reveals some positions, in any order | one token per step, left to right |
| **One step costs** | a forward pass over the whole canvas (prompt + every position) | a forward pass over one new position (keys and values of the rest are cached) |
| **Number of steps** | you choose, from the length down to 1: fewer steps = faster, rougher | exactly one per token |
| **Blanks in the middle, fixed endings** | native: mask any positions and fill them | not without tricks: it only continues |
| **Likelihood of a text** | a lower bound (the ELBO), estimated by Monte Carlo over masks | exact, in one pass |

The bundled pair (`default`, `default-ar`) is matched: the same tokenizer, training text, token budget
and number of parameters, so the differences below come from the way they generate, not from one
being bigger or better fed.
"""

LEARN_WHEN = """
## When each wins

- **Diffusion**: filling blanks and constrained text (it sees both sides of a gap), and writing
  several tokens per forward pass (fewer steps, or threshold decoding) when quality holds; the
  faster one pass runs relative to a KV-cached AR step (a GPU runs a whole canvas nearly as fast as
  one position), the more that pays.
- **AR**: exact likelihoods, no step count to tune, and a cheap step thanks to the KV cache.

Watch both in the **Compare** tab: the same prompt, the same length, raced on their own clocks.
"""


# =================================================================================================
# Handlers: validate, call the pure functions, turn results and errors into components
# =================================================================================================


def ui_error(error: Exception | str) -> gr.Error:
    """A gr.Error whose message is escaped: Gradio renders error text as HTML."""
    message = str(error) if not isinstance(error, KeyError) else str(error.args[0])
    return gr.Error(html.escape(message[:1000], quote=False))


def ui_warning(message: str) -> None:
    gr.Warning(html.escape(message, quote=False))


def _model(role: str) -> dlm.LanguageModel:
    try:
        return MODELS.get(role)
    except (ValueError, OSError) as error:
        raise ui_error(f"the {role} model could not be loaded: {error}") from None


def _trained_classifier() -> TrainedClassifier:
    try:
        return MODELS.classifier()
    except (ValueError, OSError) as error:
        raise ui_error(f"the trained classifier {MODELS.source(CLASSIFIER)!r} could not be loaded: {error}. "
                       "Zero-shot mode still works.") from None


def _canvas(trace: dlm.Trace, row: int, mode: str, label: str) -> gr.HighlightedText:
    return gr.HighlightedText(value=highlight(trace, -1 if trace.steps else None, row=row, mode=mode),
                              color_map=COLOR_MAP[mode], label=label, visible=True)


def _canvases(trace: dlm.Trace, mode: str) -> list[gr.HighlightedText]:
    shown = [_canvas(trace, row, mode, f"Sample {row + 1}" if trace.num_samples > 1 else "Canvas")
             for row in range(trace.num_samples)]
    return shown + [gr.HighlightedText(visible=False)] * (MAX_SAMPLES - len(shown))


@gpu
def generate(
    model: str = DIFFUSION,
    mode: str = "continue",
    text: str = DEFAULT_PROMPT,
    length: int = START.length,
    steps: int = START.steps,
    schedule: str = START.schedule,
    temperature: float = START.temperature,
    top_k: int = START.top_k,
    top_p: float = START.top_p,
    remasking: str = START.remasking,
    threshold: float = 0.0,
    block_length: int = 0,
    cache: str = "off",
    guidance: float = 0.0,
    seed: int = 0,
    num_samples: int = 1,
    allow_eos: bool = True,
    colours: str = "state",
):
    """Stream a generation: each update is the canvas after one step (Gradio handler, API /generate)."""
    if colours not in COLOR_MAP:
        raise ui_error(f"unknown colouring {colours!r}; choose from {sorted(COLOR_MAP)}")
    try:
        request = parse_generate_request(model, mode, text, length, steps, schedule, temperature, top_k, top_p,
                                         remasking, threshold, block_length, cache, guidance, seed,
                                         num_samples, allow_eos)
    except ValueError as error:
        raise ui_error(error) from None
    lm = _model(request.role)
    try:
        generation, note = start_generation(lm, request)
    except ValueError as error:
        raise ui_error(error) from None
    if note:
        gr.Info(html.escape(note, quote=False))
    total = generation.config.length if lm.kind == "causal" else generation.config.steps
    trace = generation.trace()
    yield *_canvases(trace, colours), run_stats(trace, total, False), "", gr.skip()
    last = float("-inf")  # the first step always goes out at once
    for _ in generation:  # safe across threads: the core enters inference mode around each step
        if time.perf_counter() - last >= MIN_UPDATE_SECONDS:
            trace = generation.trace()
            yield *_canvases(trace, colours), run_stats(trace, total, False), gr.skip(), gr.skip()
            last = time.perf_counter()
    trace = generation.trace()
    cached = {"key": request.key(lm.source), "trace": trace}
    yield *_canvases(trace, colours), run_stats(trace, total, True), joined_texts(trace.texts), cached


@gpu
def animate(
    model: str = DIFFUSION,
    mode: str = "continue",
    text: str = DEFAULT_PROMPT,
    length: int = START.length,
    steps: int = START.steps,
    schedule: str = START.schedule,
    temperature: float = START.temperature,
    top_k: int = START.top_k,
    top_p: float = START.top_p,
    remasking: str = START.remasking,
    threshold: float = 0.0,
    block_length: int = 0,
    cache: str = "off",
    guidance: float = 0.0,
    seed: int = 0,
    num_samples: int = 1,
    allow_eos: bool = True,
    colours: str = "state",
    frame_ms: int = 250,
    race_ar: bool = True,
    last_run: dict | None = None,
):
    """Render a run (the Generate tab's settings) as GIF, MP4 and HTML, and optionally the race GIF (API /animate)."""
    if colours not in COLOR_MAP:
        raise ui_error(f"unknown colouring {colours!r}; choose from {sorted(COLOR_MAP)}")
    try:
        request = parse_generate_request(model, mode, text, length, steps, schedule, temperature, top_k, top_p,
                                         remasking, threshold, block_length, cache, guidance, seed,
                                         num_samples, allow_eos)
        frame_ms = _in_range(_int(frame_ms, "frame speed (ms)"), "frame speed (ms)", MIN_FRAME_MS, MAX_FRAME_MS)
    except ValueError as error:
        raise ui_error(error) from None
    lm = _model(request.role)
    try:
        streamed = last_run is not None and last_run.get("key") == request.key(lm.source)
        if streamed:
            trace = last_run["trace"]  # the run the Generate tab just streamed: same settings, same seed
        else:
            trace = start_generation(lm, request)[0].run()
        folder = request_dir()
        title = f"{display_name(lm.source)} · {KIND_NAMES[lm.kind]}"
        files = render_animation(trace, folder, frame_ms, colours, title)
        race_gif, note = None, f"{len(trace.steps)} steps, {frame_ms} ms per frame."
        if trace.num_samples > 1:
            note += f" Sample 1 of {trace.num_samples} is animated."
        if race_ar:
            if request.infill:
                note += " No race: an autoregressive model cannot fill blanks, so there is nothing to race."
            else:
                other_role = DIFFUSION if request.role == AR else AR
                other = _model(other_role)
                other_request = GenerateRequest(other_role, False, request.text, request.seed, request.overrides)
                other_trace = start_generation(other, other_request)[0].run()
                # a streamed run's clock also counts the pauses while its updates were sent: race a fresh one
                mine = start_generation(lm, request)[0].run() if streamed else trace
                pair = [other_trace, mine] if request.role == AR else [mine, other_trace]
                family = "continuous diffusion" if pair[0].kind == "continuous" else "diffusion"
                titles = [f"{family} · {pair[0].seconds:.2f} s", f"autoregressive · {pair[1].seconds:.2f} s"]
                race_files = render_race(pair, titles, folder, colours)
                race_gif = str(race_files[0])
                files += race_files
                note += " The race plays in real time (sped up when long): each column's clock is its own model's."
    except ValueError as error:
        raise ui_error(error) from None
    race_image = gr.Image(value=race_gif, visible=race_gif is not None)
    return str(files[0]), [str(f) for f in files], race_image, note


def inspect_upload(file: str | None):
    """When a file arrives: fill the column choosers (or hide them for .txt) and say what is in it."""
    if not file:
        return gr.Dropdown(visible=False), gr.Dropdown(visible=False), ""
    try:
        table = read_table(file, MAX_UPLOAD_BYTES)
    except (ValueError, OSError) as error:  # a toast, and the reason stays beside the file
        ui_warning(str(error))
        return gr.Dropdown(visible=False), gr.Dropdown(visible=False), f"⚠️ {html.escape(str(error), quote=False)}"
    if table.columns == ["text"] and Path(file).suffix.lower() == ".txt":
        return (gr.Dropdown(choices=["text"], value="text", visible=False), gr.Dropdown(choices=[""], value="", visible=False),
                f"{len(table.rows):,} texts, one per line. The file is classified instead of the pasted texts.")
    text_column = guess_text_column(table)
    if text_column is None:
        ui_warning(f"{table.name} has no column of text (every column holds numbers); choose one to use anyway.")
    label_column = guess_label_column(table)
    choices = table.columns
    return (
        gr.Dropdown(choices=choices, value=text_column or choices[0], visible=True),
        gr.Dropdown(choices=[("(none)", "")] + [(c, c) for c in choices], value=label_column or "", visible=True),
        f"{len(table.rows):,} rows; columns: {', '.join(html.escape(c) for c in table.columns)}. "
        "The file is classified instead of the pasted texts.",
    )


@gpu
def classify(
    text: str = "",
    file: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    labels: str = DEFAULT_LABELS,
    label_prompt: str = DEFAULT_LABEL_PROMPT,
    samples: int = 32,
    mode: str = TRAINED,
    progress=gr.Progress(),
):
    """Classify pasted lines or an uploaded file with the trained classifier or zero-shot (API /classify).

    `labels` and `label_prompt` apply in zero-shot mode only; the trained classifier has its own labels.
    `samples`: mask patterns per text (zero-shot), or the trained classifier's cap on them.
    """
    try:
        if mode not in (TRAINED, ZERO_SHOT):
            raise ValueError(f"unknown classifier mode {mode!r}; choose {TRAINED!r} or {ZERO_SHOT!r}")
        if mode == ZERO_SHOT:
            names, prompts = parse_labels(labels, label_prompt)
        samples = _in_range(_int(samples, "samples"), "samples", 2, MAX_CLASSIFY_SAMPLES)
        notes: list[str] = []
        if file:
            table = read_table(file, MAX_UPLOAD_BYTES)
            texts, truth, notes = select_texts(table, text_column or None, label_column or None, MAX_ROWS)
        else:
            if len(text or "") > MAX_ROWS * 2_000:
                raise ValueError(f"the text is too long; paste at most {MAX_ROWS} lines")
            texts = [line.strip() for line in (text or "").splitlines() if line.strip()]
            truth = None
            if not texts:
                raise ValueError("nothing to classify: paste one text per line, or upload a .txt or .csv file")
            if len(texts) > MAX_ROWS:
                notes.append(f"{len(texts):,} lines pasted; the first {MAX_ROWS} were classified (the limit per request).")
                texts = texts[:MAX_ROWS]
    except (ValueError, OSError) as error:
        raise ui_error(error) from None
    for note in notes:
        ui_warning(note)
    if mode == TRAINED:
        trained = _trained_classifier()
        classifier = make_classifier(TRAINED, samples, trained=trained.classifier)
        names = list(classifier.labels)
    else:
        lm = _model(DIFFUSION)
        classifier = make_classifier(ZERO_SHOT, samples, lm=lm, labels=names, prompts=prompts)
    try:
        predictions = []
        for one in progress.tqdm(texts, desc="classifying"):  # one at a time, so the bar moves
            predictions += classifier.classify([one])
    except ValueError as error:
        raise ui_error(error) from None
    truncated = sum(p.truncated for p in predictions)
    folder = request_dir()
    csv_path = folder / "classified.csv"
    results_frame(texts, predictions, truth, short=False).to_csv(csv_path, index=False)
    nfe = sum(p.nfe for p in predictions)
    passes = f"{nfe:,} forward pass{'es' if nfe != 1 else ''}"
    if mode == TRAINED:
        summary = [f"**{len(texts)}** text(s) classified by the trained classifier "
                   f"`{html.escape(display_name(trained.source))}` ({describe_classifier(trained, samples)}; "
                   f"{calibration_note(trained)}; {passes})."]
    else:
        how = f"ELBO, {samples} shared mask patterns per label" if lm.kind == "masked" else "exact likelihood"
        summary = [f"**{len(texts)}** text(s) classified zero-shot by `{html.escape(display_name(lm.source))}` "
                   f"({how}; {passes})."]
    if truncated:
        summary.append(f"{truncated} text(s) were cut to the first {classifier.max_tokens} tokens.")
    confusion = gr.Dataframe(visible=False)
    if truth is not None:
        evaluation = evaluate([p.label for p in predictions], truth, names)
        if evaluation.unknown:
            odd = sorted(set(evaluation.unknown))[:5]
            ui_warning(f"{len(evaluation.unknown)} row(s) have labels that are not classes ({odd}); "
                       f"they are left out of the accuracy.")
        if evaluation.total:
            low, high = wilson_interval(evaluation.correct, evaluation.total)
            summary.append(f"**Accuracy {evaluation.accuracy:.1%}** ({evaluation.correct}/{evaluation.total}; "
                           f"95% interval {low:.0%}–{high:.0%}). Confusion matrix below.")
            matrix = pd.DataFrame([[t] + row for t, row in zip(names, evaluation.confusion)],
                                  columns=["true ↓ / predicted →"] + names)
            confusion = gr.Dataframe(value=matrix, visible=True)
    first = predictions[0]
    return (
        {label: p for label, p in first.probabilities.items()},
        gr.HighlightedText(value=token_highlights(first), label=explain_label(1, first)),
        results_frame(texts, predictions, truth, short=True),
        str(csv_path),
        "\n\n".join(summary),
        confusion,
        [prediction_state(p) for p in predictions],
    )


def prediction_state(prediction) -> dict:
    return {"label": prediction.label, "runner_up": prediction.runner_up, "probabilities": prediction.probabilities,
            "tokens": prediction.tokens, "contributions": prediction.contributions}


def explain_label(row: int, prediction) -> str:
    return f"Text {row}: red tokens favour “{prediction.label}”, purple ones “{prediction.runner_up}”"


def explain_row(predictions: list[dict] | None, event: gr.SelectData):
    """Show the probabilities and token highlights of the clicked row."""
    if not predictions or event is None or event.index is None:
        return gr.skip(), gr.skip()
    row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
    if not 0 <= row < len(predictions):
        return gr.skip(), gr.skip()
    p = _PredictionView(**predictions[row])
    return p.probabilities, gr.HighlightedText(value=token_highlights(p), label=explain_label(row + 1, p))


@dataclass
class _PredictionView:
    label: str
    runner_up: str
    probabilities: dict
    tokens: list
    contributions: list


@gpu
def compare(
    text: str = DEFAULT_PROMPT,
    length: int = START.length,
    steps: int = START.steps,
    temperature: float = START.temperature,
    seed: int = 0,
    colours: str = "state",
):
    """Race the diffusion and the AR model on one prompt, streaming both canvases (API /compare)."""
    if colours not in COLOR_MAP:
        raise ui_error(f"unknown colouring {colours!r}; choose from {sorted(COLOR_MAP)}")
    try:
        request = parse_generate_request(DIFFUSION, "continue", text, length, steps, START.schedule, temperature, 0,
                                         START.top_p, START.remasking, 0, 0, "off", 0, seed, 1, False)
    except ValueError as error:
        raise ui_error(error) from None
    diffusion, ar = _model(DIFFUSION), _model(AR)
    try:
        lanes = [Lane(DIFFUSION, start_generation(diffusion, request)[0]),
                 Lane(AR, start_generation(ar, GenerateRequest(AR, False, request.text, request.seed, request.overrides))[0])]
    except ValueError as error:
        raise ui_error(error) from None
    totals = {DIFFUSION: lanes[0].generation.config.steps, AR: lanes[1].generation.config.length}

    def view(lane: Lane):
        trace = lane.generation.trace()
        canvas = gr.HighlightedText(value=highlight(trace, -1 if trace.steps else None, mode=colours), color_map=COLOR_MAP[colours])
        unit = "Step" if lane.name == DIFFUSION else "Token"
        head = "**Finished**" if lane.done else f"**{unit} {len(trace.steps)} / {totals[lane.name]}**"
        return canvas, f"{head} · NFE {trace.nfe} · {lane.clock:.2f} s"

    yield *view(lanes[0]), *view(lanes[1]), gr.skip(), gr.skip(), gr.skip(), gr.skip(), ""
    last = time.perf_counter()
    for _ in race(lanes):
        if time.perf_counter() - last >= MIN_UPDATE_SECONDS:
            yield *view(lanes[0]), *view(lanes[1]), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            last = time.perf_counter()
    metrics = {lane.name: lane.metrics() for lane in lanes}
    winner = min(lanes, key=lambda lane: lane.clock)
    loser = max(lanes, key=lambda lane: lane.clock)
    ratio = loser.clock / winner.clock if winner.clock else float("inf")
    note = (f"**{winner.name.capitalize()} finished first**, {ratio:.1f}× faster on its own clock. "
            f"Both wrote {request.overrides['length']} tokens (end-of-text off, so the work is equal). "
            + peak_memory_note(diffusion.device.type == "cuda"))
    yield (*view(lanes[0]), *view(lanes[1]), metrics_frame(metrics), bar_frame(metrics, "wall time (s)"),
           bar_frame(metrics, "tokens/s"), bar_frame(metrics, "NFE (forward passes)"), note)


def learn(measure: bool = True):
    """The Learn tab's text, with timings measured on this machine (API /learn)."""
    diffusion = ar = tradeoffs = None
    try:
        diffusion, ar = MODELS.get(DIFFUSION), MODELS.get(AR)
        if measure:
            tradeoffs = measure_tradeoffs(diffusion, ar)
    except (ValueError, OSError) as error:
        ui_warning(f"could not measure: {error}")
    return learn_markdown(tradeoffs, diffusion, ar)


def model_overview() -> tuple[str, str]:
    """(one line per model and the classifier, their cards) for the header; loads them if needed."""
    lines, cards = [], []
    for role in (DIFFUSION, AR, CONTINUOUS):
        source = MODELS.source(role)
        try:
            lm = MODELS.get(role)
        except (ValueError, OSError) as error:
            lines.append(f"**{role}**: ✗ `{html.escape(source)}` could not be loaded: {html.escape(str(error))}")
            continue
        lines.append(f"**{role}**: `{html.escape(display_name(source))}` ({lm.kind}, {size(lm.num_parameters)}, "
                     f"{lm.device.type})")
        cards.append(f"### {role}: `{html.escape(display_name(source))}`\n\n" + model_card(lm))
    source = MODELS.source(CLASSIFIER)
    try:
        trained = MODELS.classifier()
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
    text = readme_text(Path(lm.path))
    if text is not None:
        return text
    settings = lm.settings.to_dict()
    if lm.kind == "causal":  # the diffusion-only fields mean nothing to an AR model
        settings = {k: settings[k] for k in ("length", "temperature", "top_k", "top_p", "allow_eos")}
    facts = [f"- kind: {lm.kind}", f"- parameters: {lm.num_parameters:,}", f"- positions: {lm.max_positions}",
             f"- recommended sampler settings: `{json.dumps(settings)}`"]
    training = lm.card.get("training") or {}
    facts += [f"- {k}: {html.escape(str(v))}" for k, v in training.items()]
    return "No model card (README.md) in this checkpoint.\n\n" + "\n".join(facts)


def classifier_card(trained: TrainedClassifier) -> str:
    """The classifier's README (or what its classifier.json says), then its validation figures."""
    text = readme_text(trained.folder) if trained.folder else None
    if text is None:
        clf, training = trained.classifier, trained.spec.get("training") or {}
        facts = [f"- design: {trained.design} ({trained.family})", f"- labels: {', '.join(clf.labels)}",
                 f"- parameters: {trained.num_parameters:,}", f"- texts cut to {clf.max_tokens} tokens"]
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


def classifier_info(mode: str = TRAINED) -> str:
    """The Classify tab's line about the classifier in use (no loading: the header's page-load does that)."""
    if mode == ZERO_SHOT:
        return ("Zero-shot: the diffusion model scores each text after each label's prompt; "
                "the labels and the prompt are yours to choose.")
    trained = MODELS.loaded_classifier()
    name = html.escape(display_name(MODELS.source(CLASSIFIER)))
    if trained is None:
        return (f"Trained classifier `{name}`: not loaded; it is still loading, or it could not be (the line at the "
                "top of the page says why). Zero-shot works without it.")
    labels = ", ".join(f"“{html.escape(label)}”" for label in trained.classifier.labels)
    return f"Trained classifier `{name}`: {describe_classifier(trained)}. Labels: {labels}."


def on_load(classifier_mode: str = TRAINED):
    """Page load: show the models and the classifier, and set the controls to the diffusion model's recommendations."""
    summary, cards = model_overview()
    info = classifier_info(classifier_mode)
    lm = MODELS.loaded(DIFFUSION)
    if lm is None:
        return (summary, cards, info) + (gr.skip(),) * 5
    s = lm.settings
    length = min(s.length, MAX_LENGTH, (lm.max_positions or MAX_LENGTH) - 8)
    return (summary, cards, info, Slider(value=length), Slider(value=min(s.steps, length), maximum=length),
            gr.Dropdown(value=s.schedule), gr.Dropdown(value=s.remasking), Slider(value=s.temperature))


def switch_classifier(mode: str):
    """Trained vs zero-shot: the label fields only mean something zero-shot; the samples slider changes meaning."""
    zero_shot = mode == ZERO_SHOT
    if zero_shot:
        samples = Slider(label="Mask samples per label", info="the same masks for every label; more: steadier, slower")
    else:
        samples = Slider(label="Most mask samples per text", info="the classifier stops earlier once the top class is clear")
    return (classifier_info(mode), gr.Textbox(visible=zero_shot), gr.Textbox(visible=zero_shot), samples)


def show_quality(length):
    """The benchmark chart at another length (the file is read again: a finished sweep shows without a restart)."""
    chart = quality_chart(length if isinstance(length, int) else None)
    return chart.note, gr.Row(visible=chart.frame is not None), chart.frame, chart.frame


def switch_mode(mode: str):
    """Continue vs fill in: relabel the text box and show or hide the length."""
    if mode == "infill":
        return (gr.Textbox(label="Template (write [MASK] for each missing token)", value=DEFAULT_TEMPLATE),
                Slider(visible=False))
    return gr.Textbox(label="Prompt (may be empty)", value=DEFAULT_PROMPT), Slider(visible=True)


def cap_steps(length, steps):
    """Keep the steps slider's maximum at the length."""
    length = int(length or 1)
    return Slider(maximum=min(MAX_STEPS, length), value=min(int(steps or 1), length))


# =================================================================================================
# Layout
# =================================================================================================

CSS = """
.gradio-container { max-width: 1200px !important; margin: auto; }
#header h1 { margin-bottom: 0.2em; }
.stats p { font-variant-numeric: tabular-nums; color: var(--body-text-color-subdued); margin: 0; }
.canvas { min-height: 120px; }
.canvas .textfield { display: block !important; line-height: 1.9; font-size: 1.05em; word-break: normal !important; }
"""

HEADER = """
# dlm · text diffusion, live
Text that emerges from masks, step by step: a masked-diffusion language model starts from a canvas of
`[MASK]` tokens and reveals a few per step. Watch it, export it, classify with it, and race it against
an autoregressive model of the same size.
"""

LEGEND = ("Colours: <span style='background:#d1d5db;padding:0 4px;border-radius:3px'>masked</span> "
          "<span style='background:#fde047;padding:0 4px;border-radius:3px'>new this step</span> "
          "<span style='background:#bfdbfe;padding:0 4px;border-radius:3px'>prompt</span> · by confidence: "
          "<span style='background:#86efac;padding:0 4px;border-radius:3px'>≥ 0.9</span> "
          "<span style='background:#fde047;padding:0 4px;border-radius:3px'>≥ 0.5</span> "
          "<span style='background:#fca5a5;padding:0 4px;border-radius:3px'>lower</span>")

CLASSIFY_HELP = """
**How it decides (trained).** The trained classifier is *generative*: it models each class's texts
rather than drawing a boundary between them. In the per-class design one small masked-diffusion model
is trained on each class's texts (in the conditional design, one model learns text after a class
prompt). For a text x, each class's model estimates log p(x | class) by its ELBO, a Monte-Carlo
average over random masks, with the *same* masks for every class (common random numbers), so most
of the Monte-Carlo noise cancels in the differences that decide. Bayes' rule with the training
set's class frequencies as priors turns the scores into p(class | x). Masks are drawn a few at a time,
and a text stops as soon as its top class leads the runner-up by a set number of standard errors, or
at the cap the samples slider sets: clear texts are cheap, close calls get more samples. Finally one
temperature, fitted on held-out validation texts (temperature scaling), softens or sharpens the
probabilities so that they match how often the classifier is right. How accurate it is: see its card
(under *Model cards*) and the validation figures there; measure it on your own labelled .csv here.

**Zero-shot.** No training for the task: each text is scored by the general diffusion model after
each label's prompt (e.g. “A positive review:”), the ELBO again with shared masks, and Bayes' rule
with equal priors. A small model trained on prose is a weak zero-shot classifier: read the accuracy
before trusting it.

**Highlights.** The ELBO is a sum over tokens, so the log-odds of the predicted label against the
runner-up split exactly into per-token parts: red tokens pushed towards the prediction, purple ones
against it (scaled to the strongest token). Click a row of the table to explain that text. (For a
discriminative classifier, the parts are gradient × input, an approximation.)
"""


def canvas_box(label: str, **kwargs) -> gr.HighlightedText:
    """A denoising canvas: tokens coloured by state (or confidence); runs of one colour read as text."""
    return gr.HighlightedText(label=label, color_map=COLOR_MAP["state"], show_legend=False, show_inline_category=False,
                              combine_adjacent=True, adjacent_separator="", elem_classes="canvas", **kwargs)


with gr.Blocks(title="dlm · text diffusion, live", delete_cache=(OUTPUT_TTL_SECONDS, OUTPUT_TTL_SECONDS)) as demo:
    gr.Markdown(HEADER, elem_id="header")
    models_line = gr.Markdown("Models load on the first request…", elem_id="models")
    with gr.Accordion("Model cards", open=False):
        cards_md = gr.Markdown()

    with gr.Tabs():
        # ---- Generate ------------------------------------------------------------------------
        with gr.Tab("Generate", id="generate"):
            with gr.Row():
                with gr.Column(scale=2):
                    mode = gr.Radio([("Continue a prompt", "continue"), ("Fill in the blanks", "infill")],
                                    value="continue", label="Mode", elem_id="mode")
                    text = gr.Textbox(label="Prompt (may be empty)", value=DEFAULT_PROMPT, lines=3,
                                      max_length=MAX_PROMPT_CHARS, elem_id="prompt")
                    with gr.Row():
                        length = Slider(1, MAX_LENGTH, value=START.length, step=1, label="Length (tokens)")
                        steps = Slider(1, START.length, value=START.steps, step=1, label="Steps",
                                       info="fewer steps: more tokens revealed per step")
                    with gr.Row():
                        run_button = gr.Button("Generate", variant="primary", elem_id="generate-button")
                        stop_button = gr.Button("Stop", variant="stop")
                with gr.Column(scale=1):
                    model_choice = gr.Radio([("Diffusion", DIFFUSION), ("Continuous diffusion", CONTINUOUS),
                                             ("Autoregressive", AR)], value=DIFFUSION, label="Model",
                                            info="masked diffusion, embedding-space diffusion, or AR; each ignores "
                                                 "the settings it has no use for")
                    colours = gr.Radio([("By state", "state"), ("By confidence", "confidence")], value="state",
                                       label="Colour tokens")
                    num_samples = Slider(1, MAX_SAMPLES, value=1, step=1, label="Number of samples")
                    seed = gr.Number(value=0, precision=0, label="Seed")
            with gr.Accordion("Sampler settings", open=False):
                with gr.Row():
                    schedule = gr.Dropdown(sorted(SCHEDULES), value=START.schedule, label="Schedule",
                                           info="how many tokens each step reveals")
                    remasking = gr.Dropdown(sorted(REMASKING), value=START.remasking, label="Remasking",
                                            info="which masked positions a step commits")
                    threshold = Slider(0, 1, value=0, step=0.05, label="Confidence threshold",
                                       info="also commit every token at least this sure (0 = off)")
                    block_length = Slider(0, MAX_LENGTH, value=0, step=1, label="Block length",
                                          info="semi-autoregressive blocks (0 = one block)")
                    kv_cache = gr.Dropdown([("off (exact)", "off"), ("prefix", "prefix"), ("dual", "dual")],
                                           value="off", label="Key/value cache",
                                           info="Fast-dLLM: reuse keys and values within a block; faster, approximate")
                with gr.Row():
                    temperature = Slider(0, 2, value=START.temperature, step=0.05, label="Temperature",
                                         info="0 = greedy")
                    top_k = Slider(0, 200, value=START.top_k, step=1, label="Top-k", info="0 = off")
                    top_p = Slider(0.05, 1, value=START.top_p, step=0.05, label="Top-p", info="1 = off")
                    guidance = Slider(0, 5, value=0, step=0.25, label="Guidance scale",
                                      info="classifier-free guidance on the prompt (0 = off)")
                    allow_eos = gr.Checkbox(value=True, label="Stop at end of text")
            stats = gr.Markdown(elem_classes="stats", elem_id="stats")
            canvases = [canvas_box("Canvas" if i == 0 else f"Sample {i + 1}", visible=i == 0, elem_id=f"canvas-{i}")
                        for i in range(MAX_SAMPLES)]
            gr.Markdown(LEGEND, elem_classes="stats")
            final_text = gr.Textbox(label="Text", lines=3, interactive=False, buttons=["copy"], elem_id="final-text")
            last_run = gr.State(None)

        # ---- Animate ----------------------------------------------------------------------------
        with gr.Tab("Animate", id="animate"):
            gr.Markdown("Renders a run with the **Generate** tab's prompt and settings (the same seed gives the "
                        "same text, so the run you just watched is reused). Downloads: an animated GIF, an MP4, "
                        "and an interactive HTML player (play, scrub, hover a token for the model's guess).")
            with gr.Row():
                frame_ms = Slider(MIN_FRAME_MS, MAX_FRAME_MS, value=250, step=10, label="Frame speed (ms per step)")
                race_ar = gr.Checkbox(value=True, label="Also race diffusion against AR (side-by-side GIF)")
                animate_button = gr.Button("Animate", variant="primary", elem_id="animate-button")
            with gr.Row():
                gif_preview = gr.Image(type="filepath", label="Animation (GIF)", show_label=False, interactive=False,
                                       elem_id="gif", scale=2)
                downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads",
                                    scale=1)
            race_preview = gr.Image(type="filepath", label="Diffusion vs AR (real time)", show_label=False,
                                    interactive=False, visible=False, elem_id="race-gif")
            animate_note = gr.Markdown(elem_classes="stats")

        # ---- Classify ---------------------------------------------------------------------------
        with gr.Tab("Classify", id="classify"):
            gr.Markdown("**Trained**: the classifier named below, trained on labelled texts; by default generative, "
                        "a small diffusion model per class, and Bayes' rule turns how likely each class's model finds "
                        "a text into probabilities. "
                        "**Zero-shot**: the diffusion model's likelihood of the text after each label's prompt, "
                        "with labels you choose. Details under *How this works*.", elem_classes="stats")
            with gr.Row():
                with gr.Column():
                    paste = gr.Textbox(label="Texts, one per line", lines=5, elem_id="classify-text",
                                       value="A gripping, beautifully acted film.\nDull, slow and far too long.")
                    upload = gr.File(label=f"…or upload a .txt (one text per line) or .csv (max {MAX_UPLOAD_MB} MB, "
                                     f"first {MAX_ROWS} rows)", file_types=[".txt", ".csv"], elem_id="upload")
                    upload_info = gr.Markdown(elem_classes="stats", elem_id="upload-info")
                    with gr.Row():
                        # custom values let API callers name a column; the handler checks it against the file
                        text_column = gr.Dropdown(label="Text column", visible=False, allow_custom_value=True)
                        label_column = gr.Dropdown(label="Label column (for accuracy)", visible=False,
                                                   allow_custom_value=True)
                with gr.Column():
                    classifier_mode = gr.Radio([("Trained", TRAINED), ("Zero-shot", ZERO_SHOT)], value=TRAINED,
                                               label="Classifier", elem_id="classifier-mode")
                    classifier_md = gr.Markdown("The trained classifier loads with the page…", elem_classes="stats",
                                                elem_id="classifier-info")
                    labels = gr.Textbox(value=DEFAULT_LABELS, label="Labels (comma-separated)", visible=False)
                    label_prompt = gr.Textbox(value=DEFAULT_LABEL_PROMPT, label="Label prompt", visible=False,
                                              info="each text is scored after this prompt, once per label")
                    samples = Slider(4, MAX_CLASSIFY_SAMPLES, value=32, step=4, label="Most mask samples per text",
                                     info="the classifier stops earlier once the top class is clear")
                    classify_button = gr.Button("Classify", variant="primary", elem_id="classify-button")
            summary_md = gr.Markdown(elem_id="classify-summary")
            with gr.Row():
                probabilities = gr.Label(label="Probabilities (first text, or the row you click)", num_top_classes=MAX_LABELS)
                explanation = gr.HighlightedText(label="What drives the decision", show_legend=True,
                                                 show_inline_category=False, elem_classes="canvas", elem_id="explanation")
            results = gr.Dataframe(label="Results (click a row to explain it; log p in nats)", interactive=False,
                                   wrap=False, max_height=420, elem_id="results")
            with gr.Row():
                confusion = gr.Dataframe(label="Confusion matrix", interactive=False, visible=False)
                results_csv = gr.File(label="Results as CSV", interactive=False, elem_id="results-csv")
            predictions_state = gr.State(None)
            with gr.Accordion("How this works", open=False):
                gr.Markdown(CLASSIFY_HELP)

        # ---- Compare ----------------------------------------------------------------------------
        with gr.Tab("Compare", id="compare"):
            gr.Markdown("One prompt, both models, streamed side by side. They take turns in one thread, the one "
                        "behind on its own clock going next, so neither slows the other and each clock counts only "
                        "its own model's work.")
            with gr.Row():
                race_text = gr.Textbox(label="Prompt", value=DEFAULT_PROMPT, scale=4, max_length=MAX_PROMPT_CHARS)
                race_seed = gr.Number(value=0, precision=0, label="Seed", scale=1)
            with gr.Row():
                race_length = Slider(1, MAX_LENGTH, value=START.length, step=1, label="Length (tokens)")
                race_steps = Slider(1, MAX_STEPS, value=START.steps, step=1, label="Diffusion steps")
                race_temperature = Slider(0, 2, value=START.temperature, step=0.05, label="Temperature")
            race_button = gr.Button("Race", variant="primary", elem_id="race-button")
            with gr.Row():
                with gr.Column():
                    diffusion_stats = gr.Markdown(elem_classes="stats")
                    diffusion_canvas = canvas_box("Diffusion", elem_id="diffusion-canvas")
                with gr.Column():
                    ar_stats = gr.Markdown(elem_classes="stats")
                    ar_canvas = canvas_box("Autoregressive", elem_id="ar-canvas")
            race_note = gr.Markdown()
            metrics_table = gr.Dataframe(label="Metrics", interactive=False, elem_id="metrics")
            with gr.Row():
                plot_args = dict(x="model", color="model", color_map=MODEL_COLORS, colors_in_legend=[], sort=[DIFFUSION, AR],
                                 y_lim=[0, None], x_title=" ", height=240, show_label=False)
                wall_plot = gr.BarPlot(y="wall time (s)", y_title="seconds", title="Wall time (lower is better)", **plot_args)
                speed_plot = gr.BarPlot(y="tokens/s", y_title="tokens/s", title="Tokens per second (higher is better)",
                                        **plot_args)
                nfe_plot = gr.BarPlot(y="NFE (forward passes)", y_title="NFE", title="Forward passes (lower is better)",
                                      **plot_args)
            chart = quality_chart()
            gr.Markdown("### Quality against speed (the benchmark)")
            with gr.Row():
                quality_length = gr.Dropdown(chart.lengths, value=chart.length, label="Length (tokens)",
                                             visible=len(chart.lengths) > 1, scale=0, min_width=160)
                quality_md = gr.Markdown(chart.note, elem_classes="stats")
            with gr.Row(visible=chart.frame is not None) as quality_row:
                quality_args = dict(y="judge perplexity", color="series", color_map=QUALITY_COLORS, y_lim=[0, None],
                                    y_title="judge perplexity (lower is better)", height=300, show_label=False,
                                    tooltip=["setting", "wall time (s)", "NFE", "judge perplexity"])
                quality_wall = gr.ScatterPlot(chart.frame, x="wall time (s)", x_title="wall time per sample (s)",
                                              title="Quality against wall time", **quality_args)
                quality_nfe = gr.ScatterPlot(chart.frame, x="NFE", x_title="forward passes (NFE)",
                                             title="Quality against forward passes", **quality_args)

        # ---- Learn ------------------------------------------------------------------------------
        with gr.Tab("Learn", id="learn") as learn_tab:
            learn_md = gr.Markdown(learn_markdown(None, None, None))
            measure_button = gr.Button("Measure again on this machine", size="sm")

    # =============================================================================================
    # Events
    # =============================================================================================
    generate_inputs = [model_choice, mode, text, length, steps, schedule, temperature, top_k, top_p, remasking,
                       threshold, block_length, kv_cache, guidance, seed, num_samples, allow_eos, colours]
    generate_event = gr.on([run_button.click, text.submit], generate, inputs=generate_inputs,
                           outputs=[*canvases, stats, final_text, last_run], api_name="generate",
                           concurrency_id="model", show_progress="minimal")
    stop_button.click(None, cancels=[generate_event], api_visibility="private")
    mode.change(switch_mode, mode, [text, length], api_visibility="private", queue=False)
    length.input(cap_steps, [length, steps], steps, api_visibility="private", queue=False)

    animate_button.click(animate, inputs=[*generate_inputs, frame_ms, race_ar, last_run],
                         outputs=[gif_preview, downloads, race_preview, animate_note], api_name="animate",
                         concurrency_id="model")

    upload.upload(inspect_upload, upload, [text_column, label_column, upload_info], api_visibility="private")
    upload.clear(lambda: (gr.Dropdown(visible=False), gr.Dropdown(visible=False), ""), None,
                 [text_column, label_column, upload_info], api_visibility="private", queue=False)
    classifier_mode.change(switch_classifier, classifier_mode, [classifier_md, labels, label_prompt, samples],
                           api_visibility="private", queue=False)
    classify_button.click(classify, inputs=[paste, upload, text_column, label_column, labels, label_prompt, samples,
                                            classifier_mode],
                          outputs=[probabilities, explanation, results, results_csv, summary_md, confusion,
                                   predictions_state],
                          api_name="classify", concurrency_id="model")
    results.select(explain_row, predictions_state, [probabilities, explanation], api_visibility="private")

    race_button.click(compare, inputs=[race_text, race_length, race_steps, race_temperature, race_seed],
                      outputs=[diffusion_canvas, diffusion_stats, ar_canvas, ar_stats, metrics_table, wall_plot,
                               speed_plot, nfe_plot, race_note],
                      api_name="compare", concurrency_id="model", show_progress="minimal")

    quality_length.change(show_quality, quality_length, [quality_md, quality_row, quality_wall, quality_nfe],
                          api_visibility="private", queue=False)

    learn_tab.select(learn, None, learn_md, api_name="learn", concurrency_id="model")
    measure_button.click(learn, None, learn_md, api_visibility="private", concurrency_id="model")
    demo.load(on_load, classifier_mode, [models_line, cards_md, classifier_md, length, steps, schedule, remasking,
                                         temperature],
              api_visibility="private")

demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)


# =================================================================================================
# Launch
# =================================================================================================


def launch_options() -> dict:
    """What every launch passes: looks, the one folder files are served from, the upload cap."""
    return dict(theme=gr.themes.Soft(primary_hue="indigo"), css=CSS, allowed_paths=[str(output_dir())],
                max_file_size=f"{MAX_UPLOAD_MB}mb")


def configure(sources: dict[str, str | None]) -> Models:
    """Point the app at models (bundled names, folders or Hub ids); nothing loads until needed.

    Also gives each of the CONCURRENCY requests that may run at once its share of the CPU cores:
    oversubscribed torch threads spin-wait, and on a busy 2-core machine that made a step ~100x slower.
    """
    global MODELS
    import torch

    torch.set_num_threads(int(os.environ.get("DLM_THREADS") or max(1, len(os.sched_getaffinity(0)) // CONCURRENCY)))
    MODELS = Models(sources)
    return MODELS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="The dlm Gradio app.")
    parser.add_argument("--model", default=os.environ.get(ENV[DIFFUSION]),
                        help=f"diffusion model: bundled name, folder or Hub id (env {ENV[DIFFUSION]}; default 'default')")
    parser.add_argument("--ar-model", default=os.environ.get(ENV[AR]),
                        help=f"autoregressive model for Compare and the race (env {ENV[AR]}; default 'default-ar')")
    parser.add_argument("--continuous-model", default=os.environ.get(ENV[CONTINUOUS]),
                        help=f"continuous (embedding-space) diffusion model for Generate and Animate (env "
                             f"{ENV[CONTINUOUS]}; default 'default-continuous')")
    parser.add_argument("--classifier", default=os.environ.get(ENV[CLASSIFIER]),
                        help=f"trained classifier for the Classify tab: bundled name, folder with classifier.json or "
                             f"Hub id (env {ENV[CLASSIFIER]}; default 'default-classifier')")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve your network")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also make a public gradio.live link")
    parser.add_argument("--no-warm-up", action="store_true", help="load models on the first request, not at launch")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sources = {DIFFUSION: args.model, AR: args.ar_model, CONTINUOUS: args.continuous_model, CLASSIFIER: args.classifier}
    on_space = bool(os.environ.get("SPACE_ID"))
    if not on_space:  # fail fast on a typo; a Space keeps serving and shows the error in the page
        from dlm.loading import resolve

        # not the classifier: the app serves without it (zero-shot), and the header says why it is missing
        flags = {DIFFUSION: "--model", AR: "--ar-model", CONTINUOUS: "--continuous-model"}
        for role, flag in flags.items():
            try:
                resolve(Models(sources).source(role))
            except ValueError as error:
                print(f"error: {flag}: {error}", file=sys.stderr)
                return 2
    models = configure(sources)
    if not args.no_warm_up:
        threading.Thread(target=models.warm_up, name="warm-up", daemon=True).start()
    if on_space:
        demo.launch(**launch_options())  # the Space decides host and port
    else:
        demo.launch(server_name=args.host, server_port=args.port, share=args.share, **launch_options())
    return 0


if __name__ == "__main__":
    sys.exit(main())
