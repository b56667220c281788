"""Class-conditional training: one model learns p(text | label) and, through label dropout, p(text).

Every training piece is framed exactly as `dlm.classify` scores it,
    [framing] prompt(label) piece [framing]        (a causal model: BOS prompt(label) piece),
with the prompt and the framing never masked and never scored, so the loss is on the text alone. For
`label_dropout` of the pieces the prompt is the null prompt instead (classifier-free guidance's
unconditional branch, Ho & Salimans 2022), so the same model also scores p(text).

Maximum likelihood alone teaches a model to use the label very slowly: the label is worth at most
I(label; text) <= log C nats to a text that costs hundreds of nats, so a pretrained model that ignores
the prompt loses almost nothing by going on ignoring it (measured on the movie reviews: after 100
steps of maximum likelihood alone the mean score gap log p(x | right label) - log p(x | wrong label)
on validation texts was 0.002 nats). So every piece that keeps its label is also scored under every
other label, with the *same* masked positions (common random numbers, as the classifier scores), and
the trainer adds
`bayes_weight` times the cross-entropy of Bayes' rule over those scores,
    -log softmax_c( log p(piece | c) + log p(c) )[true label]
(maximum conditional likelihood of the label: a hybrid generative/discriminative objective, Bouchard &
Triggs 2004), which gives the label a gradient of order one per text. (Fitting one batch of 8 reviews,
it widens the gap between the right and the wrong label by 3-5 nats a step; maximum likelihood widens
it by 0.1-0.2 nats a step while its loss falls from 6.7 to 3.3 nats per token, learning the text, not
the label. That this makes the label generalise sooner is not shown yet: README, *Classification*.)

`contrast_min_rate` > 0 masks those labelled pieces at high rates only, p in [min, 1]: where little
of the text is hidden the visible words already say what the label would, so for an exact model
log p(x_i | rest, c) - log p(x_i | rest, c') is near zero there, and the difference that decides the
class is made where most of the text is masked. It is off by default: no run has yet shown it to
help (the only short run with a measurable label effect used every rate). The null prompt's pieces
always keep the full range of rates, so p(text) stays a full ELBO.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dlm.masking import mask_by_rate, mask_rates
from dlm.shifted import canvas_logits, is_shifted
from training.collator import WEIGHTINGS, _pad
from training.trainers import DiffusionTrainer

NULL_CLASS = -1  # row_class of a row under the null prompt


@dataclass
class ConditionalCollator:
    """Rows `prefix + prompt + piece + suffix` from examples {"piece": token ids, "label": class index}.

    Each example gives one row under its own label's prompt (`is_target`: it carries the generative
    loss), or, for `label_dropout` of them, one row under the null prompt (also a target). With
    `contrast`, an example that keeps its label gets one more row under every other label, with the
    same masked positions in the piece. Masked models (`mask_id` set) mask the piece at a rate
    p = (1 - eps) t + eps stratified over the batch, as `DiffusionCollator` does (with contrast, a
    labelled piece's rate is moved into [`contrast_min_rate`, 1]); causal models (`mask_id` None) score
    every piece token.
    """

    prompts: Sequence[Sequence[int]]  # token ids of each label's prompt, in class order
    null_prompt: Sequence[int]  # token ids of the unconditional prompt (may be empty)
    prefix: Sequence[int]  # framing before the prompt (<s>, [CLS]; a causal model's BOS): never masked or scored
    suffix: Sequence[int]  # framing after the piece (</s>, [SEP]): never masked or scored
    pad_id: int  # padding: never attended, masked or scored
    mask_id: int | None = None  # the mask token of a masked model; None for a causal model
    label_dropout: float = 0.1  # share of examples whose label prompt is replaced by the null prompt
    contrast: bool = True  # also score each labelled piece under every other label (Bayes' rule term)
    contrast_min_rate: float = 0.0  # with contrast, labelled pieces are masked at rates in [this, 1]
    eps: float = 1e-3  # smallest mask rate
    weighting: str = "elbo"  # generative loss weight of a row: "elbo" 1/p, "uniform" 1
    seed: int | None = None  # fixes dropout and masks (evaluation); None draws fresh ones every batch

    def __post_init__(self):
        if len(self.prompts) < 2:
            raise ValueError(f"give at least two label prompts, got {len(self.prompts)}")
        if not 0 <= self.label_dropout <= 1:
            raise ValueError(f"label_dropout must be in [0, 1], got {self.label_dropout}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.weighting!r}; choose from {list(WEIGHTINGS)}")
        if not 0 < self.eps < 1:
            raise ValueError(f"eps must be in (0, 1), got {self.eps}")
        if not 0 <= self.contrast_min_rate <= 1:
            raise ValueError(f"contrast_min_rate must be in [0, 1], got {self.contrast_min_rate}")
        if self.mask_id is None and not all(list(self.prefix) + list(p) for p in [*self.prompts, self.null_prompt]):
            raise ValueError("a causal model needs a BOS token or non-empty prompts: its first text token is "
                             "predicted from what comes before it")
        self.reset()

    def reset(self) -> None:
        """Start the random stream again (a seeded collator then repeats its batches)."""
        self._generator = torch.Generator().manual_seed(self.seed) if self.seed is not None else None

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        g = self._generator
        b = len(examples)
        masked_kind = self.mask_id is not None
        dropped = torch.rand(b, generator=g) < self.label_dropout  # (B,)
        rates = mask_rates(b, self.eps, generator=g) if masked_kind else torch.ones(b)  # (B,) stratified
        if masked_kind and self.contrast:  # labelled pieces: the same stratified rates, moved into [min, 1]
            low = self.contrast_min_rate
            rates = torch.where(dropped, rates, low + (1 - low) * rates)
        true_class = torch.tensor([int(e["label"]) for e in examples])  # (B,)
        seqs, starts, piece_masks, example, row_class = [], [], [], [], []
        for k, e in enumerate(examples):
            piece = torch.as_tensor(e["piece"], dtype=torch.long)
            if masked_kind:  # one draw per piece, shared by all its rows: common random numbers
                _, hidden = mask_by_rate(piece[None], torch.ones(1, len(piece), dtype=torch.bool), rates[k : k + 1],
                                         self.mask_id, generator=g)
                hidden = hidden[0]
            else:
                hidden = torch.ones(len(piece), dtype=torch.bool)
            label = int(true_class[k])
            if dropped[k]:
                variants = [(NULL_CLASS, self.null_prompt)]
            elif self.contrast:
                variants = list(enumerate(self.prompts))
            else:
                variants = [(label, self.prompts[label])]
            for c, prompt in variants:
                head = list(self.prefix) + list(prompt)
                seqs.append(torch.tensor(head + piece.tolist() + list(self.suffix), dtype=torch.long))
                starts.append(len(head))
                piece_masks.append(hidden)
                example.append(k)
                row_class.append(c)
        clean = _pad(seqs, self.pad_id)  # (R, W)
        attention = torch.zeros_like(clean)
        scored = torch.zeros(clean.shape, dtype=torch.bool)
        for r, (seq, start, hidden) in enumerate(zip(seqs, starts, piece_masks)):
            attention[r, : len(seq)] = 1
            scored[r, start : start + len(hidden)] = hidden
        example_t, class_t = torch.tensor(example), torch.tensor(row_class)
        is_target = (class_t == NULL_CLASS) | (class_t == true_class[example_t])  # (R,)
        batch = {
            "input_ids": clean.masked_fill(scored, self.mask_id) if masked_kind else clean,
            "attention_mask": attention,
            "labels": clean.masked_fill(~scored, -100),  # the token a row is scored on at each position
            "example": example_t,  # (R,) the example of each row
            "row_class": class_t,  # (R,) the label whose prompt the row carries; NULL_CLASS for the null prompt
            "is_target": is_target,  # (R,) rows of the generative loss: the true label's, or the null prompt's
            "true_class": true_class,  # (B,)
        }
        if masked_kind:
            row_rates = rates[example_t]  # (R,)
            batch["loss_weight"] = 1.0 / row_rates if self.weighting == "elbo" else torch.ones(len(seqs))
            batch["mask_rate"] = row_rates
            batch["num_scored"] = torch.tensor(sum(len(piece_masks[r]) for r in range(len(seqs)) if is_target[r]))
        return batch


class ConditionalTrainer(DiffusionTrainer):
    """The generative loss of every piece under its own (or the null) prompt, plus `bayes_weight` times the
    cross-entropy of Bayes' rule over the contrast rows.

    Generative part: for a masked model the weighted ELBO loss of `DiffusionTrainer` over the target
    rows; for a causal model the mean next-token cross-entropy of the piece tokens. Bayes part: per
    example scored under every label, z_c = sum_{i scored} log p(x_i | ..., c) + log p(c) over the same
    masked positions for every c, and -log softmax(z)[true]. The sum is not weighted by 1/p: a
    one-sample ELBO would multiply the log-ratio of a nearly clean piece's one masked token by the
    piece length, so the noisiest samples would dominate; unweighted, each sample counts by how much of
    the text it hides, which is where the label matters. Logged: `label_loss` and `label_accuracy` (the
    one-sample Bayes decision on the pieces), in training and in evaluation; `eval_loss` is the
    generative part alone, so `eval_perplexity` stays a perplexity.
    """

    def __init__(self, *args, log_priors: Sequence[float], bayes_weight: float = 1.0, causal: bool = False,
                 bayes_temperature: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        if bayes_weight < 0:
            raise ValueError(f"bayes_weight must be >= 0, got {bayes_weight}")
        if not bayes_temperature > 0:
            raise ValueError(f"bayes_temperature must be > 0, got {bayes_temperature}")
        # one masked sample's score gap is noisy: Bayes' rule on z / T asks for calibrated odds, not T times them
        self.bayes_temperature = bayes_temperature
        self.log_priors = torch.tensor(list(log_priors), dtype=torch.float32)  # (C,)
        self.bayes_weight = bayes_weight
        self.causal = causal
        self._label_sums = {True: torch.zeros(3, dtype=torch.float64), False: torch.zeros(3, dtype=torch.float64)}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]  # (R, W)
        if self.causal:  # output k predicts the token at k + 1
            logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits[:, :-1]
            labels = labels[:, 1:]
        else:
            logits = canvas_logits(model, inputs["input_ids"], inputs["attention_mask"], shifted=is_shifted(self.model))
        scored = labels != -100
        rows = scored.nonzero()[:, 0]  # (M,) the row of every scored token
        ce = F.cross_entropy(logits[scored].float(), labels[scored], reduction="none")  # (M,)
        row_nll = torch.zeros(labels.shape[0], device=ce.device).index_add(0, rows, ce)  # (R,) -log p(scored tokens)
        target = inputs["is_target"]
        if self.causal:
            generative = row_nll[target].sum() / scored[target].sum().clamp(min=1)
        else:
            generative = (row_nll * inputs["loss_weight"].float())[target].sum() / inputs["num_scored"].clamp(min=1)
            if model.training:
                keep = target[rows]
                self._record_buckets(ce.detach()[keep], rows[keep], inputs["mask_rate"])
        bayes = self._bayes_rule(row_nll, inputs, model.training)
        loss = generative + self.bayes_weight * bayes if model.training else generative
        return (loss, {"logits": logits}) if return_outputs else loss

    def _bayes_rule(self, row_nll: torch.Tensor, inputs: dict, training: bool) -> torch.Tensor:
        """Mean cross-entropy of the true label under Bayes' rule, over the examples scored under every label."""
        true = inputs["true_class"]
        labelled = inputs["row_class"] != NULL_CLASS
        index = (inputs["example"][labelled], inputs["row_class"][labelled])
        num_classes = len(self.log_priors)
        z = torch.zeros(len(true), num_classes, device=row_nll.device).index_put(index, -row_nll[labelled])  # (B, C)
        have = torch.zeros(len(true), num_classes, dtype=torch.bool, device=row_nll.device).index_put(
            index, torch.ones_like(index[0], dtype=torch.bool))
        full = have.all(dim=1)
        if not full.any():
            return row_nll.sum() * 0.0
        z = z[full] / self.bayes_temperature + self.log_priors.to(z.device)
        loss = F.cross_entropy(z, true[full])
        correct = (z.argmax(dim=1) == true[full]).sum()
        count = float(full.sum())
        self._label_sums[training] += torch.tensor([float(loss.detach()) * count, float(correct), count], dtype=torch.float64)
        return loss

    def _label_logs(self, training: bool, prefix: str) -> dict[str, float]:
        loss, correct, count = self._label_sums[training].tolist()
        self._label_sums[training].zero_()
        if count == 0:
            return {}
        return {f"{prefix}label_loss": round(loss / count, 4), f"{prefix}label_accuracy": round(correct / count, 4)}

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log: add the Bayes-rule figures since the last one
            logs.update(self._label_logs(True, ""))
        super().log(logs, start_time)

    def evaluate(self, *args, **kwargs):
        prefix = kwargs.get("metric_key_prefix", "eval") + "_"
        self._label_sums[False].zero_()
        metrics = super().evaluate(*args, **kwargs)
        extra = self._label_logs(False, prefix)
        if extra:
            metrics.update(extra)
            self.log(extra)
        return metrics
