"""Generation requests shared by the Generate, Animate and Compare tabs: checked fields, the run
started from them, and how a run is reported. No Gradio in here: errors are ValueErrors meant for the user."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dlm
from dlm.config import CACHES, REMASKING, SCHEDULES
from dlm.race import filled_tokens
from webapp.limits import check_generation_work
from webapp.settings import (AR, CONTINUOUS, DIFFUSION, MAX_LENGTH, MAX_PROMPT_CHARS, MAX_SAMPLES, MAX_SEED,
                             MAX_STEPS)

MODES = ("continue", "infill", "chat")  # a prompt to continue, a template with blanks, a message to an instruct model


@dataclass(frozen=True)
class GenerateRequest:
    """A validated generation request."""

    role: str  # DIFFUSION or AR
    infill: bool  # True: fill the [MASK] blanks of `text`; False: continue `text`
    text: str  # the prompt, or the infilling template
    seed: int
    overrides: dict  # SamplerConfig fields
    chat: bool = False  # True: `text` is a user message, wrapped in the model's chat template

    def key(self, source: str) -> str:
        """Identifies the run (same key, same text: the sampler is seeded)."""
        return json.dumps([source, self.role, self.infill, self.text, self.seed, self.overrides, self.chat],
                          sort_keys=True)

    def prompt(self, lm: dlm.LanguageModel) -> str:
        """What `lm` continues: the text, or in chat mode the text as a user turn in `lm`'s chat template."""
        return dlm.chat_prompt(lm, self.text) if self.chat else self.text


def as_int(value, name: str) -> int | None:
    """An integer from a UI or API value (floats from sliders allowed when whole)."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a whole number, got {value!r}") from None
    if not math.isfinite(number) or number != int(number):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(number)


def as_float(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def in_range(value: int | None, name: str, low: int, high: int) -> int:
    if value is None or not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def check_text(value: str, name: str) -> str:
    """`value`, refused when it holds a lone surrogate: JSON can carry one (an escape like \\ud800 that is half
    of a UTF-16 pair), but it is no character, and neither the tokenizer nor the page's UTF-8 can take it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        code = ord(value[error.start])
        raise ValueError(f"a lone surrogate (U+{code:04X}) at character {error.start + 1} of the {name}: half of a "
                         "UTF-16 pair, not a character; send the text as valid Unicode") from None
    return value


def parse_generate_request(
    model: str,
    mode: str,
    text: str,
    length,
    steps,
    schedule: str,
    temperature,
    top_k,
    top_p,
    remasking: str,
    threshold,
    block_length,
    cache: str | None,
    guidance,
    seed,
    num_samples,
    allow_eos: bool,
    temperature_end=None,
    min_p=None,
) -> GenerateRequest:
    """Check every field of a generation request; ValueError with a message meant for the user.

    temperature_end: the temperature at a block's last step (annealed from `temperature`; greedy ignores
    it); 0 = constant, None = the model's recommendation. min_p: 0 = off, None = the model's recommendation."""
    if model not in (DIFFUSION, AR, CONTINUOUS):
        raise ValueError(f"unknown model {model!r}; choose from {[DIFFUSION, AR, CONTINUOUS]}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose 'continue' (a prompt), 'infill' (a template with [MASK]) "
                         "or 'chat' (a message to an instruct model)")
    text = check_text(text or "", "text")
    if len(text) > MAX_PROMPT_CHARS:
        raise ValueError(f"the text is {len(text):,} characters; the limit is {MAX_PROMPT_CHARS:,}")
    infill, chat = mode == "infill", mode == "chat"
    if chat and not text.strip():
        raise ValueError("the message is empty: write what you ask the instruct model")
    if infill and model == AR:
        raise ValueError("filling in blanks needs the diffusion model: an autoregressive model only continues text")
    length = as_int(length, "length")
    steps = as_int(steps, "steps")
    if not infill:
        if not text.strip() and not length:
            raise ValueError("the prompt is empty and no length is set: write a prompt, or choose how many tokens to generate")
        in_range(length, "length", 1, MAX_LENGTH)
        in_range(steps, "steps", 1, MAX_STEPS)
        if model != AR and steps > length:
            raise ValueError(f"steps ({steps}) cannot exceed the length ({length}): every step reveals at least one token")
    else:
        if not text.strip():
            raise ValueError("the template is empty: write a text with [MASK] where tokens are missing")
        in_range(steps, "steps", 1, MAX_STEPS)
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose from {sorted(SCHEDULES)}")
    if remasking not in REMASKING:
        raise ValueError(f"unknown remasking {remasking!r}; choose from {sorted(REMASKING)}")
    threshold = as_float(threshold if threshold is not None else 0, "threshold")
    block = as_int(block_length, "block length") or 0
    cache = None if cache in (None, "", "off") else cache
    if cache is not None and cache not in CACHES:
        raise ValueError(f"unknown key/value cache {cache!r}; choose 'off' or one of {sorted(CACHES)}")
    samples = in_range(as_int(num_samples, "number of samples"), "number of samples", 1, MAX_SAMPLES)
    seed = in_range(as_int(seed, "seed"), "seed", 0, MAX_SEED)
    overrides = dict(
        steps=steps,
        schedule=schedule,
        temperature=as_float(temperature, "temperature"),
        top_k=in_range(as_int(top_k, "top-k"), "top-k", 0, 1_000_000),
        top_p=as_float(top_p, "top-p"),
        remasking=remasking,
        threshold=threshold if threshold > 0 else None,  # 0 in the UI: off
        block_length=block if block > 0 else None,  # 0 in the UI: one block
        cache=cache,
        cfg_scale=as_float(guidance, "guidance scale"),
        allow_eos=bool(allow_eos),
        num_samples=samples,
    )
    if temperature_end is not None:
        end = as_float(temperature_end, "final temperature")
        overrides["temperature_end"] = end if end > 0 else None  # 0 in the UI: constant; greedy ignores it
    if min_p is not None:
        overrides["min_p"] = as_float(min_p, "min-p")
    if not infill:
        overrides["length"] = length
    dlm.SamplerConfig().replace(**overrides)  # the core's own checks, with its messages
    return GenerateRequest(model, infill, text, seed, overrides, chat)


def positions_needed(lm: dlm.LanguageModel, request: GenerateRequest) -> int:
    """Canvas positions the request takes on `lm`: its framing tokens, the prompt (or template) and the length.

    Built the way each family builds its canvas; a causal canvas is counted by hand, because
    `causal_canvas` refuses one that does not fit with the core's message, which names no model.
    """
    from dlm.generation import encode, infill_canvas, prompt_canvas

    if request.infill:
        return len(infill_canvas(lm, request.text).ids)
    length = request.overrides["length"]
    prompt = request.prompt(lm)
    if lm.kind == "causal":  # BOS, unless the prompt already starts with it, then the prompt and the slots
        body = encode(lm.tokenizer, prompt)
        return int(lm.bos_id is not None and body[:1] != [lm.bos_id]) + len(body) + length
    if lm.kind == "continuous":
        from dlm.continuous import continuous_canvas

        return len(continuous_canvas(lm, prompt, length, {}).ids)
    return len(prompt_canvas(lm, prompt, length, {}).ids)


def check_positions(models: dict[str, dlm.LanguageModel], request: GenerateRequest) -> None:
    """Refuse, before any work starts, a request that does not fit the positions of every model it will use
    ({role: model}): otherwise a race finds out only after the first model has run, or a Compare never can."""
    for role, lm in models.items():
        limit = lm.max_positions
        need = positions_needed(lm, request)
        if limit is None or need <= limit:
            continue
        has = f"the {role} model has {limit} positions"
        if request.infill:
            raise ValueError(f"{has}; the template needs {need}: shorten it")
        length = request.overrides["length"]
        room = limit - (need - length)  # what is left for the length after the framing and the prompt
        if room < 1:
            raise ValueError(f"{has}; the prompt alone needs {need - length}: shorten the prompt")
        raise ValueError(f"{has}; prompt + length need {need}: lower the length to at most {room}")


def start_generation(lm: dlm.LanguageModel, request: GenerateRequest) -> tuple[dlm.Generation, str | None]:
    """Start the run; returns it with a note for the user when a setting had to give way."""
    overrides, note = dict(request.overrides), None
    if request.infill:
        from dlm.generation import infill_canvas

        blanks = int((~infill_canvas(lm, request.text).fixed).sum())
        if blanks > MAX_LENGTH:
            raise ValueError(f"the template has {blanks} blanks; the limit is {MAX_LENGTH}")
        if overrides["steps"] > blanks:
            note = f"The template has {blanks} blank(s), so it runs {blanks} step(s) instead of {overrides['steps']}."
            overrides["steps"] = blanks
        check_generation_work(blanks, overrides["steps"], overrides["num_samples"], overrides["cfg_scale"], lm.kind)
        return dlm.stream(lm, infill=request.text, seed=request.seed, **overrides), note
    check_generation_work(overrides["length"], overrides["steps"], overrides["num_samples"], overrides["cfg_scale"],
                          lm.kind)
    if lm.kind == "causal":
        for name in ("steps", "schedule", "remasking", "threshold", "block_length", "cache", "cfg_scale"):
            overrides.pop(name)  # diffusion-only settings; an AR model writes one token per step
    if lm.kind == "continuous":
        for name in ("schedule", "remasking", "threshold", "block_length", "cache"):
            overrides.pop(name)  # masked-only settings; a continuous model uses its card's solver
    return dlm.stream(lm, request.prompt(lm), seed=request.seed, **overrides), note


def run_stats(trace: dlm.Trace, total_steps: int, done: bool) -> str:
    """The status line over the canvas: step, forward passes, time and speed (Markdown, no user text)."""
    seconds = trace.seconds
    tokens = filled_tokens(trace)
    speed = f"{tokens / seconds:,.0f} tokens/s" if seconds > 0 else "–"
    unit = "Token" if trace.kind == "causal" else "Step"
    head = f"**Done** in {len(trace.steps)} steps" if done else f"**{unit} {len(trace.steps)} / {total_steps}**"
    return f"{head} · NFE {trace.nfe} · {seconds:.2f} s · {tokens} tokens · {speed}"


def joined_texts(texts: Sequence[str]) -> str:
    if len(texts) == 1:
        return texts[0]
    return "\n\n".join(f"[sample {i + 1}]\n{t}" for i, t in enumerate(texts))


def display_name(source: str) -> str:
    """A short name for a model source: a folder's last two parts, else the name or repo id."""
    path = Path(source)
    if path.is_dir():
        return "/".join(path.resolve().parts[-2:])
    return source
