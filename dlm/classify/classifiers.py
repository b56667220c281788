"""The classifier objects: what a prediction is, the generative classifier (Bayes' rule over per-class
likelihoods), its zero-shot form, the discriminative baseline, and loading a trained classifier.

A generative classifier applies Bayes' rule,  p(c | x) ∝ p(x | c) p(c),  with p(x | c) from one
model per class (`per-class`) or one model given a class prompt such as "positive:" (`conditional`;
the zero-shot classifier is this design with an un-tuned model). log p(x | c) comes from
`dlm.classify.scoring` (a Monte-Carlo ELBO with common random numbers for a masked model, exact for
a causal one); the probabilities are tempered with the temperature of `dlm.classify.calibration`.

Explanations come for free: the ELBO estimate is a sum over positions, so the log-odds of the top
class against the runner-up splits exactly into per-token terms c_i(top) - c_i(runner-up) (for a
causal model, the per-token log-probabilities).

A conditional model trained with label dropout (`training.conditional`) also knows p(x): its null
prompt, scored with the same masks on request (`classify(texts, marginal=True)`). It never enters the
decision: p(x) is the same for every class, so Bayes' rule (and any score of the form
log p(x | c) - w log p(x), as in classifier-free guidance) ranks the classes exactly as without it.
What it adds is the pointwise mutual information PMI(x; c) = log p(x | c) - log p(x) = log p(c | x)
- log p(c) (`Prediction.pmi`): how much better the text is explained with the label than without
one, on the same masks. Low PMI for every class says that no label explains the text, which the
posterior, normalised over the classes, cannot say.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from dlm.classify.calibration import softmax
from dlm.classify.prediction import Prediction
from dlm.classify.scoring import framing, score_causal, score_masked
from dlm.generation import encode, special_framing, token_pieces
from dlm.loading import BUNDLED_DIR, LanguageModel, ModelNotFoundError

MAX_TOKENS = 128  # a text is scored in pieces of this many tokens (the trainer's pieces)
MAX_PIECES = 8  # and at most this many pieces (1,024 tokens at 128: a whole review); cost grows with length
TRUNCATIONS = ("head+tail", "head")  # what of a longer text is read: its first and last pieces, or its first
CONFIG_FILE = "classifier.json"


@dataclass
class GenerativeClassifier:
    """p(class | text) ∝ p(text | class) p(class), with one language model (and prompt) per class."""

    models: Sequence[LanguageModel]  # one per class; the same model may serve every class (conditional)
    labels: Sequence[str]  # class names, as shown to the user
    prompts: Sequence[str] | None = None  # one prompt per class ("positive:"), or None for per-class models
    priors: Sequence[float] | None = None  # p(class); uniform when None
    temperature: float = 1.0  # calibration: probabilities are softmax(scores / temperature), for a text of max_tokens
    temperature_exponent: float = 0.0  # ... and softmax(scores / (temperature · (m / max_tokens)^this)) for m tokens
    max_tokens: int = MAX_TOKENS  # tokens per scored piece (the length the models were trained on)
    max_pieces: int = MAX_PIECES  # a longer text is scored as consecutive pieces, up to this many (then cut)
    truncation: str = "head+tail"  # a text over max_pieces: its first ceil(n/2) and last floor(n/2) pieces; "head": first n
    round_samples: int = 8  # mask patterns added per round (masked models), shared by all classes
    max_samples: int = 32  # at most this many per text
    margin: float = 3.0  # stop once the top class leads by this many standard errors
    masks: str = "tiled"  # a round's mask patterns: tiled over the positions, or "random" (independent)
    batch_size: int = 64  # sequences per forward pass
    seed: int = 0  # the masks' randomness: the same text always gets the same scores
    null_prompt: str | None = None  # the unconditional prompt of a model trained with label dropout ("" = none)

    def __post_init__(self) -> None:
        self.labels = tuple(self.labels)
        self.models = tuple(self.models)
        if len(self.labels) < 2:
            raise ValueError(f"give at least two labels, got {list(self.labels)}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be distinct, got {list(self.labels)}")
        if len(self.models) != len(self.labels):
            raise ValueError(f"one model per label: {len(self.labels)} labels, {len(self.models)} models")
        kinds = {lm.kind for lm in self.models}
        if len(kinds) != 1:
            raise ValueError(f"the class models must be of one kind, got {sorted(kinds)}")
        self.kind = kinds.pop()
        self.prompts = tuple(self.prompts) if self.prompts is not None else ("",) * len(self.labels)
        if len(self.prompts) != len(self.labels):
            raise ValueError(f"one prompt per label: {len(self.labels)} labels, {len(self.prompts)} prompts")
        priors = list(self.priors) if self.priors is not None else [1.0] * len(self.labels)
        if len(priors) != len(self.labels) or any(p <= 0 for p in priors):
            raise ValueError(f"give one positive prior per label, got {priors}")
        self.priors = tuple(p / sum(priors) for p in priors)
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not math.isfinite(self.temperature_exponent):
            raise ValueError(f"temperature_exponent must be finite, got {self.temperature_exponent}")
        if self.round_samples < 2 or self.max_samples < self.round_samples:
            raise ValueError("need round_samples >= 2 and max_samples >= round_samples")
        if self.max_pieces < 1:
            raise ValueError(f"max_pieces must be >= 1, got {self.max_pieces}")
        if self.truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {TRUNCATIONS}, got {self.truncation!r}")
        self._contexts = [encode(lm.tokenizer, p) for lm, p in zip(self.models, self.prompts)]
        self._null_context = encode(self.models[0].tokenizer, self.null_prompt) if self.null_prompt is not None else None
        if self.kind == "causal" and any(lm.bos_id is None for lm in self.models) and not all(self._contexts):
            raise ValueError("this causal model has no BOS token, so every label needs a non-empty prompt")
        if self._null_context is not None:
            if any(lm is not self.models[0] for lm in self.models):
                raise ValueError("a null prompt needs one model for every class (the conditional design)")
            if self.kind == "causal" and self.models[0].bos_id is None and not self._null_context:
                raise ValueError("this causal model has no BOS token, so the null prompt must not be empty")

    def classify(self, texts: Sequence[str], *, marginal: bool = False) -> list[Prediction]:
        """One prediction per text; texts are scored together, batched across texts and classes.

        marginal: also score log p(text) under the null prompt, with the same masks (one more
        sequence per mask sample; it does not change the decision)."""
        if marginal and self._null_context is None:
            raise ValueError("this classifier has no null prompt, so it cannot score p(text): train a conditional "
                             "classifier with --label-dropout > 0")
        texts_ids, truncated, targets, groups, seams = [], [], [], [], []
        for text in texts:
            ids, cut, pieces, seam = self._pieces(text)
            texts_ids.append(ids)
            seams.append(seam)
            truncated.append(cut)
            groups.append(list(range(len(targets), len(targets) + len(pieces))))
            targets += pieces
        null_context = self._null_context if marginal else None
        if self.kind == "causal":
            scores = score_causal(self.models, self._contexts, targets, batch_size=self.batch_size,
                                  null_context=null_context, groups=groups)
        else:  # Monte-Carlo ELBO with common random numbers and adaptive stopping
            scores = score_masked(self.models, self._contexts, targets, priors=self.priors,
                                  round_samples=self.round_samples, max_samples=self.max_samples, margin=self.margin,
                                  batch_size=self.batch_size, seed=self.seed, null_context=null_context,
                                  masks=self.masks, groups=groups)
        return [self._predict(texts_ids[i], truncated[i], per_token, samples, exact=self.kind == "causal",
                              marginal=null, pieces=len(groups[i]), seam=seams[i])
                for i, (per_token, samples, null) in enumerate(scores)]

    def count_pieces(self, texts: Sequence[str]) -> list[int]:
        """How many pieces (forward rows per class and mask sample) each text is scored as."""
        return [len(self._pieces(text)[2]) for text in texts]

    def _pieces(self, text: str) -> tuple[list[int], bool, list[list[int]], int | None]:
        """A text's token ids as read (cut to max_text_tokens), whether it was cut, its pieces, cut as the
        trainer cut its training texts (their log-likelihoods add), and where the read ids skip part of the
        text (head+tail truncation of a cut text: the index of the first tail token), else None."""
        limit = min(self.max_tokens, self._room())
        if limit < 1:
            raise ValueError("the label prompts leave no room for the text; shorten them")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("a text to classify is empty")
        ids = encode(self.models[0].tokenizer, text)
        if not ids:
            raise ValueError(f"the text {text[:40]!r} has no tokens")
        cut = len(ids) > limit * self.max_pieces
        tail = self._tail_pieces() * limit if cut else 0
        head = ids[: limit * self.max_pieces - tail]
        ends = ids[len(ids) - tail :] if tail else []
        pieces = [head[i : i + limit] for i in range(0, len(head), limit)]
        pieces += [ends[i : i + limit] for i in range(0, len(ends), limit)]
        return head + ends, cut, pieces, (len(head) if ends else None)

    @property
    def max_text_tokens(self) -> int:
        """The most tokens of a text that are read (the rest is cut, and `Prediction.truncated` says so)."""
        return min(self.max_tokens, self._room()) * self.max_pieces

    def reads(self) -> str:
        """What of a text longer than max_text_tokens is read, for notes to the user ("its first 512 and last
        512 tokens")."""
        tail = self._tail_pieces() * (self.max_text_tokens // self.max_pieces)
        if tail:
            return f"its first {self.max_text_tokens - tail:,} and last {tail:,} tokens"
        return f"its first {self.max_text_tokens:,} tokens"

    def _tail_pieces(self) -> int:
        """How many of the max_pieces a cut text's end supplies (floor(n/2) head+tail, else none)."""
        return self.max_pieces // 2 if self.truncation == "head+tail" else 0

    def text_temperature(self, tokens: int) -> float:
        """The calibration temperature of a text of this many scored tokens (score gaps grow with length)."""
        return self.temperature * (max(tokens, 1) / self.max_tokens) ** self.temperature_exponent

    # -- the decision

    def _predict(self, target, truncated, per_token, samples, *, exact, marginal=None, pieces=1,
                 seam=None) -> Prediction:
        log_priors = [math.log(p) for p in self.priors]
        likelihoods = [float(s.mean()) for s in samples]
        scores = [ll + lp for ll, lp in zip(likelihoods, log_priors)]
        temperature = self.text_temperature(len(target))
        probabilities = softmax([z / temperature for z in scores])
        order = sorted(range(len(self.labels)), key=lambda k: -scores[k])
        top, second = order[0], order[1]
        n = len(samples[0])
        stderr = 0.0 if exact or n < 2 else float((samples[top] - samples[second]).std() / math.sqrt(n))
        return Prediction(
            label=self.labels[top],
            probabilities=dict(zip(self.labels, probabilities)),
            log_likelihoods=dict(zip(self.labels, likelihoods)),
            runner_up=self.labels[second],
            tokens=read_tokens(self.models[0].tokenizer, target, seam),
            contributions=(per_token[top] - per_token[second]).tolist(),
            truncated=truncated,
            nfe=(len(self.labels) + (marginal is not None)) * n * pieces,  # one forward row per piece
            logits=dict(zip(self.labels, scores)),
            stderr=stderr,
            log_marginal=None if marginal is None else float(marginal.mean()),
        )

    def _room(self) -> int:
        """Tokens left for the text after the longest prompt and the framing specials."""
        room = self.max_tokens
        contexts = list(zip(self.models, self._contexts))
        if self._null_context is not None:
            contexts.append((self.models[0], self._null_context))
        for lm, context in contexts:
            if lm.max_positions is None:
                continue
            prefix, suffix = framing(lm.tokenizer, lm.kind)
            room = min(room, lm.max_positions - len(prefix) - len(suffix) - len(context))
        return room


SKIPPED = " […] "  # shown before the first token read after a skipped middle (head+tail truncation)


def read_tokens(tokenizer, ids: list[int], seam: int | None) -> list[str]:
    """Display pieces of the ids a classifier read, one per token; where a middle was skipped, the first
    token after it starts with SKIPPED (each side decoded on its own, so no character spans the gap)."""
    if seam is None:
        return token_pieces(tokenizer, ids)
    tail = token_pieces(tokenizer, ids[seam:])
    return token_pieces(tokenizer, ids[:seam]) + ([SKIPPED + tail[0]] + tail[1:] if tail else [])


def ZeroShotClassifier(lm: LanguageModel, labels: Sequence[str], prompts: Sequence[str], num_samples: int = 32,  # noqa: N802
                       **options) -> GenerativeClassifier:
    """One un-tuned language model scoring the text after each label's prompt, uniform priors.

    `num_samples` mask patterns per text (masked models), all drawn (no early stopping)."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    return GenerativeClassifier([lm] * len(labels), labels, prompts=prompts, round_samples=max(2, num_samples),
                                max_samples=max(2, num_samples), **options)


# ---- the discriminative baseline ------------------------------------------------------------------------


@dataclass
class DiscriminativeClassifier:
    """A sequence-classification head on an encoder: p(class | text) = softmax(head(text) / T)."""

    model: object  # a transformers *ForSequenceClassification model
    tokenizer: object
    labels: Sequence[str]
    temperature: float = 1.0
    max_tokens: int = MAX_TOKENS
    batch_size: int = 32
    explain: bool = True  # gradient × input contributions (one backward pass per batch)

    def __post_init__(self) -> None:
        self.labels = tuple(self.labels)
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def max_text_tokens(self) -> int:
        """The most tokens of a text that are read: its first `max_tokens` (one forward pass)."""
        return self.max_tokens

    def reads(self) -> str:
        return f"its first {self.max_text_tokens:,} tokens"

    def classify(self, texts: Sequence[str]) -> list[Prediction]:
        prefix, suffix = special_framing(self.tokenizer)
        limit = self.max_tokens
        max_positions = getattr(self.model.config, "max_position_embeddings", None)
        if max_positions:
            limit = min(limit, max_positions - len(prefix) - len(suffix))
        targets, truncated = [], []
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise ValueError("a text to classify is empty")
            ids = encode(self.tokenizer, text)
            truncated.append(len(ids) > limit)
            targets.append(ids[:limit])
        out: list[Prediction | None] = [None] * len(texts)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        for begin in range(0, len(texts), self.batch_size):
            batch = list(range(begin, min(begin + self.batch_size, len(texts))))
            width = len(prefix) + len(suffix) + max(len(targets[i]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            attention = torch.zeros_like(ids)
            for b, i in enumerate(batch):
                seq = prefix + targets[i] + suffix
                ids[b, : len(seq)] = torch.tensor(seq)
                attention[b, : len(seq)] = 1
            ids, attention = ids.to(self.device), attention.to(self.device)
            if self.explain:
                embeddings = self.model.get_input_embeddings()(ids).detach().requires_grad_(True)
                with torch.enable_grad():
                    logits = self.model(inputs_embeds=embeddings, attention_mask=attention).logits.float()
                    top2 = logits.topk(2, dim=-1).indices
                    gap = logits.gather(1, top2[:, :1]) - logits.gather(1, top2[:, 1:2])
                    (grad,) = torch.autograd.grad(gap.sum(), embeddings)
                saliency = (grad * embeddings).sum(-1).detach().double().cpu()  # (b, width)
                logits = logits.detach()
            else:
                with torch.inference_mode():
                    logits = self.model(input_ids=ids, attention_mask=attention).logits.float()
                saliency = None
            for b, i in enumerate(batch):
                scores = logits[b].double().cpu().tolist()
                probabilities = softmax([z / self.temperature for z in scores])
                order = sorted(range(len(self.labels)), key=lambda k: -scores[k])
                span = slice(len(prefix), len(prefix) + len(targets[i]))
                out[i] = Prediction(
                    label=self.labels[order[0]],
                    probabilities=dict(zip(self.labels, probabilities)),
                    log_likelihoods={},
                    runner_up=self.labels[order[1]],
                    tokens=token_pieces(self.tokenizer, targets[i]),
                    contributions=saliency[b, span].tolist() if saliency is not None else [0.0] * len(targets[i]),
                    truncated=truncated[i],
                    nfe=1,
                    logits=dict(zip(self.labels, scores)),
                )
        return out  # type: ignore[return-value]


# ---- loading a trained classifier ----------------------------------------------------------------------


def load_classifier(source: str | Path, *, device: str | torch.device | None = None, trust_remote_code: bool = False,
                    **options) -> GenerativeClassifier | DiscriminativeClassifier:
    """A classifier trained by `training.train_classifier`: a bundled name, a folder or a Hub repo id.

    `options` override the scoring settings (e.g. max_samples, margin, batch_size).
    """
    folder = _classifier_folder(source)
    spec = json.loads((folder / CONFIG_FILE).read_text())
    labels, design = spec["labels"], spec["design"]
    common = {"temperature": spec.get("temperature", 1.0), "max_tokens": spec.get("max_tokens", MAX_TOKENS)}
    if design != "discriminative":  # folders from before scoring in pieces were calibrated on the first piece
        common["max_pieces"] = spec.get("max_pieces", 1)
        common["truncation"] = spec.get("truncation", "head+tail")
        common["temperature_exponent"] = spec.get("temperature_exponent", 0.0)
    if design == "discriminative":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from dlm.loading import default_device

        path = folder / spec["models"]["*"]
        model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True, dtype=torch.float32,
                                                                   trust_remote_code=trust_remote_code)
        model.to(torch.device(device) if device is not None else default_device()).eval()
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        return DiscriminativeClassifier(model, tokenizer, labels, **common, **options)
    from dlm.loading import load

    if design == "per-class":
        models = [load(str(folder / spec["models"][c]), device=device, trust_remote_code=trust_remote_code) for c in labels]
    elif design == "conditional":
        lm = load(str(folder / spec["models"]["*"]), device=device, trust_remote_code=trust_remote_code)
        models = [lm] * len(labels)
        # trained with label dropout (older folders have no null prompt)
        common["null_prompt"] = spec.get("null_prompt") if spec.get("label_dropout", 0) > 0 else None
    else:
        raise ValueError(f"{source!r}: unknown classifier design {design!r}")
    settings = {**spec.get("scoring", {}), **common, **options}
    return GenerativeClassifier(models, labels, prompts=spec.get("prompts"), priors=spec.get("priors"), **settings)


def bundled_classifiers() -> list[str]:
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / CONFIG_FILE).is_file())


def _classifier_folder(source: str | Path) -> Path:
    if isinstance(source, Path):
        source = str(source)
    if not isinstance(source, str) or not source.strip():
        raise ModelNotFoundError(f"classifier source must be a non-empty string, got {source!r}")
    if source in bundled_classifiers():
        return BUNDLED_DIR / source
    folder = Path(source).expanduser()
    if folder.is_dir():
        if not (folder / CONFIG_FILE).is_file():
            raise ModelNotFoundError(f"folder {str(folder)!r} has no {CONFIG_FILE}: train one with training.train_classifier")
        return folder
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    tried = f"bundled classifiers {bundled_classifiers()}; local folder {str(folder)!r} (no such folder)"
    try:
        validate_repo_id(source)
        path = Path(snapshot_download(source, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.md"]))
    except HFValidationError:
        raise ModelNotFoundError(f"cannot load classifier {source!r}; tried {tried}; not a valid Hub repo id") from None
    except Exception as error:  # offline, not found, gated: all mean the same to the caller
        raise ModelNotFoundError(f"cannot load classifier {source!r}; tried {tried}; the Hub said: {error}") from None
    if not (path / CONFIG_FILE).is_file():
        raise ModelNotFoundError(f"Hub repo {source!r} has no {CONFIG_FILE}: it is not a dlm classifier")
    return path
