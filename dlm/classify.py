"""Generative classification with diffusion (or AR) likelihoods, its discriminative baseline, and the metrics.

    clf = dlm.classify.load_classifier("default-classifier")     # bundled, a folder, or a Hub repo
    [p] = clf.classify(["A gripping, moving film."])
    p.label, p.probabilities, p.contributions, p.nfe

A generative classifier applies Bayes' rule,  p(c | x) ∝ p(x | c) p(c),  with p(x | c) from one
model per class (`per-class`) or one model given a class prompt such as "positive:" (`conditional`;
the zero-shot classifier is this design with an un-tuned model). For a masked model log p(x | c) is
the core's Monte-Carlo ELBO (`dlm.masking`: the number of masked tokens l stratified over 1..L,
weight L / l), drawn with the *same* masks for every class (common random numbers), so most of the
Monte-Carlo noise cancels in the differences that decide the class. Masks are drawn in rounds: a
text stops as soon as its top class leads the runner-up by `margin` standard errors of their
per-sample difference, or at `max_samples`. For a causal model the likelihood is exact.

Explanations come for free: the ELBO estimate is a sum over positions,
    ELBO = sum_i c_i,   c_i = mean_j [ L / l_j * m_ij * log p(x_i | x masked by m_j) ],
so the log-odds of the top class against the runner-up splits exactly into per-token terms
c_i(top) - c_i(runner-up) (for a causal model, the per-token log-probabilities).

Probabilities are calibrated by temperature scaling (Guo et al. 2017): p = softmax(z / T) with the
scores z_c = log p(x | c) + log p(c), T fitted on validation texts (`calibration_report`).

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
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from dlm.generation import encode, special_framing, token_pieces
from dlm.loading import BUNDLED_DIR, LanguageModel, ModelNotFoundError
from dlm.masking import mask_by_count, stratified_counts
from dlm.shifted import canvas_logits

MAX_TOKENS = 128  # texts are cut to this many tokens before scoring (cost grows with length)
CONFIG_FILE = "classifier.json"


@dataclass(frozen=True)
class Prediction:
    """The decision for one text, with what it rests on."""

    label: str  # the most probable class
    probabilities: dict[str, float]  # p(class | text), sums to 1, in the classifier's label order
    log_likelihoods: dict[str, float]  # nats: log p(text | class) (an ELBO for masked models); {} if discriminative
    runner_up: str  # the second most probable class (the label itself when there is only one)
    tokens: list[str]  # display text of each scored token (after any truncation)
    contributions: list[float]  # per token: its share of the top class's score minus the runner-up's
    truncated: bool  # True when the text was cut to fit
    nfe: int  # sequences the network scored for this text (forward passes at batch 1)
    logits: dict[str, float] = field(default_factory=dict)  # untempered scores z_c: log p(x | c) + log p(c)
    stderr: float = 0.0  # Monte-Carlo standard error of z_top - z_runner_up (0 when exact)
    log_marginal: float | None = None  # nats: log p(text) under the null prompt, same masks; None unless asked

    @property
    def pmi(self) -> dict[str, float]:
        """log p(text | class) - log p(text) per class (needs `classify(..., marginal=True)`)."""
        if self.log_marginal is None:
            raise ValueError("no log p(text): classify with marginal=True, with a model trained with label dropout")
        return {c: ll - self.log_marginal for c, ll in self.log_likelihoods.items()}


class Classifier(Protocol):
    """What the app and the CLI need from a classifier."""

    labels: tuple[str, ...]
    temperature: float

    def classify(self, texts: Sequence[str]) -> list[Prediction]: ...


# ---- the generative classifier -----------------------------------------------------------------------


def framing(tokenizer, kind: str) -> tuple[list[int], list[int]]:
    """The tokens around `prompt + text` in every scored row, and in every row a conditional model is
    trained on (`training.conditional`): a masked model's special framing (<s> ... </s>, [CLS] ... [SEP]),
    a causal model's start token (BOS, else CLS, else EOS, as `LanguageModel.bos_id`) and nothing after."""
    if kind != "causal":
        return special_framing(tokenizer)
    candidates = (tokenizer.bos_token_id, tokenizer.cls_token_id, tokenizer.eos_token_id)
    start = next((t for t in candidates if t is not None), None)
    return ([start] if start is not None else []), []


@dataclass
class GenerativeClassifier:
    """p(class | text) ∝ p(text | class) p(class), with one language model (and prompt) per class."""

    models: Sequence[LanguageModel]  # one per class; the same model may serve every class (conditional)
    labels: Sequence[str]  # class names, as shown to the user
    prompts: Sequence[str] | None = None  # one prompt per class ("positive:"), or None for per-class models
    priors: Sequence[float] | None = None  # p(class); uniform when None
    temperature: float = 1.0  # calibration: probabilities are softmax(scores / temperature)
    max_tokens: int = MAX_TOKENS  # longer texts are cut (Prediction.truncated says so)
    round_samples: int = 8  # mask patterns added per round (masked models), shared by all classes
    max_samples: int = 32  # at most this many per text
    margin: float = 3.0  # stop once the top class leads by this many standard errors
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
        if self.round_samples < 2 or self.max_samples < self.round_samples:
            raise ValueError("need round_samples >= 2 and max_samples >= round_samples")
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
        tokenizer = self.models[0].tokenizer
        targets, truncated = [], []
        limit = min(self.max_tokens, self._room())
        if limit < 1:
            raise ValueError("the label prompts leave no room for the text; shorten them")
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise ValueError("a text to classify is empty")
            ids = encode(tokenizer, text)
            if not ids:
                raise ValueError(f"the text {text[:40]!r} has no tokens")
            truncated.append(len(ids) > limit)
            targets.append(ids[:limit])
        if self.kind == "causal":
            per_token = [self._causal_terms(self.models[c], self._contexts[c], targets)
                         for c in range(len(self.labels))]  # [class][text] (L,)
            estimates = [[t.sum().reshape(1) for t in per_token[c]] for c in range(len(self.labels))]
            null = self._causal_terms(self.models[0], self._null_context, targets) if marginal else None
            return [self._predict(targets[i], truncated[i], [per_token[c][i] for c in range(len(self.labels))],
                                  [estimates[c][i] for c in range(len(self.labels))], exact=True,
                                  marginal=None if null is None else null[i].sum().reshape(1))
                    for i in range(len(targets))]
        return self._classify_masked(targets, truncated, marginal)

    # -- masked models: Monte-Carlo ELBO with common random numbers and adaptive stopping

    def _classify_masked(self, targets: list[list[int]], truncated: list[bool], marginal: bool = False) -> list[Prediction]:
        num_classes = len(self.labels)
        generators = [torch.Generator().manual_seed(self.seed * 1_000_003 + zlib.crc32(repr(t).encode())) for t in targets]
        token_sums = [torch.zeros(num_classes, len(t), dtype=torch.float64) for t in targets]  # sum over samples
        estimates: list[list[list[torch.Tensor]]] = [[[] for _ in range(num_classes)] for _ in targets]
        null_estimates: list[list[torch.Tensor]] = [[] for _ in targets]  # log p(x) under the null prompt
        active = list(range(len(targets)))
        while active:
            masks = {}
            for i in active:
                length = len(targets[i])
                counts = stratified_counts(self.round_samples, length, generators[i])
                masks[i] = mask_by_count(torch.ones(self.round_samples, length, dtype=torch.bool), counts, generators[i])
            for c in range(num_classes):
                terms = self._masked_terms(self.models[c], self._contexts[c], {i: targets[i] for i in active}, masks)
                for i, t in terms.items():  # (n, L)
                    token_sums[i][c] += t.sum(dim=0)
                    estimates[i][c].append(t.sum(dim=1))
            if marginal:  # the same masks again, under the null prompt
                terms = self._masked_terms(self.models[0], self._null_context, {i: targets[i] for i in active}, masks)
                for i, t in terms.items():
                    null_estimates[i].append(t.sum(dim=1))
            still = []
            for i in active:
                samples = torch.stack([torch.cat(e) for e in estimates[i]])  # (C, n)
                if not self._settled(samples):
                    still.append(i)
            active = still
        predictions = []
        for i, target in enumerate(targets):
            samples = [torch.cat(e) for e in estimates[i]]
            n = len(samples[0])
            predictions.append(self._predict(target, truncated[i], list(token_sums[i] / n), samples, exact=False,
                                             marginal=torch.cat(null_estimates[i]) if marginal else None))
        return predictions

    def _settled(self, samples: torch.Tensor) -> bool:
        """True when the top class's lead over the runner-up is `margin` standard errors, or at the cap."""
        n = samples.shape[1]
        if n >= self.max_samples:
            return True
        scores = samples.mean(dim=1) + torch.log(torch.tensor(self.priors, dtype=torch.float64))
        top, second = scores.topk(2).indices.tolist()
        stderr = float((samples[top] - samples[second]).std() / math.sqrt(n))
        return stderr == 0.0 or float(scores[top] - scores[second]) > self.margin * stderr

    def _masked_terms(self, lm: LanguageModel, context: list[int], targets: dict[int, list[int]],
                      masks: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """Per text: (n, L) float64 terms L / l_j * m_ij * log p(x_i | context, x masked by m_j)."""
        prefix, suffix = framing(lm.tokenizer, lm.kind)
        start = len(prefix) + len(context)
        rows = []  # (text, row of its masks)
        for i, m in masks.items():
            rows += [(i, j) for j in range(m.shape[0])]
        rows.sort(key=lambda r: len(targets[r[0]]))  # similar lengths share a batch: little padding
        out = {i: torch.zeros(m.shape, dtype=torch.float64) for i, m in masks.items()}
        pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else lm.mask_id
        for begin in range(0, len(rows), self.batch_size):
            batch = rows[begin : begin + self.batch_size]
            width = start + max(len(targets[i]) for i, _ in batch) + len(suffix)
            clean = torch.full((len(batch), width), pad, dtype=torch.long)
            masked = torch.zeros(len(batch), width, dtype=torch.bool)
            attention = torch.zeros(len(batch), width, dtype=torch.long)
            for b, (i, j) in enumerate(batch):
                seq = prefix + context + targets[i] + suffix
                clean[b, : len(seq)] = torch.tensor(seq)
                attention[b, : len(seq)] = 1
                masked[b, start : start + len(targets[i])] = masks[i][j]
            noisy = clean.masked_fill(masked, lm.mask_id).to(lm.device)
            with torch.inference_mode():
                logits = canvas_logits(lm.model, noisy, attention.to(lm.device))
                picked = logits[masked.to(lm.device)].float()  # (M, V): only where a token is masked
                logp = torch.log_softmax(picked, dim=-1).gather(-1, clean[masked].to(lm.device).unsqueeze(-1)).squeeze(-1)
            logp = logp.double().cpu()
            full = torch.zeros(len(batch), width, dtype=torch.float64)
            full[masked] = logp
            for b, (i, j) in enumerate(batch):
                length = len(targets[i])
                weight = length / float(masks[i][j].sum())
                out[i][j] = full[b, start : start + length] * weight
        return out

    # -- causal models: exact

    def _causal_terms(self, lm: LanguageModel, context: list[int], targets: list[list[int]]) -> list[torch.Tensor]:
        """Per text: (L,) float64 exact log p(x_i | BOS, context, x_<i)."""
        prefix = framing(lm.tokenizer, lm.kind)[0] + context
        pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
        out: list[torch.Tensor | None] = [None] * len(targets)
        order = sorted(range(len(targets)), key=lambda i: len(targets[i]))
        for begin in range(0, len(order), self.batch_size):
            batch = order[begin : begin + self.batch_size]
            width = len(prefix) + max(len(targets[i]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            attention = torch.zeros(len(batch), width, dtype=torch.long)
            for b, i in enumerate(batch):
                seq = prefix + targets[i]
                ids[b, : len(seq)] = torch.tensor(seq)
                attention[b, : len(seq)] = 1
            with torch.inference_mode():
                logits = lm.model(input_ids=ids.to(lm.device), attention_mask=attention.to(lm.device)).logits.float()
                logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:].to(lm.device).unsqueeze(-1))
            logp = logp.squeeze(-1).double().cpu()  # (b, width - 1): position k predicts ids[k + 1]
            for b, i in enumerate(batch):
                first = len(prefix) - 1
                out[i] = logp[b, first : first + len(targets[i])]
        return out  # type: ignore[return-value]

    # -- the decision

    def _predict(self, target, truncated, per_token, samples, *, exact, marginal=None) -> Prediction:
        log_priors = [math.log(p) for p in self.priors]
        likelihoods = [float(s.mean()) for s in samples]
        scores = [ll + lp for ll, lp in zip(likelihoods, log_priors)]
        probabilities = softmax([z / self.temperature for z in scores])
        order = sorted(range(len(self.labels)), key=lambda k: -scores[k])
        top, second = order[0], order[1]
        n = len(samples[0])
        stderr = 0.0 if exact or n < 2 else float((samples[top] - samples[second]).std() / math.sqrt(n))
        return Prediction(
            label=self.labels[top],
            probabilities=dict(zip(self.labels, probabilities)),
            log_likelihoods=dict(zip(self.labels, likelihoods)),
            runner_up=self.labels[second],
            tokens=token_pieces(self.models[0].tokenizer, target),
            contributions=(per_token[top] - per_token[second]).tolist(),
            truncated=truncated,
            nfe=(len(self.labels) + (marginal is not None)) * n,
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


# ---- calibration and metrics --------------------------------------------------------------------------


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
    temperature = fit_temperature(logits, targets)
    before, after = torch.softmax(logits, dim=1), torch.softmax(logits / temperature, dim=1)
    nll = lambda p: float(-p.gather(1, targets.unsqueeze(1)).clamp_min(1e-300).log().mean())  # noqa: E731
    return {
        "texts": len(keep),
        "accuracy": float((logits.argmax(dim=1) == targets).double().mean()),
        "temperature": temperature,
        "ece_before": expected_calibration_error(before, targets),
        "ece_after": expected_calibration_error(after, targets),
        "nll_before": nll(before),
        "nll_after": nll(after),
        "nfe_per_text": sum(p.nfe for p in predictions) / len(predictions),
    }


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
