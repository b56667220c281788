"""Model cards: YAML metadata the Hub reads, the numbers a user needs, and unedited samples.

The diffusion settings themselves live in `config.json` under "dlm" (see `dlm.loading`), so
`dlm.load(REPO_ID)` configures the sampler with no flags; the card repeats them for people.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

PIPELINE_TAG = {"masked": "fill-mask", "causal": "text-generation", "continuous": "text-generation"}
TAGS = {"masked": ["text-diffusion", "masked-diffusion", "dlm"], "causal": ["autoregressive", "dlm-baseline", "dlm"],
        "continuous": ["text-diffusion", "continuous-diffusion", "diffusion-lm", "dlm"]}
OFF_WHEN_ZERO = ("block_length", "threshold", "factor", "entropy_bound", "temperature_end")  # `refresh`: 0 removes the setting
TITLES = {"masked": "dlm masked-diffusion model", "causal": "dlm autoregressive baseline",
          "continuous": "dlm continuous-diffusion model"}


def load_snippet(info: dict, folder: Path) -> list[str]:
    """The card's "load it with" code block (markdown lines)."""
    name = info.get("load_name") or info.get("repo_id") or folder.name
    return ["", "```python", "import dlm", f'lm = dlm.load("{name}")  # settings come from config.json',
            'print(dlm.generate(lm, "It was a bright cold day", seed=0).texts[0])', "```"]


def generate_samples(folder: str | Path, num_samples: int, prompts: list[str] | None = None) -> list[dict]:
    """Unedited samples from the saved model with its recommended settings, seeds 0..n-1."""
    import dlm

    lm = dlm.load(str(folder))
    prompts = prompts or [""]
    samples = []
    for seed in range(num_samples):
        prompt = prompts[seed % len(prompts)]
        trace = dlm.generate(lm, prompt, seed=seed)
        samples.append({"prompt": prompt, "seed": seed, "text": trace.texts[0], "nfe": trace.nfe})
    return samples


def write_card(folder: str | Path, *, title: str, kind: str, info: dict, samples: list[dict]) -> Path:
    """README.md with Hub metadata. `info` holds the run's facts (see the trainers' `run_info`)."""
    folder = Path(folder)
    settings = info.get("settings", {})
    metadata = {
        "library_name": "transformers",
        "pipeline_tag": PIPELINE_TAG[kind],
        "tags": TAGS[kind],
        "license": "mit",
        "datasets": info.get("datasets", []),
        "metrics": ["perplexity" if kind != "continuous" else "loss"],
        "model-index": [{
            "name": title,
            "results": [{
                "task": {"type": PIPELINE_TAG[kind]},
                "dataset": {"name": info.get("data", ""), "type": "text"},
                "metrics": [_headline_metric(kind, info)],
            }],
        }],
    }
    base = info.get("base_model")
    if base and base.count("/") == 1 and not Path(base).exists():  # the Hub reads it: repo ids, not folders or bundled names
        metadata["base_model"] = base
    lines = ["---", yaml.safe_dump(metadata, sort_keys=False).rstrip(), "---", "", f"# {title}", ""]
    if kind == "masked":
        lines += [
            "A masked (discrete) diffusion language model trained with the `dlm` project: generation starts",
            "from a canvas of `<mask>` tokens and reveals a few of them per step. Load it with",
            *load_snippet(info, folder),
        ]
        if info.get("init_from_ar"):
            lines += ["", f"It was initialised from the autoregressive model `{info['init_from_ar']}` (Dream / "
                      "DiffuLLaMA style): the same architecture and weights, with bidirectional attention and the "
                      "logits shifted by one, so the output at position i - 1 predicts the token at i (`dlm.shifted`)."]
    elif kind == "continuous":
        lines += [
            "A continuous (embedding-space) diffusion language model in the style of Diffusion-LM, trained with",
            "the `dlm` project: generation starts from Gaussian noise over the token embeddings, a transformer",
            "predicts the clean embeddings at every step (DDIM or DDPM), and the prediction is rounded to tokens.",
            "It is a `dlm.continuous.ContinuousDiffusionLM` (no remote code). Load it with",
            *load_snippet(info, folder),
        ]
    else:
        lines += [
            "An autoregressive (GPT-2-style) baseline trained with the `dlm` project on the same tokenizer,",
            "data and token budget as its diffusion counterpart, so the two can be compared fairly.",
        ]
    lines += ["", "## Training", "", "| | |", "|---|---|"]
    rows = [
        ("data", info.get("data")),
        ("command", f"`{info.get('command')}`"),
        ("parameters", f"{info.get('parameters', 0):,}"),
        ("steps", info.get("steps")),
        ("tokens seen", f"{info.get('tokens_seen_total') or info.get('tokens_seen', 0):,}"
                        + (f" ({info['tokens_seen']:,} in this run)" if info.get('start_tokens') else "")),
        ("wall time", f"{info.get('wall_seconds', 0) / 60:.1f} min"),
        ("hardware", info.get("hardware")),
        ("note", info.get("note")),
        ("throughput", f"{info.get('tokens_per_second', 0):,.0f} tokens/s"),
    ]
    if kind == "continuous":
        evaluation = info.get("evaluation", {})
        rows.append(("held-out loss", f"{info.get('eval_loss', float('nan')):.3f} (x0 MSE {evaluation.get('mse', float('nan')):.3f} "
                     f"+ rounding cross-entropy {evaluation.get('ce', float('nan')):.3f}, averaged over t; not a likelihood)"))
    else:
        rows.append(("held-out perplexity", f"{info.get('perplexity', float('nan')):.2f}"
                     + (" (ELBO bound, same held-out blocks as the AR baseline)" if kind == "masked" else " (exact)")))
    lines += [f"| {k} | {v} |" for k, v in rows if v is not None]
    if kind == "masked":
        lines += ["", "## Diffusion settings (also in `config.json` under `dlm`)", "", "```json",
                  json.dumps({k: info["dlm"][k] for k in ("mask_token", "shifted", "attention", "prefix", "sampler")
                              if k in info["dlm"]}, indent=2), "```"]
        lines += ["", "Training: " + info["dlm"].get("objective", "")]
    if kind == "continuous":
        lines += ["", "## Diffusion settings (also in `config.json` under `dlm`)", "", "```json",
                  json.dumps({k: info["dlm"][k] for k in ("prefix", "sampler")}, indent=2), "```"]
        lines += ["", "Training: " + info["dlm"].get("objective", "")]
    lines += ["", f"## Five unedited samples ({_describe(settings)})", ""]
    for sample in samples:
        prompt = f"prompt {sample['prompt']!r}" if sample["prompt"] else "no prompt"
        lines += [f"**seed {sample['seed']}, {prompt}, {sample['nfe']} forward passes**", "",
                  "> " + (sample["text"] or "(empty)").replace("\n", " "), ""]
    lines += ["## Limits", "",
              f"A model of {info.get('parameters', 0) / 1e6:.1f}M parameters that has seen {(info.get('tokens_seen_total') or info.get('tokens_seen', 0)) / 1e6:.1f}M tokens: "
              "expect locally plausible, globally incoherent text. It is a demo and a baseline, not an assistant."]
    path = folder / "README.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _headline_metric(kind: str, info: dict) -> dict:
    if kind == "continuous":
        return {"type": "loss", "value": round(info.get("eval_loss", float("nan")), 4),
                "name": "held-out denoising loss (x0 MSE + rounding cross-entropy)"}
    return {"type": "perplexity", "value": round(info.get("perplexity") or float("nan"), 3),
            "name": "held-out ELBO perplexity" if kind == "masked" else "held-out perplexity"}


def _describe(settings: dict) -> str:
    keys = ("length", "steps", "remasking", "temperature", "temperature_end", "top_p", "top_k", "min_p", "block_length",
            "threshold", "factor", "entropy_bound", "solver", "rounding", "clamp", "cfg_scale")
    return ", ".join(f"{k} {settings[k]}" for k in keys
                     if k in settings and not (k in ("top_k", "min_p") and not settings[k]))


def refresh(folder: str | Path, num_samples: int = 5, **sampler) -> Path:
    """Change a trained model's recommended sampler settings, then redo its samples and card.

    The settings go into config.json under dlm.sampler (what `dlm.load` hands the sampler), merged into
    the ones there; 0 for one of the OFF_WHEN_ZERO settings removes it (blocks of 32 back to one block,
    a threshold rule back to a fixed schedule). The run's facts come from the dlm_run.json its trainer wrote.
    """
    folder = Path(folder)
    config_path, run_path = folder / "config.json", folder / "dlm_run.json"
    if not run_path.is_file():
        raise ValueError(f"{str(folder)!r} has no dlm_run.json: only folders written by dlm's trainers can be refreshed")
    config = json.loads(config_path.read_text())
    block = config.get("dlm", {})
    merged = {**block.get("sampler", {}), **{k: v for k, v in sampler.items() if v is not None}}
    block["sampler"] = {k: v for k, v in merged.items() if not (k in OFF_WHEN_ZERO and v == 0)}
    config["dlm"] = block
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    info = json.loads(run_path.read_text())
    info["settings"] = block["sampler"]
    info["dlm"] = {**info.get("dlm", {}), **block}
    info["samples"] = generate_samples(folder, num_samples)
    run_path.write_text(json.dumps(info, indent=2))
    kind = block.get("kind", "masked")
    return write_card(folder, title=TITLES[kind], kind=kind, info=info, samples=info["samples"])


def main(argv: list[str] | None = None) -> int:
    """python -m training.card RUN_DIR [--steps N --remasking R ...]: new recommended settings, new samples."""
    import argparse
    import sys

    from dlm.cli import ROUNDINGS, SOLVERS
    from dlm.config import REMASKING, SCHEDULES

    parser = argparse.ArgumentParser(prog="python -m training.card", description=refresh.__doc__)
    parser.add_argument("folder", help="a run folder, or a bundled model's name (refreshed in place)")
    parser.add_argument("--num-samples", type=int, default=5)
    for name, kind in (("length", int), ("steps", int), ("temperature", float), ("temperature_end", float),
                       ("top_p", float), ("top_k", int), ("min_p", float),
                       ("threshold", float), ("factor", float), ("entropy_bound", float), ("block_length", int)):
        parser.add_argument("--" + name.replace("_", "-"), type=kind,
                            help="0 = constant" if name == "temperature_end" else
                            "0 = off (one block, no parallel-commit rule)" if name in OFF_WHEN_ZERO else None)
    parser.add_argument("--remasking", choices=sorted(REMASKING))
    parser.add_argument("--schedule", choices=sorted(SCHEDULES))
    parser.add_argument("--cfg-scale", type=float)
    parser.add_argument("--solver", choices=SOLVERS, help="continuous models")
    parser.add_argument("--rounding", choices=ROUNDINGS, help="continuous models")
    parser.add_argument("--clamp", action=argparse.BooleanOptionalAction, help="continuous models")
    args = vars(parser.parse_args(argv))
    from training.common import resolve_init

    folder, num_samples = Path(resolve_init(args.pop("folder"))), args.pop("num_samples")
    try:
        print(refresh(folder, num_samples, **args))
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
