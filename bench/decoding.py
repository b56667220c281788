"""Tune a masked-diffusion model's recommended decoding on the judge-perplexity / entropy frontier.

    python bench/decoding.py --model runs/diffusion --ar default-ar --length 128 --prompts 48 \\
        --json bench/results/decoding.json

Every setting in the grid (remasking order x temperature x nucleus x semi-autoregressive blocks, one
token per step) continues the same held-out prompts; so does the AR model at its own recommended
settings. Each is scored by the independent judge (SmolLM2-135M): perplexity of the continuations
given their prompts, and the mean unigram entropy of each continuation (`dlm.quality`), since a low
perplexity alone rewards loops. A setting is *eligible* when its mean entropy is at least
--entropy-ratio (0.95) x AR's; the recommendation is the eligible setting with the lowest judge
perplexity, and the frontier lists the settings no other one beats on both. Apply it with the
printed `python -m training.card ...` command.

The prompts are the first words of held-out paragraphs (the prose corpus's validation split), with
every paragraph whose opening is one of the benchmark's prompts (bench/data/prompts.txt) left out, so
the settings are not tuned on the benchmark that reports them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dlm  # noqa: E402
from bench.ar_vs_diffusion import (  # noqa: E402
    add_quality, human_paragraphs, human_reference, mauve_reference, read_prompts, sample_continuations,
)
from dlm.cli import add_progress_option, note, progress_bar  # noqa: E402
from dlm.config import REMASKING  # noqa: E402
from dlm.quality import judge_mauve, load_judge, paired_perplexity_ratio  # noqa: E402

HERE = Path(__file__).resolve().parent
ORDERS = tuple(REMASKING)  # random, low_confidence, margin, entropy, dilated
# (remasking, temperature, top_p, top_k, block_length): MDLM's random order at several temperatures, and
# confidence orders with sampling (ReMDM / LLaDA style) with and without semi-autoregressive blocks
GRID = (
    [("random", t, 0.95, 0, None) for t in (1.0, 0.9, 0.8, 0.7)] + [("random", 1.0, 1.0, 0, None)]
    + [("low_confidence", t, 0.95, 0, block) for t in (1.0, 0.8) for block in (None, 32)]
    + [("low_confidence", 1.0, 0.95, 0, 8), ("margin", 0.8, 0.95, 0, 32), ("entropy", 0.9, 0.95, 0, 16)]
)


SETTING_KEYS = ("remasking", "temperature", "top_p", "top_k", "block_length", "steps",
                "temperature_end", "min_p")  # steps None: = length; temperature_end None: constant; min_p 0: off


def parse_setting(text: str) -> tuple:
    """'remasking:temperature:top_p:top_k:block[:steps[:min_p]]' (block 0: no blocks; steps: default one token
    per step; temperature 'A-B': annealed from A at a block's first step to B at its last; min_p default 0,
    off) -> a GRID entry (with steps, the final temperature, None when constant, and min-p)."""
    parts = text.split(":")
    if len(parts) not in (5, 6, 7) or parts[0] not in ORDERS:
        raise argparse.ArgumentTypeError(f"a setting is remasking:temperature:top_p:top_k:block[:steps[:min_p]] with "
                                         f"remasking one of {list(ORDERS)}, e.g. margin:0.75:0.95:0:32 or "
                                         f"random:0.7:0.95:0:0:32; got {text!r}")
    try:
        start, _, end = parts[1].partition("-")
        temperature, top_p, top_k, block = float(start), float(parts[2]), int(parts[3]), int(parts[4])
        temperature_end = float(end) if end else None
        steps = int(parts[5]) if len(parts) >= 6 else None
        min_p = float(parts[6]) if len(parts) == 7 else 0.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"numbers expected in {text!r}") from None
    if steps is not None and steps < 1:
        raise argparse.ArgumentTypeError(f"steps must be >= 1 in {text!r}")
    if temperature_end is not None and not (temperature > 0 and temperature_end > 0):
        raise argparse.ArgumentTypeError(f"an annealed temperature A-B needs A, B > 0 in {text!r}")
    if not 0 <= min_p <= 1:
        raise argparse.ArgumentTypeError(f"min_p must be in [0, 1] in {text!r}")
    return parts[0], temperature, top_p, top_k, block or None, steps, temperature_end, min_p


def parse_ar_setting(text: str) -> tuple[float, float, int, float]:
    """'temperature:top_p:top_k[:min_p]' -> an AR sampler setting (top_p 1, top_k 0 and min_p 0 are off)."""
    parts = text.split(":")
    try:
        temperature, top_p, top_k = float(parts[0]), float(parts[1]), int(parts[2])
        min_p = float(parts[3]) if len(parts) == 4 else 0.0
        if len(parts) not in (3, 4) or not 0 <= min_p <= 1:
            raise ValueError
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"an AR setting is temperature:top_p:top_k[:min_p], e.g. 0.9:1:20 or "
                                         f"1:1:0:0.1; got {text!r}") from None
    return temperature, top_p, top_k, min_p


def tuning_prompts(tokenizer, length: int, count: int, exclude: list[str],
                   paragraphs_file: Path | None = None) -> tuple[list[str], list[str]]:
    """(prompts, human continuations) from held-out paragraphs whose opening is not a benchmark prompt."""
    banned = tuple(p.lower() for p in exclude)
    paragraphs = [p for p in human_paragraphs(paragraphs_file) if not p.lower().startswith(banned)]
    return human_reference(tokenizer, paragraphs, length, count)


def describe(setting: dict) -> str:
    top = f"top-p {setting['top_p']:g}" if setting["top_p"] < 1 else (
        f"top-k {setting['top_k']}" if setting["top_k"] else "full" if not setting.get("min_p") else "")
    if setting.get("min_p"):
        top = ", ".join(filter(None, [top, f"min-p {setting['min_p']:g}"]))
    block = f", blocks of {setting['block_length']}" if setting["block_length"] else ""
    steps = f", {setting['steps']} steps" if setting.get("steps") else ""
    end = setting.get("temperature_end")
    temperature = f"{setting['temperature']:g}" + (f"→{end:g}" if end is not None else "")
    return f"{setting['remasking']}, T {temperature}, {top}{block}{steps}"


def frontier(rows: list[dict]) -> list[dict]:
    """Rows no other row beats on both judge perplexity (lower) and entropy (higher)."""
    return [r for r in rows if not any(o["judge_perplexity"] <= r["judge_perplexity"] and o["entropy"] >= r["entropy"]
                                       and o is not r and (o["judge_perplexity"], o["entropy"]) != (r["judge_perplexity"], r["entropy"])
                                       for o in rows)]


def judged(row: dict) -> tuple[list, list]:
    """A judged row's per-prompt NLLs and token counts: what `paired_perplexity_ratio` compares."""
    return row["judge_nll_per_sample"], row["judge_tokens_per_sample"]


def measure_on_benchmark(lm, ar, judge, best: dict, args) -> dict:
    """The recommended setting and AR on the benchmark's own prompts (judge perplexity, entropy), and
    MAUVE of each against held-out human continuations of --mauve-prompts other prompts."""
    prompts = read_prompts(HERE / "data" / "prompts.txt")
    setting = {**{k: best.get(k) for k in SETTING_KEYS}, "min_p": best.get("min_p") or 0.0}
    configs = {
        "diffusion": (lm, lm.settings.replace(**{**setting, "steps": setting["steps"] or args.length},
                                              length=args.length, allow_eos=False, num_samples=1, threshold=None,
                                              cache=None)),
        "ar": (ar, ar.settings.replace(length=args.length, allow_eos=False, num_samples=1)),
    }
    reference = mauve_reference(lm.tokenizer, human_paragraphs(args.paragraphs), args.length, args.mauve_prompts) \
        if args.mauve_prompts else None
    report = {"prompts": len(prompts), "setting": setting}
    print(f"\non the benchmark's {len(prompts)} prompts ({args.length} tokens):\n")
    print("| model | decoding | judge PPL | entropy (95% CI) | distinct-2 | rep-4 | MAUVE ± sd (n) |")
    print("|---|---|---:|---|---:|---:|---|")
    for name, (model, config) in configs.items():
        outputs = sample_continuations(model, prompts, config, progress=args.progress, desc=f"{name}: benchmark prompts")
        row = add_quality({"outputs": outputs}, judge, prompts)
        if reference:
            outputs = sample_continuations(model, reference["prompts"], config, seed=1000, progress=args.progress,
                                           desc=f"{name}: MAUVE prompts")
            row["mauve"] = judge_mauve(judge, outputs, reference["continuations"], contexts=reference["prompts"],
                                       reference_contexts=reference["prompts"])
        report[name] = row
        low, high = row["entropy_ci95"]
        mauve = row.get("mauve")
        score = f"{mauve['mean']:.3f} ± {mauve['std']:.3f} ({mauve['n_p']})" if mauve else "—"
        decoding = describe(setting if name == "diffusion" else {"remasking": "AR", "temperature": config.temperature,
                                                                 "top_p": config.top_p, "top_k": config.top_k,
                                                                 "min_p": config.min_p, "block_length": None})
        print(f"| {model.source} | {decoding} | {row['judge_perplexity']:.1f} | {row['entropy']:.3f} "
              f"({low:.3f}–{high:.3f}) | {row['distinct_2']:.2f} | {row['repetition']:.3f} | {score} |")
    diffusion, causal = report["diffusion"], report["ar"]
    report["ratios"] = {"judge_perplexity": diffusion["judge_perplexity"] / causal["judge_perplexity"],
                        "entropy": diffusion["entropy"] / causal["entropy"]}
    print(f"\njudge perplexity {report['ratios']['judge_perplexity']:.2f}x AR's, "
          f"entropy {report['ratios']['entropy']:.3f}x AR's")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="masked-diffusion model (bundled name, folder, Hub id)")
    parser.add_argument("--ar", default="default-ar", help="the AR reference whose entropy sets the bar")
    parser.add_argument("--length", type=int, default=128, help="tokens per continuation (EOS forbidden)")
    parser.add_argument("--prompts", type=int, default=48, help="held-out prompts per setting")
    parser.add_argument("--entropy-ratio", type=float, default=0.95, help="eligible: entropy >= this x AR's")
    parser.add_argument("--paragraphs", type=Path, help="held-out paragraphs, one per line (default: the prose "
                                                         "corpus's validation split)")
    parser.add_argument("--limit", type=int, help="only the first N settings of the grid (a smoke test)")
    parser.add_argument("--settings", nargs="+", type=parse_setting, metavar="R:T:P:K:B[:S[:M]]",
                        help="tune these settings instead of the built-in grid, each remasking:temperature:top_p:"
                             "top_k:block[:steps[:min_p]] (block 0 = none; temperature A-B anneals), e.g. "
                             "margin:0.75:0.95:0:32 or dilated:1.1-0.6:1:0:0:8:0.1")
    parser.add_argument("--ar-temperatures", nargs="+", type=float, default=[],
                        help="also sample the AR model at these temperatures (its card's top-p): its own frontier, "
                             "and its recommendation, the lowest judge perplexity with entropy >= the ratio x human's")
    parser.add_argument("--ar-settings", nargs="+", type=parse_ar_setting, default=[], metavar="T:P:K[:M]",
                        help="also sample the AR model at these temperature:top_p:top_k[:min_p] settings (e.g. "
                             "0.9:1:20), "
                             "judged like --ar-temperatures: the fair check that a truncation helping diffusion "
                             "does not help AR as much")
    parser.add_argument("--report", action="store_true",
                        help="then measure the recommended setting and AR on the benchmark's prompts")
    parser.add_argument("--mauve-prompts", type=int, default=0,
                        help="with --report: held-out prompts for MAUVE against their human continuations (0: none)")
    parser.add_argument("--judge", default="smollm2")
    parser.add_argument("--threads", type=int, help="torch threads (default: all)")
    parser.add_argument("--json", type=Path)
    add_progress_option(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    lm, ar = dlm.load(args.model), dlm.load(args.ar)
    if lm.kind != "masked":
        print(f"error: {args.model!r} is a {lm.kind} model; this tunes masked-diffusion decoding", file=sys.stderr)
        return 2
    prompts, human = tuning_prompts(lm.tokenizer, args.length, args.prompts, read_prompts(HERE / "data" / "prompts.txt"),
                                    args.paragraphs)
    base = lm.settings.replace(length=args.length, steps=args.length, allow_eos=False, num_samples=1, threshold=None,
                               cache=None)
    rows = []
    grid = args.settings or GRID
    for remasking, temperature, top_p, top_k, block, *rest in progress_bar(grid[: args.limit], desc="settings",
                                                                           unit="setting", show=args.progress):
        steps = rest[0] if rest and rest[0] not in (None, args.length) else None  # None: one token per step
        setting = {"remasking": remasking, "temperature": temperature, "top_p": top_p, "top_k": top_k,
                   "block_length": block, "steps": steps,
                   "temperature_end": rest[1] if len(rest) > 1 else None,  # None: constant (not the card's)
                   "min_p": rest[2] if len(rest) > 2 else 0.0}  # 0: off (not the card's)
        start = time.perf_counter()
        config = base.replace(**{k: v for k, v in setting.items() if k != "steps"}, steps=steps or args.length)
        outputs = sample_continuations(lm, prompts, config, progress=args.progress,
                                       desc=describe(setting))
        rows.append({**setting, "decoding": describe(setting), "outputs": outputs,
                     "seconds": time.perf_counter() - start})
        note(f"generated: {describe(setting)} ({rows[-1]['seconds']:.0f} s)")
    reference = {"decoding": describe({"remasking": "AR", "temperature": ar.settings.temperature,
                                       "top_p": ar.settings.top_p, "top_k": ar.settings.top_k,
                                       "min_p": ar.settings.min_p, "block_length": None}),
                 "outputs": sample_continuations(ar, prompts, ar.settings.replace(length=args.length, allow_eos=False,
                                                                                   num_samples=1),
                                                 progress=args.progress, desc=f"AR {args.ar}")}
    human_row = {"decoding": "held-out human text", "outputs": human}
    own = (ar.settings.temperature, ar.settings.top_p, ar.settings.top_k, ar.settings.min_p)
    ar_grid = [(t, *own[1:]) for t in args.ar_temperatures] + args.ar_settings
    ar_rows = []
    for t, p, k, m in dict.fromkeys(s for s in ar_grid if s != own):  # the card's own setting is the reference
        name = describe({"remasking": "AR", "temperature": t, "top_p": p, "top_k": k, "min_p": m, "block_length": None})
        ar_rows.append({"decoding": name, "temperature": t, "top_p": p, "top_k": k, "min_p": m,
                        "outputs": sample_continuations(ar, prompts, ar.settings.replace(
                            length=args.length, allow_eos=False, num_samples=1, temperature=t, top_p=p, top_k=k,
                            min_p=m), progress=args.progress, desc=name)})
    judge = load_judge(args.judge)
    for row in progress_bar([*rows, reference, human_row, *ar_rows], desc="judging", unit="setting",
                            show=args.progress):
        add_quality(row, judge, prompts)
    bar = args.entropy_ratio * reference["entropy"]
    for row in rows:
        row["eligible"] = row["entropy"] >= bar
    eligible = [r for r in rows if r["eligible"]]
    best = min(eligible, key=lambda r: r["judge_perplexity"]) if eligible else None
    on_frontier = frontier(rows)
    if best:
        for row in rows:  # judge PPL / the recommendation's, on the same prompts: is the difference more than noise?
            paired = paired_perplexity_ratio(judged(row), judged(best))
            row["vs_recommended"] = {k: paired[k] for k in ("ratio", "low", "high")}

    print(f"\n{args.model}: {len(prompts)} held-out prompts, {args.length} tokens, one token per step unless "
          f"the setting says; "
          f"eligible: entropy >= {args.entropy_ratio:g} x AR's ({bar:.3f} nats)\n")
    print("| decoding | judge PPL (95% CI) | × recommended's (paired 95% CI) | entropy | distinct-2 | rep-4 | eligible "
          "| frontier |")
    print("|---|---:|---:|---:|---:|---:|:-:|:-:|")
    for r in sorted(rows, key=lambda r: r["judge_perplexity"]) + [reference, human_row]:
        flag = ("yes" if r["eligible"] else "no") if "eligible" in r else ""
        low, high = r["judge_perplexity_ci95"]
        paired = r.get("vs_recommended")
        versus = "" if paired is None else ("—" if r is best else
                                            f"{paired['ratio']:.2f} ({paired['low']:.2f}–{paired['high']:.2f})")
        print(f"| {r['decoding']} | {r['judge_perplexity']:.1f} ({low:.1f}–{high:.1f}) | {versus} | {r['entropy']:.3f} | "
              f"{r['distinct_2']:.2f} | {r['repetition']:.3f} | {flag} | {'*' if r in on_frontier else ''} |")
    if best:
        command = (f"python -m training.card {args.model} --length {args.length} --steps {best['steps'] or args.length} "
                   f"--remasking {best['remasking']} --temperature {best['temperature']:g} "
                   f"--temperature-end {best.get('temperature_end') or 0:g} --top-p {best['top_p']:g} "
                   f"--top-k {best['top_k']} --min-p {best['min_p']:g} "
                   f"--block-length {best['block_length'] or 0}")  # 0: one block / constant
        print(f"\nrecommended: {best['decoding']} (judge {best['judge_perplexity']:.1f} vs AR "
              f"{reference['judge_perplexity']:.1f}; entropy {best['entropy']:.3f} vs AR {reference['entropy']:.3f})\n"
              f"apply: {command}")
        ties = [r["decoding"] for r in eligible if r is not best and r["vs_recommended"]["low"] <= 1]
        if ties:
            print(f"not told apart from it on these {len(prompts)} prompts (paired interval holds 1): {'; '.join(ties)}")
    else:
        print("\nno setting reaches the entropy bar")
    ar_best = None
    if ar_rows:
        ar_bar = args.entropy_ratio * human_row["entropy"]
        own_row = {**reference, "temperature": own[0], "top_p": own[1], "top_k": own[2], "min_p": own[3]}
        candidates = [r for r in [own_row, *ar_rows] if r["entropy"] >= ar_bar]
        ar_best = min(candidates, key=lambda r: r["judge_perplexity"]) if candidates else None
        print(f"\nAR at other settings (eligible: entropy >= {args.entropy_ratio:g} x human text's, {ar_bar:.3f}):\n")
        print("| decoding | judge PPL | entropy | distinct-2 | rep-4 | eligible |")
        print("|---|---:|---:|---:|---:|:-:|")
        for r in sorted([reference, *ar_rows], key=lambda r: r["judge_perplexity"]):
            print(f"| {r['decoding']} | {r['judge_perplexity']:.1f} | {r['entropy']:.3f} | {r['distinct_2']:.2f} | "
                  f"{r['repetition']:.3f} | {'yes' if r['entropy'] >= ar_bar else 'no'} |")
        if ar_best:
            print(f"\nAR recommended: {ar_best['decoding']}")
    report = measure_on_benchmark(lm, ar, judge, best, args) if args.report and best else None
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "model": args.model, "ar": args.ar, "length": args.length, "prompts": prompts,
            "entropy_ratio": args.entropy_ratio, "rows": rows, "ar_row": reference, "human": human_row,
            "ar_rows": ar_rows,
            "ar_recommended": ar_best and {k: ar_best[k] for k in ("temperature", "top_p", "top_k", "min_p")},
            "recommended": best and {k: best[k] for k in SETTING_KEYS},
            "report": report,
        }, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
