"""The models the app serves, by role: loaded lazily, once, and shared by every request.

`MODELS` is the registry in use; `configure()` points it at other sources (flags, environment). Read it
as `models.MODELS` at call time, never copy it: configure() replaces it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import dlm
from dlm.classify import CONFIG_FILE as CLASSIFIER_FILE
from dlm.classify import DiscriminativeClassifier, GenerativeClassifier
from webapp.settings import AR, CLASSIFIER, CONCURRENCY, CONTINUOUS, DEFAULTS, DIFFUSION


def _gpu_decorator():
    """`spaces.GPU` on a ZeroGPU Space; elsewhere a decorator that returns the function unchanged."""
    try:
        import spaces
    except ImportError:
        spaces = None
    # our own spaces/ folder (deployment files, no __init__.py) imports as an empty namespace package
    return getattr(spaces, "GPU", None) or (lambda fn: fn)

gpu = _gpu_decorator()


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


def recommended_settings(source: str) -> tuple[dlm.SamplerConfig, int | None] | None:
    """A model's recommended sampler settings and its positions, read from its config.json without loading
    its weights: bundled, a local folder, or a Hub repo already in the cache (a Space preloads them).
    None when the config is not at hand, or cannot be read."""
    from transformers import AutoConfig

    from dlm.config import SETTINGS_KEY
    from dlm.families import FAMILIES
    from dlm.loading import BUNDLED_DIR, bundled_models, max_positions_of

    for family in FAMILIES.values():
        family.prepare()  # e.g. registers the continuous model type with AutoConfig

    if source in bundled_models():
        folder = BUNDLED_DIR / source
    elif Path(source).expanduser().is_dir():
        folder = Path(source).expanduser()
    else:
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(source, "config.json")
        except ValueError:  # not a repo id
            return None
        if not isinstance(cached, str):
            return None
        folder = Path(cached).parent
    try:
        config = AutoConfig.from_pretrained(folder)
        settings = dlm.SamplerConfig.from_dict((getattr(config, SETTINGS_KEY, None) or {}).get("sampler", {}))
    except (OSError, ValueError) as error:  # the load at the first request reports it
        print(f"[dlm app] could not read the settings of {source!r}: {error}", file=sys.stderr)
        return None
    return settings, max_positions_of(config)
