"""The Animate tab: a run (the Generate tab's) rendered as GIF, MP4 and an interactive HTML player,
and optionally raced against the AR model in a side-by-side GIF."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

import dlm
from dlm.render import COLOR_MAP
from dlm.render.snapshot import KIND_NAMES
from webapp.components import Slider, model_or_error, ui_error, waiting_button
from webapp.files import request_folder
from webapp.models import gpu
from webapp.runs import (GenerateRequest, as_int, check_positions, display_name, in_range, parse_generate_request,
                         start_generation)
from webapp.settings import (AR, DEFAULT_PROMPT, DIFFUSION, MAX_FRAME_MS, MIN_FRAME_MS, RACE_FRAMES, START)


def render_animation(trace: dlm.Trace, folder: Path, frame_ms: int, mode: str, title: str) -> list[Path]:
    """GIF, MP4 and the interactive HTML player of sample 0."""
    from dlm import render

    gif = render.to_gif(trace, folder / "denoising.gif", frame_ms=frame_ms, mode=mode, title=title)
    mp4 = render.to_mp4(trace, folder / "denoising.mp4", fps=1000 / frame_ms, mode=mode, title=title)
    page = folder / "denoising.html"
    render.to_html(trace, page, title=title)
    return [gif, mp4, page]


def render_race(traces: list[dlm.Trace], titles: list[str], folder: Path, mode: str) -> list[Path]:
    """Side-by-side GIF raced in real time (sped up to keep it under RACE_FRAMES frames) and its HTML."""
    from dlm import render

    frame_ms = 100
    duration = max(trace.seconds for trace in traces)
    speed = max(1.0, duration / ((RACE_FRAMES - 1) * frame_ms / 1000))
    gif = render.to_gif_side_by_side(traces, folder / "race.gif", titles=titles, frame_ms=frame_ms, speed=speed, mode=mode)
    page = folder / "race.html"
    render.to_html_side_by_side(traces, page, titles=titles)
    return [gif, page]


PENDING = (gr.skip(),) * 4  # an update that changes none of animate()'s outputs


@gpu
def animate(
    model: str = DIFFUSION,
    mode: str = "continue",
    text: str = DEFAULT_PROMPT,
    length: int = START.length,
    steps: int = START.steps,
    schedule: str = START.schedule,
    temperature: float = START.temperature,
    top_k: int = START.top_k,
    top_p: float = START.top_p,
    remasking: str = START.remasking,
    threshold: float = 0.0,
    block_length: int = 0,
    cache: str = "off",
    guidance: float = 0.0,
    seed: int = 0,
    num_samples: int = 1,
    allow_eos: bool = True,
    colours: str = "state",
    temperature_end: float = START.temperature_end or 0.0,
    min_p: float = START.min_p,
    frame_ms: int = 250,
    race_ar: bool = True,
    last_run: dict | None = None,
):
    """Render a run (the Generate tab's settings) as GIF, MP4 and HTML, and optionally the race GIF (API /animate)."""
    if colours not in COLOR_MAP:
        raise ui_error(f"unknown colouring {colours!r}; choose from {sorted(COLOR_MAP)}")
    try:
        request = parse_generate_request(model, mode, text, length, steps, schedule, temperature, top_k, top_p,
                                         remasking, threshold, block_length, cache, guidance, seed,
                                         num_samples, allow_eos, temperature_end, min_p)
        frame_ms = in_range(as_int(frame_ms, "frame speed (ms)"), "frame speed (ms)", MIN_FRAME_MS, MAX_FRAME_MS)
    except ValueError as error:
        raise ui_error(error) from None
    lm = model_or_error(request.role)
    race = race_ar and not request.infill  # an AR model cannot fill blanks: nothing to race then
    other_role = DIFFUSION if request.role == AR else AR
    used = {request.role: lm, **({other_role: model_or_error(other_role)} if race else {})}
    try:
        check_positions(used, request)  # every model the request uses, before the first one runs
        streamed = last_run is not None and last_run.get("key") == request.key(lm.source)
        if streamed:
            trace = last_run["trace"]  # the run the Generate tab just streamed: same settings, same seed
        else:
            trace = start_generation(lm, request)[0].run()
            yield PENDING  # between phases, never inside a timed run: Gradio drops the request here if its
            # client has gone or pressed Stop (a generator handler stops at its next yield)
        title = f"{display_name(lm.source)} · {KIND_NAMES[lm.kind]}"
        with request_folder() as folder:  # removed again if anything below fails
            files = render_animation(trace, folder, frame_ms, colours, title)
            yield PENDING  # an abandoned request stops here; the folder is removed on the way out
            race_gif, note = None, f"{len(trace.steps)} steps, {frame_ms} ms per frame."
            if trace.num_samples > 1:
                note += f" Sample 1 of {trace.num_samples} is animated."
            if race_ar and not race:
                note += " No race: an autoregressive model cannot fill blanks, so there is nothing to race."
            if race:
                other_request = GenerateRequest(other_role, False, request.text, request.seed, request.overrides,
                                                request.chat)
                other_trace = start_generation(used[other_role], other_request)[0].run()
                yield PENDING
                # a streamed run's clock also counts the pauses while its updates were sent: race a fresh one
                mine = start_generation(lm, request)[0].run() if streamed else trace
                pair = [other_trace, mine] if request.role == AR else [mine, other_trace]
                family = "continuous diffusion" if pair[0].kind == "continuous" else "diffusion"
                titles = [f"{family} · {pair[0].seconds:.2f} s", f"autoregressive · {pair[1].seconds:.2f} s"]
                race_files = render_race(pair, titles, folder, colours)
                race_gif = str(race_files[0])
                files += race_files
                note += " The race plays in real time (sped up when long): each column's clock is its own model's."
    except ValueError as error:
        raise ui_error(error) from None
    race_image = gr.Image(value=race_gif, visible=race_gif is not None)
    yield str(files[0]), [str(f) for f in files], race_image, note


def build(generate_inputs: list, last_run: gr.State, ready: bool) -> gr.Button:
    """Lay out the tab and wire its events; call inside `with gr.Tab(...)`. It renders runs with the
    Generate tab's settings (`generate_inputs`, in generate()'s order) and reuses its `last_run`."""
    gr.Markdown("Renders a run with the **Generate** tab's prompt and settings (the same seed gives the "
                "same text, so the run you just watched is reused). Downloads: an animated GIF, an MP4, "
                "and an interactive HTML player (play, scrub, hover a token for the model's guess).")
    with gr.Row():
        frame_ms = Slider(MIN_FRAME_MS, MAX_FRAME_MS, value=250, step=10, label="Frame speed (ms per step)")
        race_ar = gr.Checkbox(value=True, label="Also race diffusion against AR (side-by-side GIF)")
        button = waiting_button("Animate", ready, elem_id="animate-button")
    with gr.Row():
        gif_preview = gr.Image(type="filepath", label="Animation (GIF)", show_label=False, interactive=False,
                               elem_id="gif", scale=2, placeholder="The animation appears here after **Animate**.")
        downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads",
                            scale=1)
    race_preview = gr.Image(type="filepath", label="Diffusion vs AR (real time)", show_label=False,
                            interactive=False, visible=False, elem_id="race-gif")
    note = gr.Markdown("Nothing rendered yet: GIF, MP4 and HTML player appear for download after **Animate**.",
                       elem_classes="stats")
    button.click(animate, inputs=[*generate_inputs, frame_ms, race_ar, last_run],
                 outputs=[gif_preview, downloads, race_preview, note], api_name="animate", concurrency_id="model")
    return button
