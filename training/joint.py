"""Per-class models trained together: each learns its class's texts, and Bayes' rule across them.

`python -m training.train_classifier --design per-class --bayes-weight W` trains the class models of
a per-class classifier in one run instead of one after another. Every batch mixes the classes; every
piece is masked once and that same masked piece is scored by every class model (common random
numbers, as `dlm.classify` scores a text), so for piece b and class model c

    s_bc = sum_{i scored} log p_c(x_i | the rest)        (a causal model: every token, given the ones before)

The loss is the generative loss of each piece under its own class's model (the weighted ELBO of
`DiffusionTrainer`, or next-token cross-entropy), plus W times the cross-entropy of Bayes' rule,
-log softmax_c(s_bc + log p(c))[true class]: the hybrid objective of `training.conditional`, here with a
model per class. Maximum likelihood trains each class model on its own texts only, so nothing asks the
two models to differ where the label is decided: each also learns, at full weight, the plot summaries,
names and style its class happens to hold, and those differences are noise to the classifier (the
bundled classifier's scores needed a temperature of 6.5 to be calibrated). The Bayes term is the one
gradient that compares the models on the same text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dlm.shifted import canvas_logits, is_shifted
from training.conditional import ConditionalTrainer


class ClassModels(nn.Module):
    """The class models as one module (so one optimiser, checkpoint and DDP wrapper hold them all).

    forward(input_ids, attention_mask, labels) -> (C, B, W) the negative log-likelihood of each scored
    token (labels != -100) under each class model, 0 elsewhere; for a causal model W is the width - 1
    (output k predicts token k + 1).
    """

    _keys_to_ignore_on_save = None  # read by Trainer when it resumes a checkpoint

    def __init__(self, models: Sequence[nn.Module], causal: bool = False):
        super().__init__()
        self.models = nn.ModuleList(models)
        self.causal = causal
        self.config = models[0].config  # what Trainer and `is_shifted` read

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out = []
        for model in self.models:
            if self.causal:
                logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
                target = labels[:, 1:]
            else:
                logits = canvas_logits(model, input_ids, attention_mask, shifted=is_shifted(model))
                target = labels
            nll = F.cross_entropy(logits.float().transpose(1, 2), target.clamp(min=0), reduction="none")  # (B, W)
            out.append(nll * (target != -100))
        return torch.stack(out)

    def state_dict(self, *args, **kwargs):
        """Each tensor once: a class model's tied output matrix is its input embedding (safetensors
        refuses two names for one storage); loading restores the tie (`load_state_dict(strict=False)`)."""
        state = super().state_dict(*args, **kwargs)
        seen, out = set(), {}
        for name, tensor in state.items():
            key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
            if key not in seen:
                seen.add(key)
                out[name] = tensor
        return out


@dataclass
class LabelledCollator:
    """A generative batch (from `collator`) that also carries each piece's class: `true_class` (B,)."""

    collator: object  # DiffusionCollator or CausalCollator

    def reset(self) -> None:
        if hasattr(self.collator, "reset"):
            self.collator.reset()

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.collator(examples)
        batch["true_class"] = torch.tensor([int(e["label"]) for e in examples])
        return batch


class PerClassTrainer(ConditionalTrainer):
    """Trains `ClassModels` on `LabelledCollator` batches: the generative loss of each piece under its own
    class's model, plus `bayes_weight` times Bayes' rule over every class model's score of the piece (the
    unweighted sum over scored tokens, as `ConditionalTrainer` does, for the same reason). `eval_loss`
    is the generative part alone; `label_loss` / `label_accuracy` are logged in training and evaluation."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        nll = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=inputs["labels"])
        num_classes, b = nll.shape[:2]
        true = inputs["true_class"].to(nll.device)
        own = nll[true, torch.arange(b, device=nll.device)]  # (B, W) each piece under its own class's model
        row_nll = nll.sum(dim=2)  # (C, B)
        if self.causal:
            generative = own.sum() / (inputs["labels"][:, 1:] != -100).sum().clamp(min=1)
        else:
            weights = inputs["loss_weight"].to(nll.device).float()  # (B,)
            generative = (own.sum(dim=1) * weights).sum() / inputs["num_scored"].clamp(min=1)
            if model.training:
                scored = inputs["labels"] != -100
                rows = scored.nonzero()[:, 0]
                self._record_buckets(own.detach()[scored], rows, inputs["mask_rate"])
        # the Bayes-rule arithmetic of the conditional design, on rows (class c, piece b) in class-major order
        rows_in = {"true_class": true, "example": torch.arange(b, device=nll.device).repeat(num_classes),
                   "row_class": torch.arange(num_classes, device=nll.device).repeat_interleave(b)}
        bayes = self._bayes_rule(row_nll.reshape(-1), rows_in, model.training)
        loss = generative + self.bayes_weight * bayes if model.training else generative
        return (loss, {"nll": nll}) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation needs the loss only (the class-major NLL is no prediction Trainer can gather)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None
