"""The Learn tab: how masked diffusion and AR differ, told with timings measured on this machine and
the held-out perplexities from bench/results/."""

from __future__ import annotations

import html
import json
import threading
from dataclasses import dataclass

import gradio as gr

import dlm
from webapp import models
from webapp.components import ui_warning
from webapp.settings import AR, BENCH_RESULTS, DIFFUSION


def read_bench(name: str) -> dict | None:
    path = BENCH_RESULTS / name
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Tradeoffs:
    """Timings of one matched pair on this machine, measured by `measure_tradeoffs`."""

    length: int
    device: str
    rows: list[dict]  # one per setting: setting, seconds, nfe, tokens_per_second


_TRADEOFFS: dict[str, Tradeoffs] = {}
_TRADEOFFS_LOCK = threading.Lock()


def measure_tradeoffs(diffusion: dlm.LanguageModel, ar: dlm.LanguageModel, length: int = 64) -> Tradeoffs:
    """Seconds and forward passes for `length` tokens: AR, and diffusion at L, L/4 steps and with a
    confidence threshold. Measured once per process (after a warm-up run) and cached."""
    key = f"{diffusion.source}|{ar.source}|{length}"
    with _TRADEOFFS_LOCK:
        if key in _TRADEOFFS:
            return _TRADEOFFS[key]
        prompt = "The"
        settings = [
            (f"autoregressive, {length} tokens, KV cache", ar, {}),
            (f"diffusion, {length} steps (one token per step)", diffusion, {"steps": length}),
            (f"diffusion, {length // 4} steps", diffusion, {"steps": length // 4}),
            (f"diffusion, {length} steps, threshold 0.9", diffusion, {"steps": length, "threshold": 0.9}),
        ]
        dlm.generate(diffusion, prompt, length=8, steps=2, seed=0)  # warm-up: first calls are slow
        dlm.generate(ar, prompt, length=8, seed=0)
        rows = []
        for name, lm, overrides in settings:
            trace = dlm.generate(lm, prompt, length=length, allow_eos=False, temperature=0.0, seed=0, **overrides)
            rows.append({"setting": name, "seconds": trace.seconds, "nfe": trace.nfe,
                         "tokens_per_second": length / trace.seconds if trace.seconds else 0.0})
        result = Tradeoffs(length, str(diffusion.device), rows)
        _TRADEOFFS[key] = result
        return result


def learn_markdown(tradeoffs: Tradeoffs | None, diffusion: dlm.LanguageModel | None, ar: dlm.LanguageModel | None) -> str:
    """The Learn tab: the differences, told with numbers our own code measured."""
    parts = [LEARN_INTRO]
    parts.append("## Measured here")
    if tradeoffs is None:
        parts.append("_Timing both models on this machine…_")
    else:
        parts.append(
            f"Both models write the same {tradeoffs.length} tokens after the prompt “The”, greedy, end-of-text off, "
            f"on this machine ({tradeoffs.device}), timed by `dlm.generate`:\n"
        )
        parts.append("| setting | seconds | forward passes (NFE) | tokens/s |\n|---|---:|---:|---:|")
        for row in tradeoffs.rows:
            parts.append(f"| {row['setting']} | {row['seconds']:.2f} | {row['nfe']} | {row['tokens_per_second']:,.0f} |")
        ar_row, full, quarter, thresh = tradeoffs.rows
        diffusion_pass = full["seconds"] / full["nfe"]
        ar_step = ar_row["seconds"] / ar_row["nfe"]
        break_even = ar_row["seconds"] / diffusion_pass  # diffusion steps that take as long as the AR run
        parts.append("")
        parts.append(
            f"- One diffusion pass (over the whole canvas) took {diffusion_pass * 1000:.1f} ms, one AR step (one new "
            f"position, the rest cached) {ar_step * 1000:.1f} ms: a pass costs {diffusion_pass / ar_step:.1f}× a step here."
        )
        parts.append(
            f"- So on this machine diffusion is faster than AR for {tradeoffs.length} tokens when it takes fewer than "
            f"about **{break_even:.0f} steps**. At {tradeoffs.length // 4} steps (4 tokens per pass) it took "
            f"{quarter['seconds']:.2f} s against AR's {ar_row['seconds']:.2f} s. Fewer steps cost quality: the "
            "Compare tab's chart shows how much, once the benchmark has run."
        )
        if thresh["nfe"] < full["nfe"]:
            parts.append(
                f"- With a confidence threshold of 0.9 the sampler also commits every token it is at least 90% sure "
                f"of: {thresh['nfe']} forward passes instead of {full['nfe']}."
            )
        else:
            parts.append(
                f"- With a confidence threshold of 0.9 the sampler may commit several tokens per pass, but this model "
                f"was rarely that sure here: {thresh['nfe']} forward passes, as many as without it."
            )
    perplexity = read_bench("perplexity.json")
    if perplexity and perplexity.get("rows"):
        parts.append("\n### Held-out perplexity (`bench/perplexity.py`)\n")
        parts.append("| model | kind | perplexity | tokens |\n|---|---|---:|---:|")
        for source, row in perplexity["rows"].items():
            bound = "≤ " if not row.get("exact") else ""
            parts.append(f"| {html.escape(source)} | {row.get('kind', '')} | {bound}{row['perplexity']:.2f} | {row.get('tokens', '')} |")
        parts.append(f"\nOn {perplexity.get('texts', '?')} held-out texts. The diffusion figure is an upper bound (its ELBO); "
                     "AR's is exact. Same tokenizer, same texts.")
    else:
        cards = [(name, lm) for name, lm in ((DIFFUSION, diffusion), (AR, ar)) if lm is not None]
        found = [(name, lm.card.get("training", {}).get("perplexity")) for name, lm in cards]
        found = [(name, p) for name, p in found if isinstance(p, (int, float))]
        if found:
            parts.append("\n### Held-out perplexity (from training, in each model's card)\n")
            parts.append("| model | perplexity |\n|---|---:|")
            for name, p in found:
                bound = "≤ " if name == DIFFUSION else ""
                parts.append(f"| {name} | {bound}{p:.2f} |")
            parts.append("\nThe diffusion figure is an upper bound (its ELBO); AR's is exact.")
    parts.append(LEARN_WHEN)
    return "\n".join(parts)


LEARN_INTRO = """
## Two ways to write text

| | Masked diffusion | Autoregressive (AR) |
|---|---|---|
| **Attention** | bidirectional: every position sees the whole canvas, left and right | causal: a token sees only the tokens before it |
| **How text appears** | starts as all `[MASK]`; each step reveals some positions, in any order | one token per step, left to right |
| **One step costs** | a forward pass over the whole canvas (prompt + every position) | a forward pass over one new position (keys and values of the rest are cached) |
| **Number of steps** | you choose, from the length down to 1: fewer steps = faster, rougher | exactly one per token |
| **Blanks in the middle, fixed endings** | native: mask any positions and fill them | not without tricks: it only continues |
| **Likelihood of a text** | a lower bound (the ELBO), estimated by Monte Carlo over masks | exact, in one pass |

The bundled pair (`default`, `default-ar`) is matched: the same tokenizer, training text, token budget
and number of parameters, so the differences below come from the way they generate, not from one
being bigger or better fed.
"""


LEARN_WHEN = """
## When each wins

- **Diffusion**: filling blanks and constrained text (it sees both sides of a gap), and writing
  several tokens per forward pass (fewer steps, or threshold decoding) when quality holds; the
  faster one pass runs relative to a KV-cached AR step (a GPU runs a whole canvas nearly as fast as
  one position), the more that pays.
- **AR**: exact likelihoods, no step count to tune, and a cheap step thanks to the KV cache.

Watch both in the **Compare** tab: the same prompt, the same length, raced on their own clocks.
"""


def learn(measure: bool = True):
    """The Learn tab's text, with timings measured on this machine (API /learn)."""
    diffusion = ar = tradeoffs = None
    try:
        diffusion, ar = models.MODELS.get(DIFFUSION), models.MODELS.get(AR)
        if measure:
            tradeoffs = measure_tradeoffs(diffusion, ar)
    except (ValueError, OSError) as error:
        ui_warning(f"could not measure: {error}")
    return learn_markdown(tradeoffs, diffusion, ar)


def build(tab: gr.Tab) -> None:
    """The tab's text, measured when the tab is opened (API /learn), and its measure-again button; call
    inside `with gr.Tab(...) as tab:`."""
    text = gr.Markdown(learn_markdown(None, None, None))
    again = gr.Button("Measure again on this machine", size="sm")
    tab.select(learn, None, text, api_name="learn", concurrency_id="model")
    again.click(learn, None, text, api_visibility="private", concurrency_id="model")
