"""The Compare tab: the diffusion and the AR model raced on one prompt, streamed side by side with
their own clocks, and the AR-vs-diffusion benchmark's quality-against-speed chart."""

from __future__ import annotations

import html
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

import dlm
from dlm.config import PARALLEL_RULES
from dlm.race import Lane, race
from dlm.render import COLOR_MAP, highlight
from webapp.components import Number, Slider, canvas_box, model_or_error, ui_error, waiting_button
from webapp.models import gpu
from webapp.runs import GenerateRequest, check_positions, parse_generate_request, start_generation
from webapp.settings import (AR, BENCH_RESULTS, DEFAULT_PROMPT, DIFFUSION, MAX_LENGTH, MAX_PROMPT_CHARS, MAX_SEED,
                             MAX_STEPS, MIN_UPDATE_SECONDS, MODEL_COLORS, ROOT, START)


METRIC_FORMATS = {
    "wall time (s)": "{:.2f}",
    "time to first step (s)": "{:.3f}",
    "tokens": "{:.0f}",
    "tokens/s": "{:,.0f}",
    "NFE (forward passes)": "{:.0f}",
    "time per token (ms)": "{:.1f}",
    "peak memory (MB)": "{:,.0f}",
}


def metrics_frame(metrics: dict[str, dict[str, float]]) -> pd.DataFrame:
    names = list(metrics)
    rows = [[metric] + [METRIC_FORMATS[metric].format(metrics[n][metric]) for n in names] for metric in METRIC_FORMATS]
    return pd.DataFrame(rows, columns=["metric"] + names)


def bar_frame(metrics: dict[str, dict[str, float]], metric: str) -> pd.DataFrame:
    return pd.DataFrame({"model": list(metrics), metric: [round(m[metric], 4) for m in metrics.values()]})


def peak_memory_note(cuda: bool) -> str:
    if cuda:
        return "Peak memory: `torch.cuda.max_memory_allocated` during each model's own steps."
    return (
        "Peak memory on CPU is the whole process's peak resident set size (`resource.getrusage`): "
        "both models live in one process, so it is shared, not per model."
    )


# first found: the bundled pair as bundled now (re-measured after each bundling, at the cards' settings), else
# the full sweep of every decoding family (an earlier pair), else a quick run
QUALITY_FILES = (BENCH_RESULTS / "ar_vs_diffusion_current.json", BENCH_RESULTS / "ar_vs_diffusion.json",
                 BENCH_RESULTS / "ar_vs_diffusion_quick.json")
QUALITY_LENGTH = 128  # the length the chart starts at (else the smallest measured)
QUALITY_COLORS = {"diffusion, fixed steps": "#6366f1", "diffusion, parallel decoding": "#a855f7",
                  "diffusion, semi-AR": "#14b8a6", "diffusion, semi-AR + KV cache": "#16a34a",
                  "continuous diffusion": "#0ea5e9",
                  AR: "#f97316", "human text (reference)": "#9ca3af"}


@dataclass(frozen=True)
class QualityChart:
    """One length of the AR-vs-diffusion benchmark: judge perplexity against wall time and NFE."""

    frame: pd.DataFrame | None  # a row per point: series, setting, wall time (s), NFE, judge perplexity; None: no chart
    note: str  # Markdown: where the numbers come from, or why there is no chart
    lengths: list[int]  # the lengths the file has
    length: int | None  # the one shown


def quality_chart(length: int | None = None) -> QualityChart:
    """The chart's points at one `length` (default QUALITY_LENGTH, else the smallest); lengths are never averaged.

    Reads the first of QUALITY_FILES that exists: the current pair, else the full sweep, else the quick one. Each diffusion
    setting (fixed steps, a parallel-decoding rule, semi-AR) is a point and AR is its own; human text, which has no
    time or NFE, is a row of dots at its judge perplexity. A missing or malformed file: a note, no chart.
    """
    path = next((p for p in QUALITY_FILES if p.is_file()), None)
    if path is None:
        names = " or ".join(f"`{_shown(p)}`" for p in QUALITY_FILES)
        return _no_chart(f"No quality data yet: the AR-vs-diffusion benchmark (`bench/ar_vs_diffusion.py`) has not "
                         f"been run here ({names} does not exist). The chart appears once it does.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return _no_chart(f"`{_shown(path)}` could not be read ({html.escape(str(error))}); no quality chart.")
    records = data.get("records") if isinstance(data, dict) else None
    points = [r for r in records if _quality_record(r)] if isinstance(records, list) else []
    if not points:
        return _no_chart(f"`{_shown(path)}` has no records with a length, wall time, NFE and judge perplexity; "
                         "no quality chart.")
    lengths = sorted({int(r["length"]) for r in points})
    if length is None:
        length = QUALITY_LENGTH if QUALITY_LENGTH in lengths else lengths[0]
    rows = [_quality_row(r) for r in points if r["length"] == length]
    if not rows:
        return QualityChart(None, f"`{_shown(path)}` has no records at length {length} (it has {lengths}).",
                            lengths, length)
    references = data.get("human") if isinstance(data.get("human"), list) else []
    human = [h for h in references
             if isinstance(h, dict) and h.get("length") == length and _finite(h.get("judge_perplexity"))]
    if human:  # a reference level: one dot under each measured point
        level = round(float(human[0]["judge_perplexity"]), 2)
        rows += [{**row, "series": "human text (reference)", "setting": "held-out human text", "judge perplexity": level}
                 for row in list(rows)]
    return QualityChart(pd.DataFrame(rows), _quality_note(path, data, length, bool(human)), lengths, length)


def _no_chart(note: str) -> QualityChart:
    return QualityChart(None, note, [], None)


def _quality_record(record) -> bool:
    keys = ("length", "wall_seconds", "nfe", "judge_perplexity")
    return isinstance(record, dict) and all(_finite(record.get(k)) for k in keys)


def _quality_row(record: dict) -> dict:
    if _is_ar(str(record.get("family") or "")):
        series, setting = AR, f"autoregressive ({record.get('model', '?')})"
    elif record.get("family") == "continuous":
        steps = f"{record['steps']:g}" if _finite(record.get("steps")) else "?"
        series, setting = "continuous diffusion", f"continuous diffusion, {steps} steps"
    elif record.get("decoding") == "fixed steps":  # the model's recommended sampler (its blocks included)
        steps = f"{record['steps']:g}" if _finite(record.get("steps")) else "?"
        blocks = f", blocks of {record['block_length']:g}" if _finite(record.get("block_length")) else ""
        series, setting = "diffusion, fixed steps", f"diffusion, {steps} steps{blocks}"
    elif any(_finite(record.get(rule)) for rule in PARALLEL_RULES):  # threshold, factor or entropy bound
        rule = next(r for r in PARALLEL_RULES if _finite(record.get(r)))
        detail = str(record.get("decoding") or f"{rule.replace('_', ' ')} {record[rule]:g}")
        series, setting = "diffusion, parallel decoding", f"diffusion, {detail}"
    elif _finite(record.get("block_length")):
        steps = f"{record['steps']:g}" if _finite(record.get("steps")) else "?"
        cache = record.get("cache")
        series = "diffusion, semi-AR + KV cache" if cache else "diffusion, semi-AR"
        setting = f"diffusion, {steps} steps, blocks of {record['block_length']:g}" + (f", {cache} cache" if cache else "")
    else:
        steps = f"{record['steps']:g}" if _finite(record.get("steps")) else "?"
        series, setting = "diffusion, fixed steps", f"diffusion, {steps} steps"
    return {"series": series, "setting": setting, "wall time (s)": round(float(record["wall_seconds"]), 4),
            "NFE": float(record["nfe"]), "judge perplexity": round(float(record["judge_perplexity"]), 2)}


def _quality_note(path: Path, data: dict, length: int, human: bool) -> str:
    """Where the chart's numbers come from: the file, the machine and the command that wrote it."""
    machine = data.get("machine") if isinstance(data.get("machine"), dict) else {}
    where = [str(machine[k]) for k in ("device", "cpu") if machine.get(k)]
    where += [f"{machine[k]} {name}" for k, name in (("cpu_count", "cores"), ("torch_threads", "torch threads"))
              if machine.get(k)]
    parts = [f"{length} tokens per continuation, from `{_shown(path)}`"]
    if where:
        parts.append(f"measured on {html.escape(', '.join(where))}")
    if isinstance(data.get("command"), str):
        parts.append(f"by `{data['command']}`")
    note = ", ".join(parts) + "."
    judge = data.get("judge") if isinstance(data.get("judge"), dict) else {}
    if judge.get("source"):
        note += f" Judge: `{judge['source']}`, its perplexity of each continuation given its prompt (lower is better)."
    if data.get("quick"):
        note += " A quick run: few prompts, so the points are rough."
    if human:
        note += " Grey dots: held-out human text's judge perplexity at this length (a reference level; it has no time)."
    return note


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def _is_ar(family: str) -> bool:
    return family.strip().lower() in ("ar", "causal", "autoregressive", "gpt2", "gpt-2")


@gpu
def compare(
    text: str = DEFAULT_PROMPT,
    length: int = START.length,
    steps: int = START.steps,
    temperature: float = START.temperature,
    seed: int = 0,
    colours: str = "state",
):
    """Race the diffusion and the AR model on one prompt, streaming both canvases (API /compare).

    Each model decodes the way its card recommends (the diffusion model's order, truncation and annealing;
    the AR model's temperature and truncation); the request sets the length, the diffusion steps, the
    diffusion temperature and the seed."""
    if colours not in COLOR_MAP:
        raise ui_error(f"unknown colouring {colours!r}; choose from {sorted(COLOR_MAP)}")
    try:
        request = parse_generate_request(DIFFUSION, "continue", text, length, steps, START.schedule, temperature, 0,
                                         START.top_p, START.remasking, 0, 0, "off", 0, seed, 1, False)
    except ValueError as error:
        raise ui_error(error) from None
    diffusion, ar = model_or_error(DIFFUSION), model_or_error(AR)
    own = {DIFFUSION: ("remasking", "schedule", "top_k", "top_p", "min_p"),
           AR: ("temperature", "top_k", "top_p", "min_p")}
    requests = {role: GenerateRequest(role, False, request.text, request.seed, {
        **request.overrides, **{k: getattr(lm.settings, k) for k in own[role]}}, request.chat)
        for role, lm in ((DIFFUSION, diffusion), (AR, ar))}
    try:
        check_positions({DIFFUSION: diffusion, AR: ar}, request)  # both, before either starts
        lanes = [Lane(DIFFUSION, start_generation(diffusion, requests[DIFFUSION])[0]),
                 Lane(AR, start_generation(ar, requests[AR])[0])]
    except ValueError as error:
        raise ui_error(error) from None
    totals = {DIFFUSION: lanes[0].generation.config.steps, AR: lanes[1].generation.config.length}

    def view(lane: Lane):
        trace = lane.generation.trace()
        canvas = gr.HighlightedText(value=highlight(trace, -1 if trace.steps else None, mode=colours), color_map=COLOR_MAP[colours])
        unit = "Step" if lane.name == DIFFUSION else "Token"
        head = "**Finished**" if lane.done else f"**{unit} {len(trace.steps)} / {totals[lane.name]}**"
        return canvas, f"{head} · NFE {trace.nfe} · {lane.clock:.2f} s"

    yield *view(lanes[0]), *view(lanes[1]), gr.skip(), gr.skip(), gr.skip(), gr.skip(), ""
    last = time.perf_counter()
    for _ in race(lanes):
        if time.perf_counter() - last >= MIN_UPDATE_SECONDS:
            yield *view(lanes[0]), *view(lanes[1]), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            last = time.perf_counter()
    metrics = {lane.name: lane.metrics() for lane in lanes}
    winner = min(lanes, key=lambda lane: lane.clock)
    loser = max(lanes, key=lambda lane: lane.clock)
    ratio = loser.clock / winner.clock if winner.clock else float("inf")
    note = (f"**{winner.name.capitalize()} finished first**, {ratio:.1f}× faster on its own clock. "
            f"Both wrote {request.overrides['length']} tokens (end-of-text off, so the work is equal). "
            + peak_memory_note(diffusion.device.type == "cuda"))
    yield (*view(lanes[0]), *view(lanes[1]), metrics_frame(metrics), bar_frame(metrics, "wall time (s)"),
           bar_frame(metrics, "tokens/s"), bar_frame(metrics, "NFE (forward passes)"), note)


def show_quality(length):
    """The benchmark chart at another length (the file is read again: a finished sweep shows without a restart)."""
    chart = quality_chart(length if isinstance(length, int) else None)
    return chart.note, gr.Row(visible=chart.frame is not None), chart.frame, chart.frame


def empty_metrics() -> pd.DataFrame:
    """The metrics table before the first race: every metric named, no values yet."""
    return pd.DataFrame([[metric, "–", "–"] for metric in METRIC_FORMATS], columns=["metric", DIFFUSION, AR])


def build(start: dlm.SamplerConfig, ready: bool) -> gr.Button:
    """Lay out the tab and wire its events; call inside `with gr.Tab(...)`. `start`: where the length,
    steps and temperature start (the diffusion model's recommendations); `ready`: see generate.build."""
    gr.Markdown("One prompt, both models, streamed side by side. They take turns in one thread, the one "
                "behind on its own clock going next, so neither slows the other and each clock counts only "
                "its own model's work.")
    with gr.Row():
        text = gr.Textbox(label="Prompt", value=DEFAULT_PROMPT, scale=4, max_length=MAX_PROMPT_CHARS,
                          elem_id="compare-prompt")
        seed = Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed", scale=1)
    with gr.Row():
        length = Slider(1, MAX_LENGTH, value=start.length, step=1, label="Length (tokens)")
        steps = Slider(1, MAX_STEPS, value=start.steps, step=1, label="Diffusion steps")
        temperature = Slider(0, 2, value=start.temperature, step=0.05, label="Diffusion temperature",
                             info="the AR model keeps its card's sampling")
    button = waiting_button("Race", ready, elem_id="race-button")
    with gr.Row():
        with gr.Column():
            diffusion_stats = gr.Markdown("Diffusion: waiting for **Race**.", elem_classes="stats")
            diffusion_canvas = canvas_box("Diffusion", elem_id="diffusion-canvas")
        with gr.Column():
            ar_stats = gr.Markdown("Autoregressive: waiting for **Race**.", elem_classes="stats")
            ar_canvas = canvas_box("Autoregressive", elem_id="ar-canvas")
    note = gr.Markdown()
    metrics_table = gr.Dataframe(empty_metrics(), label="Metrics (filled in when a race ends)", interactive=False,
                                 elem_id="metrics")
    with gr.Row():
        plot_args = dict(x="model", color="model", color_map=MODEL_COLORS, colors_in_legend=[], sort=[DIFFUSION, AR],
                         y_lim=[0, None], x_title=" ", height=240, show_label=False)
        wall_plot = gr.BarPlot(y="wall time (s)", y_title="seconds", title="Wall time (lower is better)", **plot_args)
        speed_plot = gr.BarPlot(y="tokens/s", y_title="tokens/s", title="Tokens per second (higher is better)",
                                **plot_args)
        nfe_plot = gr.BarPlot(y="NFE (forward passes)", y_title="NFE", title="Forward passes (lower is better)",
                              **plot_args)
    chart = quality_chart()
    gr.Markdown("### Quality against speed (the benchmark)")
    with gr.Row():
        quality_length = gr.Dropdown(chart.lengths, value=chart.length, label="Length (tokens)",
                                     visible=len(chart.lengths) > 1, scale=0, min_width=160)
        quality_md = gr.Markdown(chart.note, elem_classes="stats")
    with gr.Row(visible=chart.frame is not None) as quality_row:
        quality_args = dict(y="judge perplexity", color="series", color_map=QUALITY_COLORS, y_lim=[0, None],
                            y_title="judge perplexity (lower is better)", height=300, show_label=False,
                            tooltip=["setting", "wall time (s)", "NFE", "judge perplexity"])
        quality_wall = gr.ScatterPlot(chart.frame, x="wall time (s)", x_title="wall time per sample (s)",
                                      title="Quality against wall time", **quality_args)
        quality_nfe = gr.ScatterPlot(chart.frame, x="NFE", x_title="forward passes (NFE)",
                                     title="Quality against forward passes", **quality_args)

    button.click(compare, inputs=[text, length, steps, temperature, seed],
                 outputs=[diffusion_canvas, diffusion_stats, ar_canvas, ar_stats, metrics_table, wall_plot,
                          speed_plot, nfe_plot, note],
                 api_name="compare", concurrency_id="model", show_progress="minimal")
    quality_length.change(show_quality, quality_length, [quality_md, quality_row, quality_wall, quality_nfe],
                          api_visibility="private", queue=False)
    return button
