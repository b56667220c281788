"""Gradio pieces every tab uses: the page and the controls that check what an API call sends, the
denoising canvas, errors and warnings that escape user text, and the models fetched with a readable error."""

from __future__ import annotations

import html
import math
from abc import ABCMeta

import gradio as gr
from gradio.exceptions import InvalidPathError
from gradio.utils import get_function_params

import dlm
from dlm.render import COLOR_MAP
from webapp import models
from webapp.models import TrainedClassifier
from webapp.settings import CLASSIFIER


class _NoStubs(type(gr.Slider)):
    """Gradio's component metaclass writes a .pyi copy of the defining module next to it (app.pyi) for
    every component subclass; a subclass that adds no events or __init__ needs none of its work."""

    def __new__(mcs, name, bases, attrs):
        return ABCMeta.__new__(mcs, name, bases, attrs)


class Slider(gr.Slider, metaclass=_NoStubs):
    """gr.Slider whose out-of-range values (possible through the API) get an error naming the control.

    A missing value (None) reaches the handler, which knows what it means (e.g. "no length").
    """

    is_template = True  # drawn by the frontend as a plain slider

    def preprocess(self, payload):
        if payload is None:
            return None
        if isinstance(payload, bool) or not isinstance(payload, (int, float)) or not self.minimum <= payload <= self.maximum:
            message = f"{self.label} must be between {self.minimum:g} and {self.maximum:g}, got {payload!r}"
            raise gr.Error(html.escape(message, quote=False))
        return super().preprocess(payload)


class Number(gr.Number, metaclass=_NoStubs):
    """gr.Number whose bad values through the API (text, NaN, infinity, a fraction where the control wants a
    whole number, a value out of range) get an error naming the control and its range: Gradio's own
    preprocessing fails on them with no message for the caller ("error: null")."""

    is_template = True  # drawn by the frontend as a plain number box

    def preprocess(self, payload):
        if payload is None:
            return None
        if not self._accepts(payload):
            message = f"{self.label} must be {self._wanted()}, got {payload!r}"
            raise gr.Error(html.escape(message, quote=False))
        return super().preprocess(payload)

    def _accepts(self, payload) -> bool:
        if isinstance(payload, bool) or not isinstance(payload, (int, float)) or not math.isfinite(payload):
            return False
        if self.precision == 0 and payload != int(payload):
            return False
        return (self.minimum is None or payload >= self.minimum) and (self.maximum is None or payload <= self.maximum)

    def _wanted(self) -> str:
        kind = "a whole number" if self.precision == 0 else "a finite number"
        low, high = _shown(self.minimum), _shown(self.maximum)
        if low is not None and high is not None:
            return f"{kind} between {low} and {high}"
        if low is not None:
            return f"{kind} of at least {low}"
        return f"{kind} of at most {high}" if high is not None else kind


def _shown(bound: float | None) -> str | None:
    """A bound as people write it: 2147483647, not 2.14748e+09."""
    if bound is None:
        return None
    return str(int(bound)) if bound == int(bound) else f"{bound:g}"


class File(gr.File, metaclass=_NoStubs):
    """gr.File that refuses, naming the control, what an API caller may send instead of an uploaded file: a
    bare path (gradio_client uploads only what `handle_file` wraps) or anything else that is no file."""

    is_template = True  # drawn by the frontend as a plain file box

    def check_payload(self, payload, name: str) -> None:
        """Called by `Blocks` before Gradio's own checks, which fail on these with no message for the caller."""
        if payload is not None and not _is_file_data(payload):
            shown = repr(payload)
            shown = shown if len(shown) <= 200 else shown[:200] + "…"
            raise ui_error(f"{name} must be a file sent with gradio_client.handle_file(path), got {shown}")


def _is_file_data(payload) -> bool:
    """What gradio_client's handle_file sends: {"path": ..., "meta": {"_type": "gradio.FileData"}, ...}."""
    return (isinstance(payload, dict) and isinstance(payload.get("path"), str)
            and isinstance(payload.get("meta"), dict) and payload["meta"].get("_type") == "gradio.FileData")


class Blocks(gr.Blocks):
    """gr.Blocks whose refusals before a handler runs name the input and the cause. Gradio checks an API
    call's values there (enough of them, files really uploaded) with exceptions whose message only the
    server's log sees: the caller gets "error: null"."""

    def validate_inputs(self, block_fn, inputs):
        if len(inputs) < len(block_fn.inputs):
            names = input_names(block_fn)
            missing = names[len(inputs):]
            raise ui_error(f"/{block_fn.api_name or block_fn.name} takes {len(names)} values ({', '.join(names)}); "
                           f"got {len(inputs)}: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing")
        super().validate_inputs(block_fn, inputs)

    async def preprocess_data(self, block_fn, inputs, state, explicit_call=False):
        self.validate_inputs(block_fn, inputs)
        names = input_names(block_fn)
        for name, block, payload in zip(names, block_fn.inputs, inputs):
            if hasattr(block, "check_payload"):
                block.check_payload(payload, name)
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except InvalidPathError as error:  # a file path the app never received as an upload
            files = [name for name, block in zip(names, block_fn.inputs) if isinstance(block, gr.File)]
            raise ui_error(f"{' or '.join(files) or 'a file'}: {error} Send the file itself: "
                           "gradio_client.handle_file(path) uploads it.") from None


def input_names(block_fn) -> list[str]:
    """An event's inputs by the names an API caller uses (its handler's parameters), else by their labels."""
    parameters = [name for name, *_ in get_function_params(block_fn.fn)] if block_fn.fn else []
    return [parameters[i] if i < len(parameters) else str(getattr(block, "label", None) or f"input {i + 1}")
            for i, block in enumerate(block_fn.inputs)]


def canvas_box(label: str, **kwargs) -> gr.HighlightedText:
    """A denoising canvas: tokens coloured by state (or confidence); runs of one colour read as text."""
    return gr.HighlightedText(label=label, color_map=COLOR_MAP["state"], show_legend=False, show_inline_category=False,
                              combine_adjacent=True, adjacent_separator="", elem_classes="canvas", **kwargs)


def ui_error(error: Exception | str) -> gr.Error:
    """A gr.Error whose message is escaped: Gradio renders error text as HTML."""
    message = str(error) if not isinstance(error, KeyError) else str(error.args[0])
    return gr.Error(html.escape(message[:1000], quote=False))


def ui_warning(message: str) -> None:
    gr.Warning(html.escape(message, quote=False))


def model_or_error(role: str) -> dlm.LanguageModel:
    try:
        return models.MODELS.get(role)
    except (ValueError, OSError) as error:
        raise ui_error(f"the {role} model could not be loaded: {error}") from None


def classifier_or_error() -> TrainedClassifier:
    try:
        return models.MODELS.classifier()
    except (ValueError, OSError) as error:
        raise ui_error(f"the trained classifier {models.MODELS.source(CLASSIFIER)!r} could not be loaded: {error}. "
                       "Zero-shot mode still works.") from None


def waiting_button(label: str, ready: bool, **kwargs) -> gr.Button:
    """A primary button that, when not `ready`, waits disabled for the page load to set its tab's controls."""
    return gr.Button(label if ready else f"{label} (loading the model…)", variant="primary", interactive=ready, **kwargs)


def ready_button(label: str) -> gr.Button:
    """The update that enables a `waiting_button`."""
    return gr.Button(label, interactive=True)
