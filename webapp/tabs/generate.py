"""The Generate tab: a prompt (or a template with blanks), the sampler's settings, and the canvas
streamed step by step, for the masked, the continuous or the AR model."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass

import gradio as gr

import dlm
from dlm.config import REMASKING, SCHEDULES
from dlm.render import COLOR_MAP, highlight
from webapp.components import Number, Slider, canvas_box, model_or_error, ui_error, waiting_button
from webapp.models import gpu
from webapp.runs import check_positions, joined_texts, parse_generate_request, run_stats, start_generation
from dlm.generation import has_chat_template
from webapp.settings import (AR, CONTINUOUS, DEFAULT_MESSAGE, DEFAULT_PROMPT, DEFAULT_TEMPLATE, DIFFUSION, MAX_LENGTH, MAX_PROMPT_CHARS,
                             MAX_SAMPLES, MAX_SEED, MAX_STEPS, MIN_UPDATE_SECONDS, START,
                             STATE_TTL_SECONDS)


LEGEND = ("Colours: <span style='background:#d1d5db;padding:0 4px;border-radius:3px'>masked</span> "
          "<span style='background:#fde047;padding:0 4px;border-radius:3px'>new this step</span> "
          "<span style='background:#bfdbfe;padding:0 4px;border-radius:3px'>prompt</span> · by confidence: "
          "<span style='background:#86efac;padding:0 4px;border-radius:3px'>≥ 0.9</span> "
          "<span style='background:#fde047;padding:0 4px;border-radius:3px'>≥ 0.5</span> "
          "<span style='background:#fca5a5;padding:0 4px;border-radius:3px'>lower</span>")


def _canvas(trace: dlm.Trace, row: int, mode: str, label: str) -> gr.HighlightedText:
    return gr.HighlightedText(value=highlight(trace, -1 if trace.steps else None, row=row, mode=mode),
                              color_map=COLOR_MAP[mode], label=label, visible=True)


def _canvases(trace: dlm.Trace, mode: str) -> list[gr.HighlightedText]:
    shown = [_canvas(trace, row, mode, f"Sample {row + 1}" if trace.num_samples > 1 else "Canvas")
             for row in range(trace.num_samples)]
    return shown + [gr.HighlightedText(visible=False)] * (MAX_SAMPLES - len(shown))


@gpu
def generate(
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
):
    """Stream a generation: each update is the canvas after one step (Gradio handler, API /generate)."""
    if colours not in COLOR_MAP:
        raise ui_error(f"unknown colouring {colours!r}; choose from {sorted(COLOR_MAP)}")
    try:
        request = parse_generate_request(model, mode, text, length, steps, schedule, temperature, top_k, top_p,
                                         remasking, threshold, block_length, cache, guidance, seed,
                                         num_samples, allow_eos, temperature_end, min_p)
    except ValueError as error:
        raise ui_error(error) from None
    lm = model_or_error(request.role)
    try:
        check_positions({request.role: lm}, request)
        generation, note = start_generation(lm, request)
    except ValueError as error:
        raise ui_error(error) from None
    if note:
        gr.Info(html.escape(note, quote=False))
    total = generation.config.length if lm.kind == "causal" else generation.config.steps
    trace = generation.trace()
    yield *_canvases(trace, colours), run_stats(trace, total, False), "", gr.skip()
    last = float("-inf")  # the first step always goes out at once
    for _ in generation:  # safe across threads: the core enters inference mode around each step
        if time.perf_counter() - last >= MIN_UPDATE_SECONDS:
            trace = generation.trace()
            yield *_canvases(trace, colours), run_stats(trace, total, False), gr.skip(), gr.skip()
            last = time.perf_counter()
    trace = generation.trace()
    cached = {"key": request.key(lm.source), "trace": trace}
    yield *_canvases(trace, colours), run_stats(trace, total, True), joined_texts(trace.texts), cached


MODES = [("Continue a prompt", "continue"), ("Fill in the blanks", "infill")]
CHAT = ("Chat (instruct model)", "chat")


def mode_choices(models: list[dlm.LanguageModel | None]) -> gr.Radio:
    """The page load's Mode choices: chat only when one of the (loaded) generating models is an instruct
    model, i.e. its tokenizer has a chat template. The component is declared with all three, so the API
    takes mode 'chat' (a model without a template answers it with a clear error)."""
    chat = any(lm is not None and has_chat_template(lm) for lm in models)
    return gr.Radio(choices=MODES + [CHAT] if chat else MODES)


def switch_mode(mode: str):
    """Continue, fill in or chat: relabel the text box and show or hide the length."""
    if mode == "infill":
        return (gr.Textbox(label="Template (write [MASK] for each missing token)", value=DEFAULT_TEMPLATE),
                Slider(visible=False))
    if mode == "chat":
        return (gr.Textbox(label="Message (the model's chat template wraps it; the reply fills the canvas)",
                           value=DEFAULT_MESSAGE), Slider(visible=True))
    return gr.Textbox(label="Prompt (may be empty)", value=DEFAULT_PROMPT), Slider(visible=True)


def cap_steps(length, steps):
    """Keep the steps slider's maximum at the length."""
    length = int(length or 1)
    return Slider(maximum=min(MAX_STEPS, length), value=min(int(steps or 1), length))


def steps_maximum(length: int) -> Slider:
    """The page load's update of the steps slider: its maximum at the length it starts at. Per page only, so
    the API still accepts steps up to MAX_STEPS (Gradio keeps such updates in the page's session)."""
    return Slider(maximum=min(MAX_STEPS, length))


@dataclass
class GenerateTab:
    """The Generate tab's controls that the Animate tab reads and the page load may set."""

    inputs: list  # generate()'s inputs, in its order (the Animate tab renders a run with the same settings)
    last_run: gr.State  # the last streamed run, reused by the Animate tab when its settings match
    controls: list  # what a model recommends, in `recommended_controls`' order
    button: gr.Button
    mode: gr.Radio  # continue / infill, and chat once the page load finds an instruct model


def build(start: dlm.SamplerConfig, ready: bool) -> GenerateTab:
    """Lay out the tab and wire its events; call inside `with gr.Tab(...)`.

    start: what the controls show (the diffusion model's recommendations when they could be read);
    ready: False when they could not be, so the button waits for the page load to set them.
    """
    with gr.Row():
        with gr.Column(scale=2):
            mode = gr.Radio(MODES + [CHAT], value="continue", label="Mode", elem_id="mode")
            text = gr.Textbox(label="Prompt (may be empty)", value=DEFAULT_PROMPT, lines=3,
                              max_length=MAX_PROMPT_CHARS, elem_id="prompt")
            with gr.Row():
                length = Slider(1, MAX_LENGTH, value=start.length, step=1, label="Length (tokens)", elem_id="length")
                # declared up to MAX_STEPS, which the API may ask for (the handler checks steps <= length); the
                # page keeps its maximum at the length (steps_maximum on load, cap_steps when the length moves)
                steps = Slider(1, MAX_STEPS, value=start.steps, step=1, label="Steps", elem_id="steps",
                               info="fewer steps: more tokens revealed per step")
            with gr.Row():
                run_button = waiting_button("Generate", ready, elem_id="generate-button")
                stop_button = gr.Button("Stop", variant="stop")
        with gr.Column(scale=1):
            model_choice = gr.Radio([("Diffusion", DIFFUSION), ("Continuous diffusion", CONTINUOUS),
                                     ("Autoregressive", AR)], value=DIFFUSION, label="Model",
                                    info="masked diffusion, embedding-space diffusion, or AR; each ignores "
                                         "the settings it has no use for")
            colours = gr.Radio([("By state", "state"), ("By confidence", "confidence")], value="state",
                               label="Colour tokens")
            num_samples = Slider(1, MAX_SAMPLES, value=1, step=1, label="Number of samples")
            seed = Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
    with gr.Accordion("Sampler settings", open=False):
        with gr.Row():
            schedule = gr.Dropdown(sorted(SCHEDULES), value=start.schedule, label="Schedule",
                                   info="how many tokens each step reveals")
            remasking = gr.Dropdown(sorted(REMASKING), value=start.remasking, label="Remasking",
                                    info="which masked positions a step commits")
            threshold = Slider(0, 1, value=start.threshold or 0, step=0.05, label="Confidence threshold",
                               info="also commit every token at least this sure (0 = off)")
            block_length = Slider(0, MAX_LENGTH, value=start.block_length or 0, step=1, label="Block length",
                                  info="semi-autoregressive blocks (0 = one block)")
            kv_cache = gr.Dropdown([("off (exact)", "off"), ("prefix", "prefix"), ("dual", "dual")],
                                   value="off", label="Key/value cache",
                                   info="Fast-dLLM: reuse keys and values within a block; faster, approximate")
        with gr.Row():
            temperature = Slider(0, 2, value=start.temperature, step=0.05, label="Temperature",
                                 info="0 = greedy")
            temperature_end = Slider(0, 2, value=start.temperature_end or 0, step=0.05, label="Final temperature",
                                     info="diffusion: anneal to this by a block's last step (0 = constant)")
            top_k = Slider(0, 200, value=start.top_k, step=1, label="Top-k", info="0 = off")
            top_p = Slider(0.05, 1, value=start.top_p, step=0.05, label="Top-p", info="1 = off")
            min_p = Slider(0, 1, value=start.min_p, step=0.01, label="Min-p",
                           info="keep tokens at least this fraction as likely as the likeliest (0 = off)")
            guidance = Slider(0, 5, value=0, step=0.25, label="Guidance scale",
                              info="classifier-free guidance on the prompt (0 = off)")
            allow_eos = gr.Checkbox(value=True, label="Stop at end of text")
    stats = gr.Markdown("Press **Generate** to watch the canvas fill in, step by step.", elem_classes="stats",
                        elem_id="stats")
    canvases = [canvas_box("Canvas" if i == 0 else f"Sample {i + 1}", visible=i == 0, elem_id=f"canvas-{i}")
                for i in range(MAX_SAMPLES)]
    gr.Markdown(LEGEND, elem_classes="stats")
    final_text = gr.Textbox(label="Text", lines=3, interactive=False, buttons=["copy"], elem_id="final-text",
                            placeholder="The finished text appears here, ready to copy.")
    last_run = gr.State(None, time_to_live=STATE_TTL_SECONDS)

    inputs = [model_choice, mode, text, length, steps, schedule, temperature, top_k, top_p, remasking,
              threshold, block_length, kv_cache, guidance, seed, num_samples, allow_eos, colours, temperature_end,
              min_p]
    event = gr.on([run_button.click, text.submit], generate, inputs=inputs,
                  outputs=[*canvases, stats, final_text, last_run], api_name="generate",
                  concurrency_id="model", show_progress="minimal")
    stop_button.click(None, cancels=[event], api_visibility="private")
    mode.change(switch_mode, mode, [text, length], api_visibility="private", queue=False)
    length.input(cap_steps, [length, steps], steps, api_visibility="private", queue=False)
    controls = [length, steps, schedule, remasking, temperature, top_k, top_p, threshold, block_length,
                temperature_end, min_p]
    return GenerateTab(inputs, last_run, controls, run_button, mode)


def fit_to_app(settings: dlm.SamplerConfig, max_positions: int | None) -> dlm.SamplerConfig:
    """A model's recommended settings within the app's limits and its positions (room left for a prompt)."""
    length = min(settings.length, MAX_LENGTH, (max_positions or MAX_LENGTH) - 8)
    return settings.replace(length=length, steps=min(settings.steps, length))


def recommended_controls(settings: dlm.SamplerConfig, max_positions: int | None) -> tuple:
    """Updates setting the controls to a diffusion model's recommendations, in GenerateTab.controls' order."""
    s = fit_to_app(settings, max_positions)
    return (Slider(value=s.length), Slider(value=s.steps, maximum=s.length), gr.Dropdown(value=s.schedule),
            gr.Dropdown(value=s.remasking), Slider(value=s.temperature), Slider(value=s.top_k), Slider(value=s.top_p),
            Slider(value=s.threshold or 0), Slider(value=s.block_length or 0), Slider(value=s.temperature_end or 0),
            Slider(value=s.min_p))
