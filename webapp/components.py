"""Gradio pieces every tab uses: the checked slider, the denoising canvas, errors and warnings that
escape user text, and the models fetched with a readable error."""

from __future__ import annotations

import html
from abc import ABCMeta

import gradio as gr

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
