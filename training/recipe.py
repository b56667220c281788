"""Train the whole bundle in one command: diffusion, its matched AR baseline, the continuous model, the classifier.

    python -m training.recipe --preset h200 --output-dir runs/h200            # one H200: bf16, about 8 minutes
    python -m training.recipe --preset h200 --output-dir runs/h200 --bundle   # ... and copy the results into dlm/models
    python -m training.recipe --preset toy --data corpus.txt --reviews reviews.csv --output-dir /tmp/toy   # CPU, seconds

Each stage runs the project's own trainer (`training.train_diffusion`, `train_ar --match`,
`train_continuous`, `train_classifier`) with the preset's sizes and budgets, then `training.card`
writes the recommended decoding into the diffusion model's card, and `--bundle` copies the four
results into the package within the 40 MB weights budget (`training.bundle`). A stage whose output
folder already holds a finished model is skipped, so an interrupted recipe continues where it
stopped (`--resume` resumes a stage's checkpoints too). `--dry-run` prints the commands.

Presets (the sizes are bounded by the 40 MB budget for all bundled weights, fp16; a GPU buys tokens, not
width): `cpu` is the 2-core recipe of the bundled models; `h200` spends one H200's minutes on many more
tokens at the same sizes, in bf16 with batches sized to the card (the data-constrained regime in which
masked diffusion keeps gaining from repeated data: Prabhudesai et al. 2025); `toy` checks the plumbing.
The corpora must be built first (`python -m training.corpus prose` and `reviews`, or carried in
$DLM_CACHE), since a GPU machine may have no network.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch


@dataclass(frozen=True)
class Preset:
    """One recipe's sizes and budgets. Steps are optimiser steps; batch is blocks per step."""

    hidden: int = 256  # width of every model (the AR model is matched to the diffusion model's parameters)
    layers: int = 4  # depth
    heads: int = 4  # attention heads
    intermediate: int = 704  # diffusion GeGLU width (704: a RoBERTa-1024's parameter count)
    vocab: int = 4096  # byte-level BPE trained on the corpus (shared by all three families)
    block: int = 256  # tokens per training block
    lm_steps: int = 1200  # diffusion and AR: the same steps, batch and block, so the same token budget
    lm_batch: int = 16  # blocks per step
    lm_lr: float = 1e-3  # peak learning rate (cosine after warm-up)
    lm_warmup: int = 100  # warm-up steps
    weighting: str = "uniform"  # diffusion loss weighting (training.collator.WEIGHTINGS)
    continuous_steps: int = 2400  # the embedding-space model
    continuous_batch: int = 32
    continuous_block: int = 128
    continuous_intermediate: int = 320  # GeGLU width of the continuous model (sized to the budget)
    classifier_design: str = "per-class"  # training.train_classifier.DESIGNS
    classifier_epochs: float = 2.0  # passes over the review pieces
    classifier_batch: int = 32
    classifier_lr: float = 3e-4
    eval_every: int = 300  # steps between held-out evaluations
    save_every: int = 100  # steps between checkpoints
    eval_blocks: int = 64  # held-out blocks per evaluation
    bf16: bool = False  # bf16 mixed precision (GPUs)
    threads: int | None = 1  # CPU threads per trainer (None: torch's default)
    decoding: dict = field(default_factory=lambda: {"remasking": "random", "temperature": 0.9, "top_p": 0.95})


PRESETS = {
    # the 2-core CPU recipe of the bundled models (one trainer per core when run side by side)
    "cpu": Preset(),
    # one H200 (141 GB): 64x the batch at 4x the rate; about 2 min per language model (with its
    # evaluations), 1.5 min continuous, 1.5 min for the classifier: 8 min with loading and cards
    "h200": Preset(lm_steps=3000, lm_batch=256, lm_lr=3e-3, lm_warmup=300, continuous_steps=3000, continuous_batch=512,
                   classifier_epochs=4.0, classifier_batch=256, classifier_lr=1e-3, eval_every=500, save_every=500,
                   eval_blocks=512, bf16=True, threads=None),
    # plumbing only: tiny models, a few steps (the test of this module)
    "toy": Preset(hidden=32, layers=1, heads=2, intermediate=64, vocab=300, block=32, lm_steps=4, lm_batch=4,
                  lm_warmup=1, continuous_steps=4, continuous_batch=4, continuous_block=32, continuous_intermediate=64,
                  classifier_epochs=0.01, classifier_batch=4, eval_every=4, save_every=4, eval_blocks=2),
}
BUNDLED_NAMES = {"diffusion": "default", "ar": "default-ar", "continuous": "default-continuous",
                 "classifier": "default-classifier"}
STAGES = ("diffusion", "ar", "continuous", "classifier", "card")


def commands(preset: Preset, out: Path, data: str, reviews: str, resume: bool) -> dict[str, tuple[str, list[str]]]:
    """Each stage's (module, argv), in order."""
    p = preset
    shared = ["--save-dtype", "float16", "--save-steps", str(p.save_every), "--eval-steps", str(p.eval_every)]
    shared += ["--bf16"] if p.bf16 else []
    shared += ["--threads", str(p.threads)] if p.threads else []
    shared += ["--resume"] if resume else []
    lm = ["--data", data, "--block-size", str(p.block), "--max-steps", str(p.lm_steps), "--batch-size", str(p.lm_batch),
          "--lr", str(p.lm_lr), "--warmup-steps", str(p.lm_warmup), "--eval-blocks", str(p.eval_blocks),
          "--logging-steps", str(max(1, p.eval_every // 6))]
    diffusion = out / "diffusion"
    return {
        "diffusion": ("training.train_diffusion", [
            "--output-dir", str(diffusion), "--vocab-size", str(p.vocab), "--hidden-size", str(p.hidden),
            "--layers", str(p.layers), "--heads", str(p.heads), "--intermediate-size", str(p.intermediate),
            "--weighting", p.weighting, *lm, *shared]),
        "ar": ("training.train_ar", ["--match", str(diffusion), "--output-dir", str(out / "ar"), *lm, *shared]),
        "continuous": ("training.train_continuous", [
            "--data", data, "--tokenizer", str(diffusion / "tokenizer"), "--output-dir", str(out / "continuous"),
            "--hidden-size", str(p.hidden), "--layers", str(p.layers), "--heads", str(p.heads),
            "--intermediate-size", str(p.continuous_intermediate), "--block-size", str(p.continuous_block),
            "--batch-size", str(p.continuous_batch), "--max-steps", str(p.continuous_steps), "--lr", str(p.lm_lr),
            "--warmup-steps", str(p.lm_warmup), "--eval-blocks", str(p.eval_blocks), *shared]),
        "classifier": ("training.train_classifier", [
            "--design", p.classifier_design, "--init", str(diffusion), "--data", reviews,
            "--output-dir", str(out / "classifier"), "--epochs", str(p.classifier_epochs),
            "--batch-size", str(p.classifier_batch), "--lr", str(p.classifier_lr), *shared]),
        "card": ("training.card", [str(diffusion), *[f"--{k.replace('_', '-')}={v}" for k, v in p.decoding.items()]]),
    }


def finished(stage: str, out: Path) -> bool:
    """A stage is done when its folder holds its final model (checkpoints alone do not count)."""
    folder = out / stage
    if stage == "classifier":
        return (folder / "classifier.json").is_file() and (folder / "README.md").is_file()
    return (folder / "model.safetensors").is_file() and (folder / "README.md").is_file()


def run_stage(module: str, argv: list[str]) -> None:
    import importlib

    code = importlib.import_module(module).main(argv)
    if code:
        raise SystemExit(f"{module} failed (exit status {code}): python -m {module} {shlex.join(argv)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.recipe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--data", default="prose", help="language-model text (training.train_diffusion --data)")
    parser.add_argument("--reviews", default="reviews", help="labelled texts for the classifier")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--resume", action="store_true", help="resume a stage's checkpoints")
    parser.add_argument("--bundle", action="store_true", help="copy the results into dlm/models (40 MB budget)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and stop")
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    if preset.bf16 and not torch.cuda.is_available() and not args.dry_run:
        print(f"error: preset {args.preset!r} trains in bf16 on a GPU, and none is visible", file=sys.stderr)
        return 2
    plan = commands(preset, args.output_dir, args.data, args.reviews, args.resume)
    for stage in STAGES:
        if stage not in args.stages:
            continue
        module, stage_argv = plan[stage]
        print(f"[recipe] {stage}: python -m {module} {shlex.join(stage_argv)}", flush=True)
        if args.dry_run:
            continue
        if stage != "card" and finished(stage, args.output_dir):
            print(f"[recipe] {stage}: finished in an earlier run, skipped", flush=True)
            continue
        run_stage(module, stage_argv)
    if args.bundle and not args.dry_run:
        from training.bundle import bundle

        for stage, name in BUNDLED_NAMES.items():
            bundle(args.output_dir / stage, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
