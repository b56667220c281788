"""transformers `Trainer`s for masked diffusion, continuous diffusion and the matched AR baseline.

`DiffusionTrainer` computes the weighted masked loss from `DiffusionCollator` batches,
    loss = sum_b w_b * sum_{i masked in b} CE_bi / (tokens the ELBO covers),
which with w_b = 1/p_b is a Monte-Carlo bound on the per-token negative log-likelihood (the logits from
`dlm.shifted.canvas_logits`, shifted for a model initialised from a causal LM), and logs the
unweighted masked cross-entropy per mask-rate bucket (0-10%, ..., 90-100%). Both trainers report
the held-out perplexity (`eval_perplexity` = exp(eval_loss): an ELBO bound for diffusion, exact for AR).
`ContinuousTrainer` trains `dlm.continuous` models (x0 MSE + rounding cross-entropy, no likelihood
bound, so no perplexity). Being `Trainer`s, they run unchanged under `accelerate launch` / `torchrun` on several GPUs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from transformers import Trainer

from dlm.shifted import canvas_logits, is_shifted

NUM_BUCKETS = 10  # mask-rate buckets for logging: 0-10%, ..., 90-100%


def bucket_name(i: int) -> str:
    return f"loss_mask_{i * 10:02d}_{(i + 1) * 10:03d}"


class TrainingAutocastMixin:
    """`cpu_bf16`: the training step's forward runs under bfloat16 autocast on the CPU (weights, optimizer and
    gradients stay float32; the backward follows the forward's dtypes), and evaluation stays float32, so held-out
    figures compare with float32 runs. On a GPU, `--bf16` goes through the Trainer (accelerate) instead."""

    cpu_bf16 = False

    def compute_loss_context_manager(self):
        stack = super().compute_loss_context_manager()
        if self.cpu_bf16 and self.model.training:
            stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16))
        return stack


class PerplexityMixin:
    """Adds `eval_perplexity` = exp(eval_loss) to every evaluation."""

    def evaluate(self, *args, **kwargs):
        metrics = super().evaluate(*args, **kwargs)
        key = f"{kwargs.get('metric_key_prefix', 'eval')}_loss"
        if key in metrics:
            metrics[key.replace("_loss", "_perplexity")] = math.exp(min(metrics[key], 50.0))
            self.log({key.replace("_loss", "_perplexity"): metrics[key.replace("_loss", "_perplexity")]})
        return metrics


class DiffusionTrainer(TrainingAutocastMixin, PerplexityMixin, Trainer):
    def __init__(self, *args, eval_collator=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_collator = eval_collator  # fixed masks and no prefix, so evaluations are comparable
        self._bucket_loss = torch.zeros(NUM_BUCKETS, dtype=torch.float64)
        self._bucket_tokens = torch.zeros(NUM_BUCKETS, dtype=torch.float64)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        weights = inputs["loss_weight"].float()  # (B,)
        # the sampler's and the likelihood's forward, so a shifted model (dlm.shifted) is trained as it is used;
        # `model` may be wrapped (DDP), `self.model` is not
        logits = canvas_logits(model, inputs["input_ids"], inputs["attention_mask"], shifted=is_shifted(self.model))
        masked = labels != -100  # (B, L)
        rows = masked.nonzero()[:, 0]  # sample of every masked token
        ce = F.cross_entropy(logits[masked].float(), labels[masked], reduction="none")  # (M,)
        loss = (ce * weights[rows]).sum() / inputs["num_scored"].clamp(min=1)
        if model.training:
            self._record_buckets(ce.detach(), rows, inputs["mask_rate"])
        return (loss, {"logits": logits}) if return_outputs else loss

    def _record_buckets(self, ce: torch.Tensor, rows: torch.Tensor, rates: torch.Tensor) -> None:
        bucket = (rates.to(ce.device) * NUM_BUCKETS).long().clamp(max=NUM_BUCKETS - 1)[rows]  # (M,)
        self._bucket_loss += torch.zeros(NUM_BUCKETS, device=ce.device).index_add_(0, bucket, ce).double().cpu()
        self._bucket_tokens += torch.bincount(bucket, minlength=NUM_BUCKETS).double().cpu()

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log: add the per-bucket masked cross-entropy since the last one
            for i in range(NUM_BUCKETS):
                if self._bucket_tokens[i] > 0:
                    logs[bucket_name(i)] = round(float(self._bucket_loss[i] / self._bucket_tokens[i]), 4)
            self._bucket_loss.zero_()
            self._bucket_tokens.zero_()
        super().log(logs, start_time)

    def evaluate(self, *args, **kwargs):
        if self.eval_collator is None:
            return super().evaluate(*args, **kwargs)
        train_collator, self.data_collator = self.data_collator, self.eval_collator
        self.eval_collator.reset()
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self.data_collator = train_collator


class LabelTrainer(TrainingAutocastMixin, Trainer):
    """The discriminative classifier's plain `Trainer` (cross-entropy on the label), with `--bf16` on a CPU."""


class CausalTrainer(TrainingAutocastMixin, PerplexityMixin, Trainer):
    """Plain next-token training; the model shifts the labels itself."""


class ContinuousTrainer(TrainingAutocastMixin, Trainer):
    """Trains `dlm.continuous.ContinuousDiffusionLM` (the model computes its own loss) and logs the
    two parts of the loss: the x0 mean squared error and the rounding cross-entropy, overall and per
    band of the diffusion step t (0-10% of T, ..., 90-100%), in training and evaluation alike."""

    def __init__(self, *args, eval_collator=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_collator = eval_collator  # the same t, noise and prompts at every evaluation
        self._sums = {True: torch.zeros(3, NUM_BUCKETS, dtype=torch.float64),  # training: mse, ce, count per band
                      False: torch.zeros(3, NUM_BUCKETS, dtype=torch.float64)}  # evaluation

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        num_steps = model.config.num_diffusion_steps
        bands = ((inputs["timesteps"] - 1) * NUM_BUCKETS // num_steps).clamp(max=NUM_BUCKETS - 1).cpu()
        sums = self._sums[model.training]
        sums[0].index_add_(0, bands, outputs.mse.double().cpu())
        sums[1].index_add_(0, bands, outputs.ce.double().cpu())
        sums[2].index_add_(0, bands, torch.ones(len(bands), dtype=torch.float64))
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def _summary(self, training: bool, prefix: str) -> dict[str, float]:
        mse, ce, count = self._sums[training]
        if count.sum() == 0:
            return {}
        logs = {f"{prefix}mse": float(mse.sum() / count.sum()), f"{prefix}ce": float(ce.sum() / count.sum())}
        for i in range(NUM_BUCKETS):
            if count[i] > 0:
                logs[f"{prefix}ce_t_{i * 10:02d}_{(i + 1) * 10:03d}"] = round(float(ce[i] / count[i]), 4)
        self._sums[training].zero_()
        return logs

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log: add the parts since the last one
            logs.update(self._summary(True, ""))
        super().log(logs, start_time)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation needs the loss only (there are no labels for Trainer to find)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def evaluate(self, *args, **kwargs):
        prefix = kwargs.get("metric_key_prefix", "eval") + "_"
        self._sums[False].zero_()
        train_collator = self.data_collator
        if self.eval_collator is not None:
            self.data_collator = self.eval_collator
            self.eval_collator.reset()
        try:
            metrics = super().evaluate(*args, **kwargs)
        finally:
            self.data_collator = train_collator
        parts = self._summary(False, prefix)
        metrics.update(parts)
        self.log(parts)
        return metrics
