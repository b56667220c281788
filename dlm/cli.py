"""Command line: `python -m dlm generate | animate | elbo | classify`.

    python -m dlm generate --model default --prompt "It was a dark night" --length 48 --steps 16 --seed 0
    python -m dlm generate --model default --infill "The [MASK] [MASK] sat on the mat" --json
    python -m dlm generate --model GSAI-ML/LLaDA-8B-Instruct --chat "Write a haiku about rain" --length 64
    python -m dlm generate --model runs/continuous --prompt "It was" --steps 100 --solver ddpm --cfg-scale 1
    python -m dlm animate --model default --prompt "Call me" --out run.gif      # .gif, .mp4 or .html
    python -m dlm elbo --model default --text "Call me Ishmael." --json
    python -m dlm elbo --model default --input held_out.txt --json            # one text per line (or a .csv)
    python -m dlm classify --model default-classifier --input reviews.csv --label-column label --json

Commands that work through many texts (classify, elbo --input) show a progress bar on stderr when
stderr is a terminal (tqdm's own rule, `disable=None`); --progress forces it on, --no-progress off.
stdout carries only the results, so `--json` output can be piped as it is.
Bad input prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from dlm.config import CACHES, REMASKING, SCHEDULES

ROUNDINGS = ("logits", "nearest")  # dlm.continuous.ROUNDINGS (not imported here: it pulls in transformers)
SOLVERS = ("ddim", "ddpm")  # dlm.continuous.SOLVERS

ANIMATION_SUFFIXES = (".gif", ".mp4", ".html")


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    """--progress / --no-progress; unset (None): a bar only when stderr is a terminal."""
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: only when stderr is a terminal)")


def progress_bar(iterable=None, *, desc: str, unit: str = "it", total: int | None = None, show: bool | None = None,
                 leave: bool = True):
    """A tqdm bar on stderr, never stdout. show None: only when stderr is a terminal (tqdm's `disable=None`,
    so a redirected or captured stderr gets no bar text); True / False: always / never."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=leave,
                disable=None if show is None else not show)


def note(message: str) -> None:
    """One line on stderr that does not tear a progress bar in the middle of drawing."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dlm", description="Text diffusion language models.")
    commands = parser.add_subparsers(dest="command", required=True)

    sampling = argparse.ArgumentParser(add_help=False)
    sampling.add_argument("--model", default="default", help="bundled name, local folder or Hub repo id")
    sampling.add_argument("--prompt", default="", help="text to continue (may be empty)")
    sampling.add_argument("--infill", help="template with [MASK] blanks to fill instead of a prompt")
    sampling.add_argument("--chat", metavar="MESSAGE",
                          help="instruct models: a user message, wrapped in the model's chat template as the prompt")
    sampling.add_argument("--length", type=int, help="tokens to generate (default: the model's)")
    sampling.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    sampling.add_argument("--seed", type=int, default=0)
    sampling.add_argument("--remasking", choices=sorted(REMASKING))
    sampling.add_argument("--schedule", choices=sorted(SCHEDULES))
    sampling.add_argument("--temperature", type=float, help="0 = greedy")
    sampling.add_argument("--temperature-end", type=float,
                          help="masked models: anneal the temperature linearly to this by a block's last step "
                               "(0 = constant)")
    sampling.add_argument("--top-k", type=int)
    sampling.add_argument("--top-p", type=float)
    sampling.add_argument("--min-p", type=float, help="keep only tokens at least this fraction as probable as the "
                                                      "most probable one (0 = off)")
    sampling.add_argument("--threshold", type=float, help="Fast-dLLM parallel decoding threshold")
    sampling.add_argument("--factor", type=float, help="Fast-dLLM factor rule: commit the n most confident while "
                                                         "(n + 1)(1 - confidence) < factor")
    sampling.add_argument("--entropy-bound", type=float, help="EB-sampler: commit positions while their summed "
                                                                "entropy minus the largest stays under this (nats)")
    sampling.add_argument("--block-length", type=int, help="semi-autoregressive block length")
    sampling.add_argument("--cache", choices=sorted(CACHES),
                          help="Fast-dLLM key/value cache, refreshed per block (approximate; default: exact)")
    sampling.add_argument("--cfg-scale", type=float, help="classifier-free guidance (0 = off)")
    sampling.add_argument("--solver", choices=sorted(SOLVERS), help="continuous models: DDIM or DDPM updates")
    sampling.add_argument("--rounding", choices=sorted(ROUNDINGS), help="continuous models: how x0 becomes tokens")
    sampling.add_argument("--clamp", action=argparse.BooleanOptionalAction,
                          help="continuous models: snap x0 to the nearest embedding before each update")
    sampling.add_argument("--num-samples", type=int)
    sampling.add_argument("--no-eos", action="store_true", help="never end early at EOS")
    sampling.add_argument("--trust-remote-code", action="store_true", help="run the checkpoint's own code")

    gen = commands.add_parser("generate", parents=[sampling], help="generate text")
    gen.add_argument("--json", action="store_true", help="print one JSON object")
    gen.add_argument("--trace", type=Path, help="also save the full step-by-step trace as JSON")

    anim = commands.add_parser("animate", parents=[sampling], help="render a run to GIF, MP4 or HTML")
    anim.add_argument("--out", type=Path, required=True, help="output file: .gif, .mp4 or .html")
    anim.add_argument("--frame-ms", type=int, default=250, help="milliseconds per step (GIF/MP4)")

    elbo = commands.add_parser("elbo", help="log-likelihood (ELBO for diffusion models) of a text or a file of texts")
    elbo.add_argument("--model", default="default")
    source = elbo.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the text to score")
    source.add_argument("--input", type=Path, help="score every text of a .txt (one per line) or .csv with a header "
                                                   "row, each exactly as --text would")
    elbo.add_argument("--text-column", help="CSV column with the texts (default: guessed)")
    elbo.add_argument("--max-mb", type=float, default=100.0, help="largest input file accepted")
    elbo.add_argument("--prompt", default="")
    elbo.add_argument("--samples", type=int, default=64, help="Monte-Carlo samples (masked models)")
    elbo.add_argument("--seed", type=int, default=0, help="the masks' seed, the same for every text")
    elbo.add_argument("--json", action="store_true")
    add_progress_option(elbo)

    clf = commands.add_parser("classify", help="classify texts from a .txt (one per line) or .csv file")
    clf.add_argument("--model", default="default-classifier", help="classifier: bundled name, folder or Hub repo id")
    clf.add_argument("--input", required=True, type=Path, help=".txt (one text per line) or .csv with a header row")
    clf.add_argument("--text-column", help="CSV column with the texts (default: guessed)")
    clf.add_argument("--label-column", help="CSV column with true labels: adds accuracy, macro-F1, ECE, confusion")
    clf.add_argument("--max-samples", type=int, help="masked models: at most this many mask patterns per text")
    clf.add_argument("--batch-size", type=int, default=8,
                     help="texts per classify call; the progress bar moves after each (a text's scores do not "
                          "depend on it beyond float rounding: its masks are seeded by the text itself)")
    clf.add_argument("--max-mb", type=float, default=100.0, help="largest input file accepted")
    clf.add_argument("--json", action="store_true", help="print one JSON object")
    add_progress_option(clf)
    clf.add_argument("--trust-remote-code", action="store_true")
    elbo.add_argument("--trust-remote-code", action="store_true")
    return parser


def sampler_overrides(args: argparse.Namespace) -> dict:
    names = ["length", "steps", "remasking", "schedule", "temperature", "top_k", "top_p", "min_p", "threshold", "factor",
             "entropy_bound", "block_length", "cache", "cfg_scale", "num_samples", "solver", "rounding", "clamp"]
    overrides = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if getattr(args, "temperature_end", None) is not None:
        overrides["temperature_end"] = args.temperature_end or None  # 0: constant
    if args.no_eos:
        overrides["allow_eos"] = False
    return overrides


def run_generation(args: argparse.Namespace):
    import dlm

    if args.chat is not None and (args.prompt or args.infill):
        raise ValueError("give --chat, --prompt or --infill, not several")
    lm = dlm.load(args.model, trust_remote_code=args.trust_remote_code)
    prompt = dlm.chat_prompt(lm, args.chat) if args.chat is not None else args.prompt
    return dlm.generate(lm, prompt, infill=args.infill, seed=args.seed, **sampler_overrides(args))


def cmd_generate(args: argparse.Namespace) -> None:
    trace = run_generation(args)
    if args.trace:
        trace.save(args.trace)
    if args.json:
        print(json.dumps({
            "text": trace.texts[0],
            "texts": trace.texts,
            "nfe": trace.nfe,
            "seconds": round(trace.seconds, 4),
            "steps": len(trace.steps),
            "model": trace.model,
            "config": trace.config,
        }))
    else:
        print("\n\n".join(trace.texts))


def cmd_animate(args: argparse.Namespace) -> None:
    from dlm import render

    suffix = args.out.suffix.lower()
    if suffix not in ANIMATION_SUFFIXES:
        raise ValueError(f"--out must end in one of {list(ANIMATION_SUFFIXES)}, got {args.out.name!r}")
    trace = run_generation(args)
    if suffix == ".gif":
        render.to_gif(trace, args.out, frame_ms=args.frame_ms)
    elif suffix == ".mp4":
        render.to_mp4(trace, args.out, fps=max(1, round(1000 / args.frame_ms)))
    else:
        render.to_html(trace, args.out)
    print(args.out)


def cmd_elbo(args: argparse.Namespace) -> None:
    import dlm

    texts = read_texts(args)[0] if args.input is not None else None
    lm = dlm.load(args.model, trust_remote_code=args.trust_remote_code)
    if texts is None:
        result = dlm.log_likelihood(lm, args.text, prompt=args.prompt, num_samples=args.samples, seed=args.seed)
        if args.json:
            print(json.dumps({"model": args.model, "kind": lm.kind, **result.to_dict()}))
        else:
            bound = "=" if result.exact else ">="
            print(f"log p(text) {bound} {result.log_likelihood:.3f} nats (± {result.stderr:.3f}) over "
                  f"{result.num_tokens} tokens; perplexity {result.perplexity:.2f}")
        return
    results = []
    with progress_bar(texts, desc="scoring", unit="text", show=args.progress) as bar:
        for number, text in enumerate(bar, start=1):  # one text at a time, each with the same seed as --text
            try:
                results.append(dlm.log_likelihood(lm, text, prompt=args.prompt, num_samples=args.samples,
                                                  seed=args.seed))
            except ValueError as error:
                raise ValueError(f"text {number}: {error}") from None
    total = elbo_total(results)
    if args.json:
        rows = [{"text": t, **r.to_dict()} for t, r in zip(texts, results)]
        print(json.dumps({"model": args.model, "kind": lm.kind, "results": rows, "total": total}))
        return
    bound = "=" if total["exact"] else ">="
    for i, (text, r) in enumerate(zip(texts, results)):
        preview = text if len(text) <= 60 else text[:57] + "..."
        print(f"{i + 1}\tlog p {bound} {r.log_likelihood:.3f} (± {r.stderr:.3f})\t{r.num_tokens} tokens\t"
              f"perplexity {r.perplexity:.2f}\t{preview}")
    print(f"all {total['texts']} texts: log p {bound} {total['log_likelihood']:.3f} nats (± {total['stderr']:.3f}) "
          f"over {total['num_tokens']} tokens; perplexity {total['perplexity']:.2f}")


def elbo_total(results: list) -> dict:
    """The texts together: summed log-likelihood (a bound when any is one), its standard error, and the
    perplexity over all their tokens."""
    log_likelihood = sum(r.log_likelihood for r in results)
    tokens = sum(r.num_tokens for r in results)
    return {"texts": len(results), "log_likelihood": log_likelihood, "num_tokens": tokens,
            "nats_per_token": log_likelihood / tokens, "perplexity": math.exp(-log_likelihood / tokens),
            "stderr": math.sqrt(sum(r.stderr**2 for r in results if r.stderr == r.stderr)),
            "nfe": sum(r.nfe for r in results), "exact": all(r.exact for r in results)}


def read_texts(args: argparse.Namespace, label_column: str | None = None) -> tuple[list[str], list[str] | None]:
    """(texts, true labels or None) of --input, with notes on stderr; ValueError when it cannot be read."""
    from dlm.tables import read_table, select_texts

    if not args.input.is_file():
        raise ValueError(f"input file {str(args.input)!r} does not exist")
    table = read_table(args.input, int(args.max_mb * 2**20))
    texts, truth, notes = select_texts(table, args.text_column, label_column)
    for message in notes:
        print(f"note: {message}", file=sys.stderr)
    return texts, truth


def cmd_classify(args: argparse.Namespace) -> None:
    from dlm.classify import load_classifier, report

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    texts, truth = read_texts(args, args.label_column)
    options = {"max_samples": args.max_samples} if args.max_samples else {}
    classifier = load_classifier(args.model, trust_remote_code=args.trust_remote_code, **options)
    predictions = []
    with progress_bar(total=len(texts), desc="classifying", unit="text", show=args.progress) as bar:
        for start in range(0, len(texts), args.batch_size):
            chunk = texts[start : start + args.batch_size]
            predictions += classifier.classify(chunk)
            bar.update(len(chunk))
    labels = list(classifier.labels)
    metrics = report(predictions, truth, labels) if truth is not None else None
    if args.json:
        rows = [{"text": t, "label": p.label, "probabilities": p.probabilities, "nfe": p.nfe, "truncated": p.truncated,
                 **({"true_label": y} if truth is not None else {})}
                for t, p, y in zip(texts, predictions, truth or [None] * len(texts))]
        print(json.dumps({"model": args.model, "labels": labels, "predictions": rows, "metrics": metrics}))
        return
    for i, (text, p) in enumerate(zip(texts, predictions)):
        probabilities = " ".join(f"{c}={p.probabilities[c]:.3f}" for c in labels)
        preview = text if len(text) <= 60 else text[:57] + "..."
        print(f"{i + 1}\t{p.label}\t{probabilities}\tnfe={p.nfe}\t{preview}")
    if metrics is not None:
        print(format_metrics(metrics))


def format_metrics(metrics: dict) -> str:
    low, high = metrics["accuracy_ci95"]
    lines = [f"accuracy {metrics['accuracy']:.4f} (95% CI {low:.4f}-{high:.4f}) on {metrics['labelled']} labelled texts; "
             f"macro-F1 {metrics['macro_f1']:.4f}; ECE {metrics['ece']:.4f}; {metrics['nfe_per_text']:.1f} forward passes per text"]
    if metrics["unknown_labels"]:
        lines.append(f"{metrics['unknown_labels']} text(s) have labels that are not classes; they are left out")
    width = max(len(c) for c in metrics["classes"])
    lines.append("confusion (rows: true, columns: predicted)")
    lines.append(" " * (width + 2) + "  ".join(f"{c:>{width}}" for c in metrics["classes"]))
    for c, row in zip(metrics["classes"], metrics["confusion"]):
        lines.append(f"{c:>{width}}  " + "  ".join(f"{n:>{width}}" for n in row))
    return "\n".join(lines)


COMMANDS = {"generate": cmd_generate, "animate": cmd_animate, "elbo": cmd_elbo, "classify": cmd_classify}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from dlm.allocator import keep_freed_memory

    keep_freed_memory()  # as the app: a step's temporaries reuse the heap (dlm.allocator)
    try:
        COMMANDS[args.command](args)
    except (ValueError, OSError, RuntimeError) as error:  # bad input: one clear line, exit 2
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
