"""Command line: `python -m dlm generate | animate | elbo | classify`.

    python -m dlm generate --model default --prompt "It was a dark night" --length 48 --steps 16 --seed 0
    python -m dlm generate --model default --infill "The [MASK] [MASK] sat on the mat" --json
    python -m dlm generate --model runs/continuous --prompt "It was" --steps 100 --solver ddpm --cfg-scale 1
    python -m dlm animate --model default --prompt "Call me" --out run.gif      # .gif, .mp4 or .html
    python -m dlm elbo --model default --text "Call me Ishmael." --json
    python -m dlm classify --model default-classifier --input reviews.csv --label-column label --json

Bad input prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dlm.config import CACHES, REMASKING, SCHEDULES

ROUNDINGS = ("logits", "nearest")  # dlm.continuous.ROUNDINGS (not imported here: it pulls in transformers)
SOLVERS = ("ddim", "ddpm")  # dlm.continuous.SOLVERS

ANIMATION_SUFFIXES = (".gif", ".mp4", ".html")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dlm", description="Text diffusion language models.")
    commands = parser.add_subparsers(dest="command", required=True)

    sampling = argparse.ArgumentParser(add_help=False)
    sampling.add_argument("--model", default="default", help="bundled name, local folder or Hub repo id")
    sampling.add_argument("--prompt", default="", help="text to continue (may be empty)")
    sampling.add_argument("--infill", help="template with [MASK] blanks to fill instead of a prompt")
    sampling.add_argument("--length", type=int, help="tokens to generate (default: the model's)")
    sampling.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    sampling.add_argument("--seed", type=int, default=0)
    sampling.add_argument("--remasking", choices=sorted(REMASKING))
    sampling.add_argument("--schedule", choices=sorted(SCHEDULES))
    sampling.add_argument("--temperature", type=float, help="0 = greedy")
    sampling.add_argument("--top-k", type=int)
    sampling.add_argument("--top-p", type=float)
    sampling.add_argument("--threshold", type=float, help="Fast-dLLM parallel decoding threshold")
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

    elbo = commands.add_parser("elbo", help="log-likelihood (ELBO for diffusion models)")
    elbo.add_argument("--model", default="default")
    elbo.add_argument("--text", required=True)
    elbo.add_argument("--prompt", default="")
    elbo.add_argument("--samples", type=int, default=64, help="Monte-Carlo samples (masked models)")
    elbo.add_argument("--seed", type=int, default=0)
    elbo.add_argument("--json", action="store_true")

    clf = commands.add_parser("classify", help="classify texts from a .txt (one per line) or .csv file")
    clf.add_argument("--model", default="default-classifier", help="classifier: bundled name, folder or Hub repo id")
    clf.add_argument("--input", required=True, type=Path, help=".txt (one text per line) or .csv with a header row")
    clf.add_argument("--text-column", help="CSV column with the texts (default: guessed)")
    clf.add_argument("--label-column", help="CSV column with true labels: adds accuracy, macro-F1, ECE, confusion")
    clf.add_argument("--max-samples", type=int, help="masked models: at most this many mask patterns per text")
    clf.add_argument("--batch-size", type=int, default=64, help="texts per call (progress is shown between calls)")
    clf.add_argument("--max-mb", type=float, default=100.0, help="largest input file accepted")
    clf.add_argument("--json", action="store_true", help="print one JSON object")
    clf.add_argument("--trust-remote-code", action="store_true")
    elbo.add_argument("--trust-remote-code", action="store_true")
    return parser


def sampler_overrides(args: argparse.Namespace) -> dict:
    names = ["length", "steps", "remasking", "schedule", "temperature", "top_k", "top_p", "threshold",
             "block_length", "cache", "cfg_scale", "num_samples", "solver", "rounding", "clamp"]
    overrides = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.no_eos:
        overrides["allow_eos"] = False
    return overrides


def run_generation(args: argparse.Namespace):
    import dlm

    lm = dlm.load(args.model, trust_remote_code=args.trust_remote_code)
    return dlm.generate(lm, args.prompt, infill=args.infill, seed=args.seed, **sampler_overrides(args))


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

    lm = dlm.load(args.model, trust_remote_code=args.trust_remote_code)
    result = dlm.log_likelihood(lm, args.text, prompt=args.prompt, num_samples=args.samples, seed=args.seed)
    if args.json:
        print(json.dumps({"model": args.model, "kind": lm.kind, **result.to_dict()}))
    else:
        bound = "=" if result.exact else ">="
        print(f"log p(text) {bound} {result.log_likelihood:.3f} nats (± {result.stderr:.3f}) over "
              f"{result.num_tokens} tokens; perplexity {result.perplexity:.2f}")


def cmd_classify(args: argparse.Namespace) -> None:
    from tqdm.auto import tqdm

    from dlm.classify import load_classifier, report
    from dlm.tables import read_table, select_texts

    if not args.input.is_file():
        raise ValueError(f"input file {str(args.input)!r} does not exist")
    table = read_table(args.input, int(args.max_mb * 2**20))
    texts, truth, notes = select_texts(table, args.text_column, args.label_column)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    options = {"max_samples": args.max_samples} if args.max_samples else {}
    classifier = load_classifier(args.model, trust_remote_code=args.trust_remote_code, **options)
    predictions = []
    with tqdm(total=len(texts), desc="classifying", unit="text", disable=None, file=sys.stderr) as bar:
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
    try:
        COMMANDS[args.command](args)
    except (ValueError, OSError, RuntimeError) as error:  # bad input: one clear line, exit 2
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
