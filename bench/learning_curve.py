"""Held-out perplexity against training tokens seen, for one or more training runs.

    python bench/learning_curve.py runs/diffusion-long runs/ar-long --json bench/results/learning_curve.json

Reads each run's evaluations from the trainer state of its last checkpoint (`eval_perplexity` every
--eval-steps: the ELBO bound on fixed masks for a masked model, the exact perplexity for a causal one)
and the tokens each step consumed. A run continued from an earlier checkpoint (`--init`) starts its
count at the tokens that checkpoint had already seen (its `dlm_run.json`), so continued runs and
their starting points share one axis. For every run the table says where it stopped improving: the
first evaluation after which no later one is more than --tolerance (relative) better. A run trained
with `--ema` also shows its weight average's perplexity at each evaluation.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.common import RUN_FILE  # noqa: E402


def read_run(folder: Path) -> dict:
    """The evaluations of one run: [(step, tokens seen in total, perplexity)], with what the run was."""
    states = sorted(folder.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    record = json.loads((folder / RUN_FILE).read_text()) if (folder / RUN_FILE).is_file() else {}
    if not states:
        raise FileNotFoundError(f"no checkpoint-*/trainer_state.json in {folder}")
    state = json.loads(states[-1].read_text())
    config = json.loads((states[-1].parent / "config.json").read_text())
    init = record.get("base_model")
    start = record.get("start_tokens")
    if start is None:  # a run from before the start record: a continued model's config still carries its training block
        start = config.get("dlm", {}).get("training", {}).get("tokens_seen", 0)
    seen = {h["step"]: h["num_input_tokens_seen"] for h in state["log_history"] if "num_input_tokens_seen" in h}
    per_step = _tokens_per_step(seen)
    points = []
    # --ema: `ema_perplexity` for the first decay, `ema-DECAY_perplexity` for more
    averaged = {(h["step"], k): v for h in state["log_history"] for k, v in h.items() if AVERAGE.fullmatch(k)}
    for h in state["log_history"]:
        if "eval_perplexity" in h:
            points.append({"step": h["step"], "tokens": start + h["step"] * per_step,
                           "perplexity": h["eval_perplexity"]})
            points[-1].update({k: v for (step, k), v in averaged.items() if step == h["step"]})
    kind = "causal" if any(a.endswith(("CausalLM", "LMHeadModel")) for a in config.get("architectures", [])) else "masked"
    return {"run": str(folder), "kind": kind, "init": init, "start_tokens": start, "tokens_per_step": per_step,
            "points": points}


AVERAGE = re.compile(r"ema(-[0-9.e-]+)?_perplexity")  # an --ema average's held-out perplexity in the log


def _tokens_per_step(seen: dict[int, int]) -> int:
    steps = sorted(s for s in seen if s > 0)
    if not steps:
        raise ValueError("the trainer state records no tokens seen (include_num_input_tokens_seen)")
    return round(seen[steps[-1]] / steps[-1])


def plateau(points: list[dict], tolerance: float) -> dict | None:
    """The first evaluation after which no later one improves on it by more than `tolerance` (relative)."""
    for i, point in enumerate(points):
        if all(later["perplexity"] > point["perplexity"] * (1 - tolerance) for later in points[i + 1:]):
            return point
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="training output folders")
    parser.add_argument("--tolerance", type=float, default=0.01, help="relative improvement that still counts")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    try:
        curves = [read_run(folder) for folder in args.runs]
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for curve in curves:
        curve["plateau"] = plateau(curve["points"], args.tolerance)
        print(f"\n{curve['run']} ({curve['kind']}; started at {curve['start_tokens'] / 1e6:.2f}M tokens"
              f"{' from ' + curve['init'] if curve['init'] else ''})\n")
        averages = sorted({k for p in curve["points"] for k in p if AVERAGE.fullmatch(k)},
                          key=lambda k: (k != "ema_perplexity", k))
        header = ["weight average (--ema)" if k == "ema_perplexity" else f"average {k.removesuffix('_perplexity')}"
                  for k in averages]
        print("| step | tokens seen | held-out perplexity |" + "".join(f" {h} |" for h in header))
        print("|---:|---:|---:|" + "---:|" * len(averages))
        for p in curve["points"]:
            bound = "≤ " if curve["kind"] == "masked" else ""
            row = f"| {p['step']} | {p['tokens'] / 1e6:.2f}M | {bound}{p['perplexity']:.2f} |"
            row += "".join(f" {bound}{p[k]:.2f} |" if k in p else " |" for k in averages)
            print(row)
        stop = curve["plateau"]
        if stop and stop is not curve["points"][-1]:
            print(f"\nstops improving (by more than {args.tolerance:.0%}) after {stop['tokens'] / 1e6:.2f}M tokens "
                  f"(step {stop['step']}, perplexity {stop['perplexity']:.2f})")
        else:
            print(f"\nstill improving (by more than {args.tolerance:.0%}) at its last evaluation")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"tolerance": args.tolerance, "curves": curves}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
