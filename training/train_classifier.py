"""Train a text classifier: generative (diffusion or AR likelihoods) or discriminative.

    # one diffusion model per class, each fine-tuned from the bundled model on its class's texts
    python -m training.train_classifier --design per-class --init default --output-dir runs/clf-per-class
    # the same class models trained together, with Bayes' rule over their scores of each piece (training.joint)
    python -m training.train_classifier --design per-class --bayes-weight 1 --init default --output-dir runs/clf-joint
    # one diffusion model conditioned on a verbalised label prompt ("positive:") that is never masked,
    # the prompt dropped for 10% of the pieces (so it also scores p(text)), trained with Bayes' rule as well
    python -m training.train_classifier --design conditional --init default --output-dir runs/clf-conditional
    # the same with the matched AR model: an AR generative classifier
    python -m training.train_classifier --design conditional --init default-ar --output-dir runs/clf-ar
    # the discriminative baseline: the same encoder with a classification head
    python -m training.train_classifier --design discriminative --init default --output-dir runs/clf-discriminative

Data: `--data reviews` (the offline movie reviews, split by the project's rule), or a .csv / .jsonl
file or folder, or a Hub dataset, with a text and a label column. Every text is cut into pieces of at
most --max-tokens tokens that keep its label, so long reviews are used whole. The output folder holds
`classifier.json` (design, labels, priors, prompts, null prompt, calibration) and one model folder per
class (or one model); `dlm.classify.load_classifier(FOLDER)` turns it into a classifier, and the temperature
that calibrates it is fitted on the validation split at the end. --resume continues an interrupted
run (finished class models are kept).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from argparse import Namespace
from pathlib import Path

from training import common
from training.data import DataError

DESIGNS = ("per-class", "conditional", "discriminative")
CONFIG_FILE = "classifier.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.train_classifier", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--design", choices=DESIGNS, help="required unless --calibrate-only")
    parser.add_argument("--init", default="default",
                        help="checkpoint to start from: bundled name, folder or Hub id; a per-class classifier folder "
                             "continues each class model from its own weights")
    parser.add_argument("--trust-remote-code", action="store_true")
    data = parser.add_argument_group("data")
    data.add_argument("--data", default="reviews", help="'reviews' (offline movie reviews), a .csv/.jsonl file or folder, or a Hub dataset")
    data.add_argument("--text-column", default="text")
    data.add_argument("--label-column", default="label")
    data.add_argument("--hub-config", help="configuration name of a Hub dataset")
    data.add_argument("--max-tokens", type=int, default=128, help="tokens per training piece and per scored piece")
    data.add_argument("--max-pieces", type=int,
                      help="generative designs: a text is scored as up to this many consecutive pieces "
                           "(their log-likelihoods add; default 8); the discriminative one reads its first piece; "
                           "with --calibrate-only, rewrites the classifier's own setting before calibrating")
    data.add_argument("--truncation", choices=["head+tail", "head"],
                      help="generative designs: a text longer than --max-pieces is read as its first and last pieces "
                           "(head+tail, the default: a review's verdict is usually at its end) or its first; with "
                           "--calibrate-only, rewrites the classifier's own setting before calibrating")
    data.add_argument("--prompt-template", default="{label}:", help="conditional design: the label prompt")
    data.add_argument("--null-prompt", default="",
                      help="conditional design: the prompt of the unconditional model p(text) ('' = the framing alone)")
    data.add_argument("--label-dropout", type=float, default=0.1,
                      help="conditional design: share of pieces trained under the null prompt instead of their label's")
    data.add_argument("--bayes-weight", type=float,
                      help="weight of the Bayes'-rule cross-entropy over every label's score of a piece (0 = maximum "
                           "likelihood alone). Conditional design: default 1. Per-class design: default 0 (each class "
                           "model trained alone on its class's texts); above 0 the class models train together, "
                           "every piece scored by all of them with the same masks (training.joint)")
    data.add_argument("--bayes-temperature", type=float, default=1.0,
                      help="Bayes' rule over the scores divided by this (> 0): a one-sample score gap is noisy, and at "
                           "1 the cross-entropy asks every masked sample for confident odds")
    data.add_argument("--contrast-min-rate", type=float, default=0.0,
                      help="conditional design with --bayes-weight > 0: mask labelled pieces at rates in [this, 1] only, "
                           "where the label decides (default 0: all rates)")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=float, default=1.0, help="passes over the training pieces (per class model)")
    opt.add_argument("--max-steps", type=int, help="optimiser steps (overrides --epochs)")
    opt.add_argument("--batch-size", type=int, default=32)
    opt.add_argument("--grad-accum", type=int, default=1)
    opt.add_argument("--lr", type=float, default=3e-4)
    opt.add_argument("--warmup-steps", type=int, default=30)
    opt.add_argument("--weight-decay", type=float, default=0.01)
    opt.add_argument("--freeze-layers", type=int, default=0, metavar="N",
                     help="keep the token embeddings (and an output layer tied to them) and the first N transformer "
                          "layers at the base's weights, so per-class models differ only above them")
    opt.add_argument("--weighting", default="elbo", choices=["elbo", "uniform"], help="diffusion loss weighting")
    opt.add_argument("--seed", type=int, default=0)
    opt.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision (on a CPU: the training step only)")
    opt.add_argument("--threads", type=int)
    out = parser.add_argument_group("output")
    out.add_argument("--output-dir", required=True)
    out.add_argument("--resume", action="store_true")
    out.add_argument("--overwrite", action="store_true")
    out.add_argument("--save-steps", type=int, default=100)
    out.add_argument("--eval-steps", type=int, default=100)
    out.add_argument("--logging-steps", type=int, default=20)
    out.add_argument("--eval-pieces", type=int, default=256, help="held-out pieces for the training-time loss")
    out.add_argument("--save-dtype", default="float16", choices=["float32", "float16", "bfloat16"])
    out.add_argument("--calibration-texts", type=int, default=600,
                     help="validation texts the calibration temperature is fitted on (0 = all, -1 = skip)")
    out.add_argument("--scoring", type=_scoring, metavar="ROUND:MAX:MARGIN:MASKS",
                     help="a masked classifier's Monte-Carlo budget, written to classifier.json and used for "
                          "calibration and by every user, e.g. 4:24:2:tiled (default: the library's 8:32:3:tiled)")
    out.add_argument("--calibrate-only", action="store_true",
                     help="refit the temperature of the finished classifier in --output-dir and rewrite its card")
    out.add_argument("--push-to-hub", metavar="REPO_ID")
    out.add_argument("--private", action="store_true")
    return parser


# ---- data --------------------------------------------------------------------------------------------


def load_labelled(source: str, text_column: str = "text", label_column: str = "label",
                  hub_config: str | None = None) -> tuple[dict[str, list[tuple[str, str]]], str]:
    """{split: [(text, label), ...]} for train / validation / test (those present), and a description."""
    import datasets

    description = None
    if source == "reviews":
        from training.corpus import build_reviews

        source, description = str(build_reviews()), "the dlm offline movie reviews (Pang & Lee 2004/2005, Hutto & Gilbert 2014)"
    path = Path(source).expanduser()
    if path.is_file() or path.is_dir():
        from training.data import _load_local

        splits = _load_local(path, "line")
        description = description or f"local files {path.name}"
    else:
        try:
            splits = datasets.load_dataset(source, hub_config)
        except Exception as error:  # datasets raises many types
            raise DataError(f"cannot load dataset {source!r}: not a local file or folder, and the Hub said: {error}") from error
        description = f"Hugging Face dataset {source}"
    if "train" not in splits:
        raise DataError(f"dataset {source!r} has no 'train' split; it has {sorted(splits)}")
    out = {}
    for name, split in splits.items():
        for column in (text_column, label_column):
            if column not in split.column_names:
                raise DataError(f"dataset {source!r} has no column {column!r}; its columns are {split.column_names}")
        feature = split.features[label_column]
        names = getattr(feature, "names", None)  # a ClassLabel: integers with names
        rows = []
        for text, label in zip(split[text_column], split[label_column]):
            if isinstance(text, str) and text.strip() and label is not None and str(label).strip():
                rows.append((text, names[label] if names else str(label).strip()))
        out[{"valid": "validation"}.get(name, name)] = rows
    if "validation" not in out:  # hold out by the project's split rule
        from training.corpus import split_of

        rows = out["train"]
        out["train"] = [r for r in rows if split_of(r[0]) == "train"]
        out["validation"] = [r for r in rows if split_of(r[0]) != "train"]
    if not out["train"] or not out["validation"]:
        raise DataError(f"dataset {source!r} needs labelled texts in both the train and validation splits")
    return out, description


def pieces(tokenizer, text: str, max_tokens: int, min_tokens: int = 8) -> list[list[int]]:
    """The text's tokens cut into pieces of at most `max_tokens` (a short tail joins no piece)."""
    from dlm.generation import encode

    ids = encode(tokenizer, text)
    out = [ids[i : i + max_tokens] for i in range(0, len(ids), max_tokens)]
    return [p for p in out if len(p) >= min_tokens] or out[:1]


def examples(tokenizer, rows, labels, design: str, kind: str, max_tokens: int) -> list[dict]:
    """Training examples: the framing stays clean and the piece is learned. The conditional design's
    examples are bare pieces: `training.conditional.ConditionalCollator` adds framing and prompt."""
    from dlm.generation import special_framing

    if kind == "causal":
        prefix, suffix = [tokenizer.bos_token_id], [tokenizer.eos_token_id]
    else:
        prefix, suffix = special_framing(tokenizer)
    out = []
    for text, label in rows:
        for piece in pieces(tokenizer, text, max_tokens):
            if design == "conditional":
                out.append({"piece": piece, "length": len(piece), "label": labels.index(label)})
                continue
            ids = prefix + piece + suffix
            example = {"input_ids": ids, "length": len(ids), "label": labels.index(label)}
            if design != "discriminative":
                example["clean_prefix"] = len(prefix)
                example["clean_suffix"] = len(suffix) if kind == "masked" else 0
            out.append(example)
    return out


def conditional_collator(tokenizer, kind: str, prompts: list[list[int]], null_prompt: list[int], args,
                         seed: int | None = None, label_dropout: float | None = None):
    """The batch of the conditional design, framed exactly as `dlm.classify` scores a text (`framing`):
    a masked model's rows are [framing] prompt piece [framing], a causal model's BOS prompt piece."""
    from dlm.classify import framing
    from training.conditional import ConditionalCollator

    prefix, suffix = framing(tokenizer, kind)
    mask_id = tokenizer.mask_token_id if kind != "causal" else None
    return ConditionalCollator(prompts, null_prompt, prefix, suffix, tokenizer.pad_token_id, mask_id,
                               label_dropout=args.label_dropout if label_dropout is None else label_dropout,
                               contrast=args.bayes_weight > 0 or seed is not None,
                               contrast_min_rate=args.contrast_min_rate if args.bayes_weight > 0 else 0.0,
                               weighting=args.weighting, seed=seed)


# ---- training ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    return common.run_cli(build_parser(), run, argv)


def run(args) -> Path:
    from transformers import AutoConfig, AutoTokenizer, set_seed

    from dlm.classify.classifiers import MAX_PIECES, bundled_classifiers
    from dlm.loading import BUNDLED_DIR, detect_kind, resolve

    common.set_threads(args.threads)
    folder = Path(args.output_dir)
    if args.calibrate_only:
        if not (folder / CONFIG_FILE).is_file():
            raise DataError(f"{str(folder)!r} has no {CONFIG_FILE}: train the classifier first")
        splits, _ = load_labelled(args.data, args.text_column, args.label_column, args.hub_config)
        if args.scoring or args.max_pieces is not None or args.truncation:
            spec = json.loads((folder / CONFIG_FILE).read_text())
            if args.scoring:
                _set_scoring(spec, args.scoring)
            if args.max_pieces is not None:
                _set_max_pieces(spec, args.max_pieces)
            if args.truncation:
                _set_truncation(spec, args.truncation)
            (folder / CONFIG_FILE).write_text(json.dumps(spec, indent=2))
        calibrate_folder(folder, splits["validation"], max(args.calibration_texts, 0), args.seed)
        write_card(folder)
        return folder
    if args.design is None:
        raise DataError("give --design (per-class, conditional or discriminative)")
    resuming = args.resume and folder.is_dir()
    common.prepare_output_dir(folder, args.resume, args.overwrite)
    set_seed(args.seed)
    init = str(BUNDLED_DIR / args.init) if args.init in bundled_classifiers() else args.init  # continue its models
    init = init if (Path(init) / CONFIG_FILE).is_file() else resolve(init)
    first = init
    if (Path(init) / CONFIG_FILE).is_file():  # a classifier folder: its (first) model gives kind and tokenizer
        first = str(Path(init) / sorted(json.loads((Path(init) / CONFIG_FILE).read_text())["models"].values())[0])
    config = AutoConfig.from_pretrained(first, trust_remote_code=args.trust_remote_code)
    kind = (getattr(config, "dlm", None) or {}).get("kind") or detect_kind(config)
    depth = getattr(config, "num_hidden_layers", None)
    if depth is not None and not 0 <= args.freeze_layers <= depth:  # before the data is read
        raise DataError(f"--freeze-layers must be in [0, {depth}] for this model, got {args.freeze_layers}")
    tokenizer = AutoTokenizer.from_pretrained(first, trust_remote_code=args.trust_remote_code)
    if tokenizer.pad_token_id is None:
        raise DataError(f"the tokenizer of {args.init!r} has no padding token")
    splits, description = load_labelled(args.data, args.text_column, args.label_column, args.hub_config)
    labels = sorted({label for _, label in splits["train"]})
    if len(labels) < 2:
        raise DataError(f"the training split has {len(labels)} label(s) {labels}; a classifier needs at least two")
    if (Path(init) / CONFIG_FILE).is_file():
        continued = json.loads((Path(init) / CONFIG_FILE).read_text())
        if args.design != continued["design"] or sorted(continued["labels"]) != labels:
            raise DataError(f"{args.init!r} is a {continued['design']} classifier of {sorted(continued['labels'])}; "
                            f"it can only be continued as one ({args.design} of {labels} asked)")
    counts = [sum(label == c for _, label in splits["train"]) for c in labels]
    if not 0 <= args.label_dropout <= 1:
        raise DataError(f"--label-dropout must be in [0, 1], got {args.label_dropout}")
    if args.bayes_weight is None:
        args.bayes_weight = 1.0 if args.design == "conditional" else 0.0
    if args.bayes_weight < 0:
        raise DataError(f"--bayes-weight must be >= 0, got {args.bayes_weight}")
    if args.bayes_weight > 0 and args.design == "discriminative":
        raise DataError("--bayes-weight is for the generative designs; the discriminative one is trained on labels alone")
    if not args.bayes_temperature > 0:
        raise DataError(f"--bayes-temperature must be > 0, got {args.bayes_temperature}")
    joint = args.design == "per-class" and args.bayes_weight > 0
    if args.max_pieces is not None and args.max_pieces < 1:
        raise DataError(f"--max-pieces must be >= 1, got {args.max_pieces}")
    if not 0 <= args.contrast_min_rate <= 1:
        raise DataError(f"--contrast-min-rate must be in [0, 1], got {args.contrast_min_rate}")
    spec = {
        "format": 1,
        "design": args.design,
        "family": "discriminative" if args.design == "discriminative" else kind,
        "labels": labels,
        "priors": [n / sum(counts) for n in counts],
        "prompts": [args.prompt_template.format(label=c) for c in labels] if args.design == "conditional" else None,
        # conditional design: the unconditional prompt (scores p(text)), and how the model was trained
        **({"null_prompt": args.null_prompt, "label_dropout": args.label_dropout, "bayes_weight": args.bayes_weight,
            "contrast_min_rate": args.contrast_min_rate} if args.design == "conditional" else {}),
        **({"bayes_weight": args.bayes_weight} if joint else {}),  # per-class models trained together
        **({"freeze_layers": args.freeze_layers} if args.freeze_layers else {}),
        **({"bayes_temperature": args.bayes_temperature}
           if args.bayes_weight > 0 and args.bayes_temperature != 1 else {}),
        "models": ({c: _safe_name(c) for c in labels} if args.design == "per-class" else {"*": "model"}),
        "max_tokens": args.max_tokens,
        **({"max_pieces": args.max_pieces or MAX_PIECES, "truncation": args.truncation or "head+tail"}
           if args.design != "discriminative" else {}),
        "temperature": 1.0,
        "training": {"command": common.command_line("training.train_classifier"), "data": description,
                     "base_model": args.init, "texts": {s: len(r) for s, r in splits.items()},
                     "class_counts": dict(zip(labels, counts)), "hardware": common.hardware()},
    }
    if args.scoring:
        _set_scoring(spec, args.scoring)
    if resuming and (folder / CONFIG_FILE).is_file():
        spec["training"]["sessions"] = json.loads((folder / CONFIG_FILE).read_text())["training"].get("sessions", [])
    started = time.perf_counter()
    jobs = [(c, [r for r in splits["train"] if r[1] == c], [r for r in splits["validation"] if r[1] == c])
            for c in labels] if args.design == "per-class" else [("*", splits["train"], splits["validation"])]
    results = {}
    if joint:
        jobs = []  # one run trains every class model
        results = train_joint(args, init, tokenizer, kind, labels, spec, splits, folder)
    for key, train_rows, val_rows in jobs:
        target = folder / spec["models"][key]
        if (target / "model.safetensors").is_file():
            print(f"{target} is already trained; keeping it")
            results[key] = json.loads((target / "dlm_train.json").read_text()) if (target / "dlm_train.json").is_file() else {}
            continue
        train, validation, steps = piece_datasets(args, tokenizer, labels, kind, train_rows, val_rows)
        print(f"training {args.design} model {key!r}: {len(train):,} pieces from {len(train_rows):,} texts, {steps} steps")
        start = init
        if args.design == "per-class" and (Path(init) / CONFIG_FILE).is_file():  # continue a per-class classifier
            start = str(Path(init) / json.loads((Path(init) / CONFIG_FILE).read_text())["models"][key])
        results[key] = train_one(args, start, tokenizer, kind, labels, spec, train, validation, target, steps)
    seconds = time.perf_counter() - started
    spec["training"].setdefault("sessions", []).append({"seconds": seconds, "hardware": common.hardware()})
    # the models' own ledgers count sessions that were interrupted before this file was written
    trained = sum(r.get("seconds", 0) for r in results.values())
    spec["training"]["wall_seconds"] = max(sum(s["seconds"] for s in spec["training"]["sessions"]), trained)
    if (Path(init) / CONFIG_FILE).is_file():  # continued from a classifier: its training counts too
        earlier = json.loads((Path(init) / CONFIG_FILE).read_text())["training"]
        spec["training"]["continued_from"] = earlier
        spec["training"]["wall_seconds"] += earlier.get("wall_seconds", 0)
    spec["training"]["models"] = results
    (folder / CONFIG_FILE).write_text(json.dumps(spec, indent=2))
    if args.calibration_texts >= 0:
        calibrate_folder(folder, splits["validation"], args.calibration_texts, args.seed)
    write_card(folder)
    print(json.dumps({k: spec["training"][k] for k in ("wall_seconds", "models")}, indent=1))
    if args.push_to_hub:
        from training.push import push

        print(f"pushed to {push(folder, args.push_to_hub, private=args.private)}")
    return folder


def piece_datasets(args, tokenizer, labels, kind, train_rows, val_rows):
    """The training and held-out pieces (datasets) of one run, and its optimiser steps."""
    import datasets

    train = datasets.Dataset.from_list(examples(tokenizer, train_rows, labels, args.design, kind, args.max_tokens))
    validation = examples(tokenizer, val_rows, labels, args.design, kind, args.max_tokens)
    random.Random(args.seed).shuffle(validation)  # the files are ordered by source: sample all of them
    validation = datasets.Dataset.from_list(validation[: args.eval_pieces] if args.eval_pieces else validation)
    steps = args.max_steps or max(1, math.ceil(args.epochs * len(train) / (args.batch_size * args.grad_accum)))
    return train, validation, steps


def language_model(init: str, kind: str, load: dict):
    """A causal LM, or a masked one (a shifted, AR-initialised base too), in float32 for training."""
    from transformers import AutoModelForCausalLM

    from dlm.loading import masked_model_from_pretrained

    return AutoModelForCausalLM.from_pretrained(init, **load) if kind == "causal" else masked_model_from_pretrained(init, **load)


def generative_collators(tokenizer, kind: str, args):
    """(training, evaluation) collators of a plain generative run: fresh masks in training, fixed ones
    (and the ELBO's weights) in evaluation, so evaluations are comparable."""
    from training.collator import CausalCollator, DiffusionCollator

    if kind == "causal":
        return CausalCollator(tokenizer.pad_token_id), CausalCollator(tokenizer.pad_token_id)
    return (DiffusionCollator(tokenizer.mask_token_id, tokenizer.pad_token_id, weighting=args.weighting, prefix_fraction=0.0),
            DiffusionCollator(tokenizer.mask_token_id, tokenizer.pad_token_id, weighting="elbo", prefix_fraction=0.0,
                              seed=1234))


def train_one(args, init, tokenizer, kind, labels, spec, train, validation, target: Path, steps: int) -> dict:
    """Fine-tune one model into `target` (resuming its checkpoints), saved in --save-dtype."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from dlm.generation import encode
    from training.collator import LabelCollator
    from training.conditional import ConditionalTrainer
    from training.trainers import CausalTrainer, DiffusionTrainer, LabelTrainer

    num_labels = len(labels)
    target.mkdir(parents=True, exist_ok=True)
    resume_from = common.prepare_output_dir(target, resume=True, overwrite=False)
    run_args = Namespace(**{**vars(args), "output_dir": str(target), "max_steps": steps})
    training_args = common.training_arguments(run_args, resume_from, train_sampling_strategy="group_by_length")
    load = {"trust_remote_code": args.trust_remote_code, "use_safetensors": True, "dtype": torch.float32}
    if args.design == "discriminative":
        model = AutoModelForSequenceClassification.from_pretrained(
            init, num_labels=num_labels, id2label=dict(enumerate(labels)), label2id={c: i for i, c in enumerate(labels)}, **load)
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        trainer = LabelTrainer(model=model, args=training_args, data_collator=LabelCollator(tokenizer.pad_token_id),
                               train_dataset=train, eval_dataset=validation, processing_class=tokenizer)
    elif args.design == "conditional":
        model = language_model(init, kind, load)
        prompts = [encode(tokenizer, p) for p in spec["prompts"]]
        null_prompt = encode(tokenizer, spec["null_prompt"])
        collator = conditional_collator(tokenizer, kind, prompts, null_prompt, args)
        eval_collator = conditional_collator(tokenizer, kind, prompts, null_prompt, args, seed=1234, label_dropout=0.0)
        trainer = ConditionalTrainer(model=model, args=training_args, data_collator=collator, train_dataset=train,
                                     eval_dataset=validation, processing_class=tokenizer, eval_collator=eval_collator,
                                     log_priors=[math.log(p) for p in spec["priors"]], bayes_weight=args.bayes_weight,
                                     bayes_temperature=args.bayes_temperature, causal=kind == "causal")
    elif kind == "causal":
        model = language_model(init, kind, load)
        trainer = CausalTrainer(model=model, args=training_args, data_collator=generative_collators(tokenizer, kind, args)[0],
                                train_dataset=train, eval_dataset=validation, processing_class=tokenizer)
    else:
        model = language_model(init, kind, load)
        collator, eval_collator = generative_collators(tokenizer, kind, args)
        trainer = DiffusionTrainer(model=model, args=training_args, data_collator=collator, train_dataset=train,
                                   eval_dataset=validation, processing_class=tokenizer, eval_collator=eval_collator)
    if args.freeze_layers:
        freeze_lower(model, args.freeze_layers)
    trainer.add_callback(common.TimeLedger(target))
    common.training_autocast(trainer, args)
    result = trainer.train(resume_from_checkpoint=resume_from or None)
    metrics = trainer.evaluate()
    common.save_final(trainer, tokenizer, target, args.save_dtype)
    for checkpoint in target.glob("checkpoint-*"):
        import shutil

        shutil.rmtree(checkpoint)
    sessions = common.read_time_ledger(target)  # every session of this model, interrupted ones included
    seconds = sum(s["seconds"] for s in sessions) if sessions else result.metrics["train_runtime"]
    info = {"steps": trainer.state.global_step, "pieces": len(train), "seconds": seconds,
            "eval_loss": metrics.get("eval_loss"), "parameters": sum(p.numel() for p in model.parameters()),
            "trained_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    if "eval_label_accuracy" in metrics:  # conditional design: the one-sample Bayes decision on held-out pieces
        info["eval_label_accuracy"] = metrics["eval_label_accuracy"]
    (target / "dlm_train.json").write_text(json.dumps(info, indent=2))
    return info


def freeze_lower(model, layers: int) -> int:
    """Freeze the input embeddings (an output layer tied to them too) and the first `layers` transformer
    layers; returns the parameters left to train. The layers are the model's one ModuleList with
    config.num_hidden_layers entries (ModernBERT's `layers`, BERT's `encoder.layer`, GPT-2's `h`)."""
    import torch

    total = model.config.num_hidden_layers
    if not 0 <= layers <= total:
        raise DataError(f"--freeze-layers must be in [0, {total}] for this model, got {layers}")
    stacks = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == total]
    if len(stacks) != 1:
        raise DataError(f"cannot tell this model's transformer layers apart ({len(stacks)} candidate lists)")
    frozen = [model.get_input_embeddings(), *stacks[0][:layers]]
    for module in frozen:
        module.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train_joint(args, init, tokenizer, kind, labels, spec, splits, folder: Path) -> dict:
    """Train every class model of a per-class classifier together (`training.joint`): checkpoints in
    `folder/joint` (resumable), then each model saved to its class folder in --save-dtype."""
    import shutil

    import torch

    from training.joint import ClassModels, LabelledCollator, PerClassTrainer

    targets = [folder / spec["models"][c] for c in labels]
    if all((t / "model.safetensors").is_file() for t in targets):
        print("every class model is already trained; keeping them")
        return {c: json.loads((t / "dlm_train.json").read_text()) for c, t in zip(labels, targets)}
    train, validation, steps = piece_datasets(args, tokenizer, labels, kind, splits["train"], splits["validation"])
    print(f"training {len(labels)} class models together (Bayes'-rule weight {args.bayes_weight}): "
          f"{len(train):,} pieces from {len(splits['train']):,} texts, {steps} steps")
    load = {"trust_remote_code": args.trust_remote_code, "use_safetensors": True, "dtype": torch.float32}
    from_classifier = (Path(init) / CONFIG_FILE).is_file()
    starts = [str(Path(init) / json.loads((Path(init) / CONFIG_FILE).read_text())["models"][c]) if from_classifier
              else init for c in labels]
    models = [language_model(s, kind, load) for s in starts]
    for model in models if args.freeze_layers else ():
        freeze_lower(model, args.freeze_layers)
    work = folder / "joint"
    work.mkdir(parents=True, exist_ok=True)
    resume_from = common.prepare_output_dir(work, resume=True, overwrite=False)
    run_args = Namespace(**{**vars(args), "output_dir": str(work), "max_steps": steps})
    # the held-out label figures before any step: the baseline the Bayes term has to beat
    training_args = common.training_arguments(run_args, resume_from, train_sampling_strategy="group_by_length",
                                              eval_on_start=not resume_from)
    collator, eval_collator = generative_collators(tokenizer, kind, args)
    trainer = PerClassTrainer(model=ClassModels(models, causal=kind == "causal"), args=training_args,
                              data_collator=LabelledCollator(collator), train_dataset=train, eval_dataset=validation,
                              processing_class=tokenizer, eval_collator=LabelledCollator(eval_collator),
                              log_priors=[math.log(p) for p in spec["priors"]], bayes_weight=args.bayes_weight,
                              bayes_temperature=args.bayes_temperature, causal=kind == "causal")
    trainer.add_callback(common.TimeLedger(work))
    common.training_autocast(trainer, args)
    result = trainer.train(resume_from_checkpoint=resume_from or None)
    metrics = trainer.evaluate()
    sessions = common.read_time_ledger(work)
    seconds = sum(s["seconds"] for s in sessions) if sessions else result.metrics["train_runtime"]
    start = next((h for h in trainer.state.log_history if h.get("step") == 0 and "eval_label_accuracy" in h), {})
    results = {}
    for c, model, target in zip(labels, models, targets):
        if args.save_dtype != "float32":
            model = model.to(getattr(torch, args.save_dtype))
        model.save_pretrained(target, safe_serialization=True)
        tokenizer.save_pretrained(target)
        results[c] = {"steps": trainer.state.global_step, "pieces": sum(e == labels.index(c) for e in train["label"]),
                      "seconds": seconds / len(labels),  # its share of the joint run
                      "trained": "jointly", "bayes_weight": args.bayes_weight, "eval_loss": metrics.get("eval_loss"),
                      "eval_label_accuracy": metrics.get("eval_label_accuracy"),
                      # the same one-sample Bayes decision on the same held-out pieces before the first step
                      "start_eval_label_accuracy": start.get("eval_label_accuracy"),
                      "parameters": sum(p.numel() for p in model.parameters())}
        (target / "dlm_train.json").write_text(json.dumps(results[c], indent=2))
    shutil.rmtree(work)
    return results


def _scoring(text: str) -> dict:
    from dlm.classify.scoring import scoring_options

    try:
        return scoring_options(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _set_scoring(spec: dict, scoring: dict) -> None:
    if spec["family"] in ("causal", "discriminative"):
        raise DataError(f"--scoring sets a masked classifier's Monte-Carlo budget; this classifier is {spec['family']}")
    spec["scoring"] = scoring


def _set_max_pieces(spec: dict, pieces: int) -> None:
    if spec["family"] == "discriminative":
        raise DataError("--max-pieces sets how many pieces a generative classifier reads; this one is discriminative")
    if pieces < 1:
        raise DataError(f"--max-pieces must be >= 1, got {pieces}")
    spec["max_pieces"] = pieces


def _set_truncation(spec: dict, truncation: str) -> None:
    if spec["family"] == "discriminative":
        raise DataError("--truncation sets which pieces a generative classifier reads; this one is discriminative")
    spec["truncation"] = truncation


def calibrate_folder(folder: Path, validation_rows, limit: int, seed: int = 0) -> None:
    """Fit the softmax temperature on validation texts; record accuracy and ECE before and after."""
    from dlm.classify import calibration_report, load_classifier

    rows = list(validation_rows)
    random.Random(seed).shuffle(rows)
    rows = rows[:limit] if limit else rows
    classifier = load_classifier(folder)
    report = calibration_report(classifier, [t for t, _ in rows], [label for _, label in rows])
    spec = json.loads((folder / CONFIG_FILE).read_text())
    spec["temperature"] = report["temperature"]
    if "temperature_exponent" in report:  # generative: T · (tokens / max_tokens)^exponent
        spec["temperature_exponent"] = report["temperature_exponent"]
    spec["validation"] = report
    (folder / CONFIG_FILE).write_text(json.dumps(spec, indent=2))
    print(f"calibration on {len(rows)} validation texts: {json.dumps(report)}")


def write_card(folder: Path) -> None:
    spec = json.loads((folder / CONFIG_FILE).read_text())
    val = spec.get("validation", {})
    lines = [
        "---", "library_name: transformers", "pipeline_tag: text-classification", "tags: [dlm, generative-classifier]",
        "---", "", f"# dlm {spec['design']} classifier ({spec['family']})", "",
        "Load it with `dlm.classify.load_classifier(FOLDER_OR_REPO)` or `python -m dlm classify --model FOLDER_OR_REPO`.", "",
        f"- labels: {', '.join(spec['labels'])}; priors {', '.join(f'{p:.3f}' for p in spec['priors'])}",
        f"- data: {spec['training']['data']}",
        *([f"- conditional: prompts {', '.join(repr(p) for p in spec['prompts'])}, never masked; label dropout "
           f"{spec['label_dropout']} (null prompt {spec['null_prompt']!r}: the same model scores p(text)); "
           f"Bayes'-rule weight {spec['bayes_weight']} on pieces masked at rates >= {spec['contrast_min_rate']}"]
          if "label_dropout" in spec else []),
        *([f"- class models trained together: every piece scored by each of them with the same masks, Bayes'-rule "
           f"weight {spec['bayes_weight']} (scores divided by {spec.get('bayes_temperature', 1.0)}) beside each "
           f"model's own generative loss"]
          if spec["design"] == "per-class" and "bayes_weight" in spec else []),
        *([f"- reads up to {spec.get('max_pieces', 1)} piece(s) of {spec['max_tokens']} tokens; a longer text: its "
           + ("first and last pieces" if spec.get("truncation", "head+tail") == "head+tail" else "first pieces")]
          if spec["family"] != "discriminative" else []),
        *[f"- continued from: `{t['command']}`" for t in _earlier(spec["training"])],
        f"- command: `{spec['training']['command']}`",
        f"- training: {spec['training']['wall_seconds'] / 60:.1f} min in all on {spec['training']['hardware']}",
    ]
    if val:
        lines.append(f"- validation ({val['texts']} texts): accuracy {val['accuracy']:.3f}, ECE {val['ece_before']:.3f} "
                     f"before and {val['ece_after']:.3f} after temperature scaling (T = {val['temperature']:.3f}"
                     + (f" at {val['reference_tokens']} tokens, growing as (tokens / {val['reference_tokens']})^"
                        f"{val['temperature_exponent']:.3f}" if "temperature_exponent" in val else "") + ")")
    (folder / common.CARD_FILE).write_text("\n".join(lines) + "\n")


def _earlier(training: dict) -> list[dict]:
    """The runs this classifier continued, oldest first."""
    chain = []
    while "continued_from" in training:
        training = training["continued_from"]
        chain.insert(0, training)
    return chain


def _safe_name(label: str) -> str:
    name = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in label).strip("_") or "class"
    return f"class-{name}"


if __name__ == "__main__":
    sys.exit(main())
