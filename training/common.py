"""What the diffusion and AR trainers share: flags, output folders, data, tokenizer, saving."""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from training.data import DataError, load_texts, pack

CARD_FILE = "README.md"
RUN_FILE = "dlm_run.json"  # what the run was: its command and starting point at the start; everything at the end


class OutputDirError(ValueError):
    """The output folder cannot be used as asked."""


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--data", default="prose", help="'prose' (offline corpus), a .txt/.csv/.jsonl file or folder, or a Hub dataset")
    data.add_argument("--text-column", default="text")
    data.add_argument("--txt-sample-by", default="line", choices=["line", "paragraph", "document"])
    data.add_argument("--hub-config", help="configuration name of a Hub dataset (e.g. wikitext-2-raw-v1)")
    data.add_argument("--block-size", type=int, default=128, help="tokens per packed training block")
    data.add_argument("--eval-blocks", type=int, default=256, help="held-out blocks for the perplexity (0 = all)")

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--max-steps", type=int, default=2000)
    opt.add_argument("--batch-size", type=int, default=32, help="blocks per device per step")
    opt.add_argument("--grad-accum", type=int, default=1)
    opt.add_argument("--lr", type=float, default=1e-3)
    opt.add_argument("--warmup-steps", type=int, default=100)
    opt.add_argument("--weight-decay", type=float, default=0.01)
    opt.add_argument("--schedule", default="cosine", choices=["cosine", "wsd"],
                     help="learning rate after the warm-up: a cosine decay to 0 over the run, or warmup-stable-decay "
                          "(constant, then a cosine decay over the last --decay-steps), which keeps the weights from "
                          "before the decay in OUTPUT_DIR/stable: a later run continues from them (--init "
                          "OUTPUT_DIR/stable) at the same learning rate, without a fresh warm-up's setback")
    opt.add_argument("--decay-steps", type=int, help="wsd: steps of the final decay (default: a fifth of --max-steps)")
    opt.add_argument("--ema", type=_ema_decays, default=(), metavar="DECAY[,DECAY...]",
                     help="also keep an exponential moving average of the weights with this decay (e.g. 0.999; "
                          "0 = off), evaluated beside the weights at every evaluation, kept in each checkpoint "
                          "for --resume, and saved at the end as a model of its own in OUTPUT_DIR/ema; more decays "
                          "(0.999,0.9995) keep more averages, the others in OUTPUT_DIR/ema-DECAY")
    opt.add_argument("--ema-fresh", action="store_true",
                     help="with --ema and an --init that is itself a weight average (a run's ema/ folder): start a "
                          "new average, ramping up from the --init weights, instead of continuing that one with the "
                          "full decay from the first step")
    opt.add_argument("--seed", type=int, default=0)
    opt.add_argument("--bf16", action="store_true",
                     help="bfloat16 mixed precision: on a GPU through the Trainer; on a CPU, autocast in the training "
                          "step only (evaluation stays float32), about 1.6x faster where the CPU has AVX-512 BF16 or AMX")
    opt.add_argument("--threads", type=int, help="CPU threads for torch (default: all)")

    out = parser.add_argument_group("output")
    out.add_argument("--output-dir", required=True)
    out.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output-dir")
    out.add_argument("--overwrite", action="store_true", help="delete --output-dir and start over")
    out.add_argument("--save-steps", type=int, default=200, help="checkpoint every N steps")
    out.add_argument("--eval-steps", type=int, default=200)
    out.add_argument("--logging-steps", type=int, default=20)
    out.add_argument("--save-dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                     help="dtype of the final weights (float16 halves the size)")
    out.add_argument("--num-samples", type=int, default=5, help="unedited samples written into the model card")
    out.add_argument("--push-to-hub", metavar="REPO_ID", help="push the final model to this Hub repo")
    out.add_argument("--private", action="store_true", help="with --push-to-hub: make the repo private")


def _ema_decays(text: str) -> tuple[float, ...]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = [float("nan")]
    if values == [0.0]:
        return ()
    if not all(0.0 < v < 1.0 for v in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"--ema must be a decay in (0, 1), e.g. 0.999, several different ones "
                                         f"separated by commas, or 0 for none; got {text}")
    return tuple(values)


def prepare_output_dir(folder: str | Path, resume: bool, overwrite: bool) -> str | bool:
    """Make sure the folder can be used; returns Trainer's `resume_from_checkpoint` argument.

    An existing non-empty folder is resumed (--resume) or replaced (--overwrite), never silently
    overwritten.
    """
    folder = Path(folder)
    if resume and overwrite:
        raise OutputDirError("choose --resume or --overwrite, not both")
    if folder.exists() and not folder.is_dir():
        raise OutputDirError(f"output path {str(folder)!r} exists and is not a folder")
    has_content = folder.is_dir() and any(folder.iterdir())
    if has_content and overwrite:
        shutil.rmtree(folder)
    elif has_content and not resume:
        raise OutputDirError(
            f"output folder {str(folder)!r} is not empty; pass --resume to continue it or --overwrite to start over"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise OutputDirError(f"cannot write to output folder {str(folder)!r}: {error.strerror or error}") from error
    if resume:
        checkpoints = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
        # a run killed while saving leaves a checkpoint without its trainer state (written last): skip it
        complete = [c for c in checkpoints if (c / "trainer_state.json").is_file()]
        for partial in sorted(set(checkpoints) - set(complete)):
            print(f"skipping {partial.name}: it was not saved completely", file=sys.stderr)
        if complete:
            return str(complete[-1])
        print(f"no checkpoint in {folder} yet: starting from the beginning", file=sys.stderr)
    return False


def resolve_init(init: str | None) -> str | None:
    """A checkpoint to start from: a bundled name (`default`, `default-ar`) becomes its folder; a folder
    or a Hub id is passed on as it is."""
    if not init or Path(init).is_dir():
        return init
    from dlm.loading import BUNDLED_DIR, bundled_models

    return str(BUNDLED_DIR / init) if init in bundled_models() else init


def source_name(init: str | None) -> str | None:
    """How a starting checkpoint is named in records and cards: a bundled model by its name, anything
    else as given."""
    from dlm.loading import BUNDLED_DIR

    if init and Path(init).resolve().parent == BUNDLED_DIR.resolve():
        return Path(init).name
    return init


def prior_tokens(init: str | None) -> int:
    """Training tokens the starting checkpoint had already seen (from its run record; 0 if unknown)."""
    if not init or not Path(init).is_dir():
        return 0
    record = _read_json(Path(init) / RUN_FILE)
    return int(record.get("tokens_seen_total", record.get("tokens_seen", 0)))


TIME_FILE = "dlm_time.json"  # the wall-time ledger of a run's sessions (`TimeLedger`)


class TimeLedger(TrainerCallback):
    """Keeps the wall time of every training session of a run in `folder / TIME_FILE`, rewritten at
    every log and checkpoint: a session that is interrupted (a killed process, a session limit) still
    counts up to its last log, and a resumed run adds a session instead of forgetting earlier ones."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / TIME_FILE
        self.start = 0.0
        self.entry: dict | None = None
        self.earlier: list[dict] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()
        self.earlier = read_time_ledger(self.path.parent)
        self.entry = {"start_step": state.global_step, "end_step": state.global_step, "seconds": 0.0,
                      "hardware": hardware()}
        self._write(state)

    def on_log(self, args, state, control, **kwargs):
        self._write(state)

    def on_save(self, args, state, control, **kwargs):
        self._write(state)

    def on_train_end(self, args, state, control, **kwargs):
        self._write(state)

    def _write(self, state) -> None:
        if self.entry is None or not state.is_world_process_zero:
            return
        self.entry.update(end_step=state.global_step, seconds=time.perf_counter() - self.start)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, {"sessions": [*self.earlier, self.entry]})


def read_time_ledger(folder: str | Path) -> list[dict]:
    """The sessions `TimeLedger` recorded for the run in `folder` (oldest first; [] when none)."""
    return _read_json(Path(folder) / TIME_FILE).get("sessions", [])


def record_start(args, module: str) -> None:
    """Write the run record's first facts (command, starting checkpoint, tokens it had seen) before training,
    so that a run still in progress can be read (bench/learning_curve.py). Earlier sessions are kept."""
    folder = Path(args.output_dir)
    record = _read_json(folder / RUN_FILE)
    record.setdefault("command", command_line(module))
    base = getattr(args, "init", None) or getattr(args, "init_from_ar", None)
    record["base_model"] = source_name(base)
    record["start_tokens"] = prior_tokens(base)
    write_json(folder / RUN_FILE, record)


def run_cli(parser: argparse.ArgumentParser, run, argv: list[str] | None) -> int:
    """Parse, run, and turn bad input into one line on stderr and exit status 2."""
    args = parser.parse_args(argv)
    try:
        run(args)
    except (DataError, OutputDirError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def load_texts_for(args):
    return load_texts(args.data, text_column=args.text_column, txt_sample_by=args.txt_sample_by,
                      hub_config=args.hub_config)


def pack_splits(args, texts, tokenizer):
    """Train and held-out blocks packed with `tokenizer` (the held-out set capped at --eval-blocks)."""
    train = pack(texts.train, tokenizer, args.block_size)
    validation = pack(texts.validation, tokenizer, args.block_size)
    if args.eval_blocks and len(validation) > args.eval_blocks:
        validation = validation.select(range(args.eval_blocks))
    return train, validation


STABLE_DIR = "stable"  # --schedule wsd: the weights from before the decay


def decay_steps(args) -> int | None:
    """--schedule wsd: how many final steps decay the learning rate (None for cosine)."""
    if getattr(args, "schedule", "cosine") != "wsd":
        return None
    steps = args.decay_steps if args.decay_steps is not None else args.max_steps // 5
    if not 0 < steps <= args.max_steps - args.warmup_steps:
        raise DataError(f"--decay-steps must be in [1, {args.max_steps - args.warmup_steps}] "
                        f"(--max-steps minus --warmup-steps), got {steps}")
    return steps


def schedule_arguments(args) -> dict:
    """TrainingArguments for the learning-rate schedule --schedule asks for."""
    decay = decay_steps(args)
    if decay is None:
        return {"lr_scheduler_type": "cosine"}
    return {"lr_scheduler_type": "warmup_stable_decay",
            "lr_scheduler_kwargs": {"num_decay_steps": decay, "decay_type": "cosine"}}


class StableWeights(TrainerCallback):
    """--schedule wsd: save the model as it is when the decay begins into `folder / STABLE_DIR` (safetensors in
    the training precision, tokenizer, the run's `dlm` settings, and the tokens it has seen), so a later run
    can continue the stable phase from it and `dlm.load` reads it as the run's kind of model."""

    def __init__(self, folder: str | Path, step: int, tokenizer, start_tokens: int, tokens_per_step: int,
                 dlm_block: dict):
        self.folder, self.step, self.tokenizer = Path(folder) / STABLE_DIR, step, tokenizer
        self.start_tokens, self.tokens_per_step, self.dlm_block = start_tokens, tokens_per_step, dlm_block

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step != self.step or not state.is_world_process_zero:
            return
        tokens = self.step * self.tokens_per_step
        model.config.dlm = {**self.dlm_block, "training": {"steps": self.step, "tokens_seen": tokens,
                                                           "tokens_seen_total": self.start_tokens + tokens}}
        model.save_pretrained(self.folder, safe_serialization=True)
        self.tokenizer.save_pretrained(self.folder)
        write_json(self.folder / RUN_FILE, {"steps": self.step, "tokens_seen": tokens,
                                            "tokens_seen_total": self.start_tokens + tokens,
                                            "note": "the weights before the learning-rate decay (--schedule wsd)"})


EMA_DIR = "ema"  # --ema: the averaged weights, a model of their own
EMA_FILE = "ema.safetensors"  # --ema: the average inside each checkpoint, for --resume


def average_name(decay: float, first: bool) -> str:
    """The name of an --ema average: its folder, its checkpoint file (+ .safetensors) and its metrics' prefix.
    The first decay's is `ema`; the others' `ema-DECAY`."""
    return EMA_DIR if first else f"{EMA_DIR}-{decay:g}"


class EmaWeights(TrainerCallback):
    """--ema: an exponential moving average of the trained weights (float32), updated after every optimizer
    step with decay min(decay, (1 + n) / (10 + n)) at its n-th update, so the start weighs less than a
    fixed decay would give it. `continues` names the average the starting weights already are (a run's `ema/`
    as --init): this one goes on from it with the full decay from the first update instead of ramping, which
    would forget it within a few hundred noisy steps. It is evaluated beside the weights at every
    evaluation (`ema_loss`, `ema_perplexity` in the log), saved into each checkpoint (`EMA_FILE`) and read
    back from the one a run resumes, so an interrupted run keeps its average. `name` tells several averages
    apart (`average_name`): their files, folders and metrics; one added when a run resumes starts from the
    checkpoint's first average (`EMA_FILE`) and continues it at its own decay."""

    def __init__(self, trainer, decay: float, resume_from: str | bool, continues: str | None = None,
                 name: str = EMA_DIR):
        if not 0.0 < decay < 1.0:
            raise DataError(f"--ema must be a decay in (0, 1), e.g. 0.999; got {decay}")
        self.trainer, self.decay, self.resume_from, self.continues = trainer, decay, resume_from, continues
        self.name = name
        self.names: list[str] = []
        self.shadow: list[torch.Tensor] = []
        self.updates = 0
        self.metrics: dict = {}  # the average's latest evaluation (`ema_loss`, `ema_perplexity`, ...)

    def _parameters(self, model) -> list[torch.Tensor]:
        named = dict(model.named_parameters())
        return [named[name] for name in self.names]

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.names = [name for name, p in model.named_parameters() if p.requires_grad]
        self.shadow = [p.detach().float().clone() for p in self._parameters(model)]
        self.updates = 0
        saved = Path(self.resume_from) / f"{self.name}.safetensors" if self.resume_from else None
        seeded = saved is not None and not saved.is_file() and (saved.parent / EMA_FILE).is_file()
        if seeded:  # an average added on --resume: it goes on from the checkpoint's first one
            saved = saved.parent / EMA_FILE
            print(f"{self.name}: starting from {saved.parent.name}/{EMA_FILE} at the full decay {self.decay}",
                  file=sys.stderr)
        if saved and saved.is_file():
            from safetensors import safe_open

            with safe_open(str(saved), framework="pt") as f:
                missing = sorted(set(self.names) - set(f.keys()))
                if missing:
                    raise DataError(f"{saved} does not average this model's weights (no {missing[0]!r})")
                self.shadow = [f.get_tensor(name).float().to(p.device)
                               for name, p in zip(self.names, self._parameters(model))]
                meta = f.metadata() or {}
                self.updates = int(meta.get("updates", 0))
                self.continues = f"{saved.parent.name}/{EMA_FILE}" if seeded else meta.get("continues") or None
        elif saved:
            print(f"{saved.parent.name} has no average of the weights: --ema starts from its weights",
                  file=sys.stderr)

    @torch.no_grad()
    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.updates += 1
        decay = self.decay if self.continues else min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = [p.detach().float() for p in self._parameters(model)]
        torch._foreach_lerp_(self.shadow, current, 1.0 - decay)

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from safetensors.torch import save_file

        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            save_file({name: average.cpu() for name, average in zip(self.names, self.shadow)},
                      str(folder / f"{self.name}.safetensors"),
                      metadata={"updates": str(self.updates), "decay": str(self.decay),
                                "continues": self.continues or ""})

    def on_evaluate(self, args, state, control, **kwargs):
        # an average's own evaluation calls every average back: only the trainer's evaluation starts theirs
        if getattr(self.trainer, "_evaluating_average", False) or not self.shadow:
            return
        self.trainer._evaluating_average = True
        try:
            with self.applied(self.trainer.model):
                self.metrics = self.trainer.evaluate(metric_key_prefix=self.name)
        finally:
            self.trainer._evaluating_average = False

    @contextlib.contextmanager
    def applied(self, model):
        """The model holds the averaged weights inside the block and its own weights again after it."""
        params = self._parameters(model)
        own = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, average in zip(params, self.shadow):
                p.copy_(average)
        try:
            yield model
        finally:
            with torch.no_grad():
                for p, mine in zip(params, own):
                    p.copy_(mine)


def training_arguments(args, resume_from: str | bool, **overrides):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=args.output_dir,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        learning_rate=args.lr,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        **schedule_arguments(args),
        adam_beta2=0.98,
        max_grad_norm=1.0,
        eval_strategy="steps",
        eval_steps=args.eval_steps,
        save_strategy="steps",
        save_steps=args.save_steps,
        save_total_limit=2,
        logging_steps=args.logging_steps,
        logging_first_step=True,
        seed=args.seed,
        bf16=args.bf16 and torch.cuda.is_available(),  # on a CPU: `cpu_bf16` (training_autocast)
        report_to="none",
        remove_unused_columns=False,
        prediction_loss_only=True,
        dataloader_num_workers=0,
        include_num_input_tokens_seen="all",
        **overrides,
    )


def command_line(module: str) -> str:
    """The command that reproduces this run."""
    return f"python -m {module} " + shlex.join(sys.argv[1:])


def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    threads = torch.get_num_threads()
    return f"CPU, {threads} thread{'s' if threads > 1 else ''} ({platform.processor() or platform.machine()})"


def training_autocast(trainer, args) -> None:
    """--bf16 without a GPU: bfloat16 autocast in the training step (`TrainingAutocastMixin`), evaluation in float32."""
    if not getattr(args, "bf16", False) or torch.cuda.is_available():
        return
    trainer.cpu_bf16 = True
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        print("--bf16: this CPU has no native bfloat16 (AVX-512 BF16 or AMX); training runs, but likely slower "
              "than float32", file=sys.stderr)


def continues_average(model, args) -> str | None:
    """The --init checkpoint, when --ema continues its average: it is a weight average (its config's
    `dlm.training.ema`, which a run's `ema/` and `training.average` exports carry) and --ema-fresh is not given."""
    if getattr(args, "ema_fresh", False) or not getattr(args, "init", None):
        return None
    block = getattr(model.config, "dlm", None) or {}
    return source_name(args.init) if (block.get("training") or {}).get("ema") else None


def save_final(trainer, tokenizer, folder: str | Path, save_dtype: str, model=None) -> None:
    """The final model (`trainer.model` unless another is given) in `folder` (safetensors), cast to
    `save_dtype`, with its tokenizer."""
    model = trainer.model if model is None else model
    if save_dtype != "float32":
        model = model.to(getattr(torch, save_dtype))
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    for stale in ("training_args.bin",):
        (Path(folder) / stale).unlink(missing_ok=True)


def train_and_finish(trainer, tokenizer, args, resume_from, texts, *, kind, module, dlm_block, title) -> Path:
    """Train (resuming if asked), evaluate, save the final model with its settings and card, push."""
    from training.card import generate_samples, write_card

    folder = Path(args.output_dir)
    first_step = int(str(resume_from).rsplit("-", 1)[-1]) if resume_from else 0
    trainer.add_callback(TimeLedger(folder))
    tokens_per_step = args.batch_size * args.block_size * args.grad_accum * trainer.args.world_size
    base = getattr(args, "init", None) or getattr(args, "init_from_ar", None)  # the checkpoint the run started from
    if decay_steps(args):
        trainer.add_callback(StableWeights(folder, args.max_steps - decay_steps(args), tokenizer, prior_tokens(base),
                                           tokens_per_step, dlm_block))
    training_autocast(trainer, args)
    continues = continues_average(trainer.model, args)
    averages = [EmaWeights(trainer, decay, resume_from, continues=continues, name=average_name(decay, i == 0))
                for i, decay in enumerate(getattr(args, "ema", ()) or ())]
    block = getattr(trainer.model.config, "dlm", None)
    if block and "training" in block:  # the --init checkpoint's record: checkpoints of this run must not claim it
        trainer.model.config.dlm = {k: v for k, v in block.items() if k != "training"}
    for i, average in enumerate(averages):  # Trainer.add_callback warns about a second callback of a class
        trainer.add_callback(average) if i == 0 else trainer.callback_handler.callbacks.append(average)
    result = trainer.train(resume_from_checkpoint=resume_from or None)
    metrics = trainer.evaluate()  # with --ema, the averages are evaluated too (`ema_`, `ema-DECAY_` metrics)
    for average in averages:
        metrics = {**metrics, **average.metrics}
    state = trainer.state
    runtime = result.metrics["train_runtime"]
    # every session, interrupted ones included (the ledger); runs from before it kept completed ones only
    history = [{"steps": s["end_step"] - s["start_step"], "seconds": s["seconds"], "hardware": s["hardware"]}
               for s in read_time_ledger(folder)]
    if not history:
        history = _read_json(folder / RUN_FILE).get("sessions", [])
        history.append({"steps": state.global_step - first_step, "seconds": runtime, "hardware": hardware()})
    info = {
        "command": command_line(module),
        "data": texts.description,
        "datasets": [args.data] if args.data != "prose" else [],
        "base_model": source_name(base),
        "init_from_ar": source_name(getattr(args, "init_from_ar", None)),  # a diffusion model made from this causal LM's weights
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "steps": state.global_step,
        "tokens_seen": state.global_step * tokens_per_step,
        # a run started from an earlier checkpoint (--init, --init-from-ar) adds what that checkpoint had seen
        "start_tokens": prior_tokens(base),
        "tokens_seen_total": prior_tokens(base) + state.global_step * tokens_per_step,
        "wall_seconds": sum(s["seconds"] for s in history),
        "hardware": " + ".join(sorted({s["hardware"] for s in history})),
        "tokens_per_second": (state.global_step - first_step) * tokens_per_step / max(runtime, 1e-9),
        "perplexity": metrics.get("eval_perplexity"),  # None for continuous models: their loss bounds no likelihood
        "eval_loss": metrics["eval_loss"],
        "evaluation": {k.removeprefix("eval_"): v for k, v in metrics.items()
                       if k.startswith("eval_") and not k.endswith(("runtime", "per_second"))},
        "block_size": args.block_size,
        "schedule": ({"type": "wsd", "decay_steps": decay_steps(args), "stable": STABLE_DIR} if decay_steps(args)
                     else {"type": "cosine"}),
        "sessions": history,
        "loss_by_mask_rate": mask_bucket_losses(state.log_history),
        "repo_id": args.push_to_hub,
    }
    described = [{"decay": a.decay, "updates": a.updates, "folder": a.name, "eval_loss": metrics.get(f"{a.name}_loss"),
                  "perplexity": metrics.get(f"{a.name}_perplexity"),
                  "continues": a.continues}
                 for a in averages]
    if described:
        info["ema"] = {**described[0], **({"others": described[1:]} if described[1:] else {})}
    trainer.model.config.dlm = {**dlm_block, "training": {k: info[k] for k in
                                ("command", "data", "steps", "tokens_seen", "tokens_seen_total", "perplexity",
                                 "block_size")
                                if info[k] is not None}}
    info["settings"] = dlm_block.get("sampler", {})
    info["dlm"] = dlm_block
    for average in averages:  # before save_final casts the model
        save_ema_model(trainer, tokenizer, average, folder / average.name, args.save_dtype, info, metrics, kind=kind,
                       title=title, num_samples=args.num_samples)
    save_final(trainer, tokenizer, folder, args.save_dtype)
    samples = generate_samples(folder, args.num_samples)
    info["samples"] = samples
    write_json(folder / RUN_FILE, info)
    write_card(folder, title=title, kind=kind, info=info, samples=samples)
    print(json.dumps({k: info[k] for k in ("steps", "tokens_seen", "wall_seconds", "tokens_per_second", "perplexity",
                                           "eval_loss")}))
    if args.push_to_hub:
        from training.push import push

        url = push(folder, args.push_to_hub, private=args.private)
        print(f"pushed to {url}")
    return folder


def save_ema_model(trainer, tokenizer, ema: EmaWeights, folder: Path, save_dtype: str, info: dict, metrics: dict,
                   *, kind: str, title: str, num_samples: int) -> None:
    """The averaged weights as a model of their own in `folder`: config (with the run's `dlm` settings and the
    average's held-out figures), tokenizer, run record and card, as a run's final model has, so `dlm.load`,
    `training.card` and `training.bundle` take it like any run."""
    from training.card import generate_samples, write_card

    with ema.applied(trainer.model):
        model = copy.deepcopy(trainer.model)
    prefix = f"{ema.name}_"
    record = {**info, "perplexity": metrics.get(f"{prefix}perplexity"), "eval_loss": metrics.get(f"{prefix}loss"),
              "evaluation": {k.removeprefix(prefix): v for k, v in metrics.items()
                             if k.startswith(prefix) and not k.endswith(("runtime", "per_second"))},
              "note": f"exponential moving average of the weights (decay {ema.decay}, {ema.updates} updates)"}
    record.pop("ema", None)
    model.config.dlm = {**trainer.model.config.dlm,
                        "training": {**trainer.model.config.dlm.get("training", {}),
                                     **({"perplexity": record["perplexity"]} if record["perplexity"] else {}),
                                     "ema": ema.decay}}
    save_final(trainer, tokenizer, folder, save_dtype, model=model)
    record["samples"] = generate_samples(folder, num_samples)
    write_json(folder / RUN_FILE, record)
    write_card(folder, title=title + " (weight average)", kind=kind, info=record, samples=record["samples"])


def mask_bucket_losses(log_history: list[dict]) -> dict:
    """The masked cross-entropy per mask-rate bucket in the first and the last training log."""
    logs = [h for h in log_history if any(k.startswith("loss_mask_") for k in h)]
    if not logs:
        return {}
    pick = lambda h: {k.removeprefix("loss_mask_"): v for k, v in h.items() if k.startswith("loss_mask_")}  # noqa: E731
    return {"first_step": logs[0]["step"], "first": pick(logs[0]), "last_step": logs[-1]["step"], "last": pick(logs[-1])}


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def write_json(path: Path, record: dict) -> None:
    """Write `record` to `path` whole or not at all: into a temporary file beside it, then renamed over
    it, so a run killed mid-write (these files are rewritten at every log) leaves the last complete
    version for --resume to read, never a truncated one."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(record, indent=2))
    os.replace(partial, path)
