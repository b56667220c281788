"""The page: header, model cards and the five tabs, each built by its own module in webapp/tabs/,
and the page-load event that fills in what depends on the loaded models."""

from __future__ import annotations

import signal
import threading

import gradio as gr

from webapp import files, models
from webapp.cards import model_overview
from webapp.components import Blocks, ready_button
from webapp.files import output_dir
from webapp.settings import (AR, CONCURRENCY, DIFFUSION, MAX_UPLOAD_MB, OUTPUT_TTL_SECONDS, QUEUE_SIZE,
                             SESSIONS_KEPT, SHUTDOWN_GRACE_SECONDS, START, TRAINED)
from webapp.tabs import animate, classify, compare, generate, learn


CSS = """
.gradio-container { max-width: 1200px !important; margin: auto; }
#header h1 { margin-bottom: 0.2em; }
.stats p { font-variant-numeric: tabular-nums; color: var(--body-text-color-subdued); margin: 0; }
.canvas { min-height: 120px; }
.canvas .textfield { display: block !important; line-height: 1.9; font-size: 1.05em; word-break: normal !important; }
"""


HEADER = """
# dlm · text diffusion, live
Text that emerges from masks, step by step: a masked-diffusion language model starts from a canvas of
`[MASK]` tokens and reveals a few per step. Watch it, export it, classify with it, and race it against
an autoregressive model of the same size.
"""


def build_demo() -> gr.Blocks:
    """The whole page: header, model cards, the five tabs and the page-load event. The controls start at
    the diffusion model's recommended settings when its config can be read without loading it (bundled,
    a folder, or already in the Hub cache); otherwise the run buttons wait, disabled, until the page
    load has loaded the model and set them, so a run never uses values the sliders do not show."""
    source = models.MODELS.source(DIFFUSION)
    read = models.recommended_settings(source)
    ready = read is not None
    start = generate.fit_to_app(*read) if ready else START
    with Blocks(title="dlm · text diffusion, live", delete_cache=(OUTPUT_TTL_SECONDS, OUTPUT_TTL_SECONDS)) as demo:
        gr.Markdown(HEADER, elem_id="header")
        models_line = gr.Markdown("Models load on the first request…", elem_id="models")
        with gr.Accordion("Model cards", open=False):
            cards_md = gr.Markdown("The models' cards appear here once they have loaded.")
        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                generate_tab = generate.build(start, ready)
            with gr.Tab("Animate", id="animate"):
                animate_button = animate.build(generate_tab.inputs, generate_tab.last_run, ready)
            with gr.Tab("Classify", id="classify"):
                classifier_mode, classifier_md = classify.build()
            with gr.Tab("Compare", id="compare"):
                race_button = compare.build(start, ready)
            with gr.Tab("Learn", id="learn") as learn_tab:
                learn.build(learn_tab)

        def on_load(classifier_mode: str = TRAINED):
            """Page load: show the models and the classifier; if the controls could not start at the diffusion
            model's recommendations, set them now and enable the run buttons."""
            summary, cards = model_overview()
            info = classify.classifier_info(classifier_mode)
            modes = generate.mode_choices([models.MODELS.loaded(DIFFUSION), models.MODELS.loaded(AR)])
            if ready:
                controls = [gr.skip()] * len(generate_tab.controls)
                controls[1] = generate.steps_maximum(start.length)  # the steps slider, kept at the length
                return (summary, cards, info, modes, *controls) + (gr.skip(),) * 3
            lm = models.MODELS.loaded(DIFFUSION)
            controls = (generate.recommended_controls(lm.settings, lm.max_positions) if lm is not None
                        else (gr.skip(),) * len(generate_tab.controls))
            return (summary, cards, info, modes, *controls, ready_button("Generate"), ready_button("Animate"),
                    ready_button("Race"))

        demo.load(on_load, classifier_mode, [models_line, cards_md, classifier_md, generate_tab.mode,
                                             *generate_tab.controls, generate_tab.button, animate_button,
                                             race_button],
                  api_visibility="private")
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return demo


def launch_options() -> dict:
    """What every launch passes: looks, the number of sessions kept in memory, the one folder files are
    served from (swept while the server runs, removed when it stops: `webapp.files.lifespan`), the upload
    cap, and the per-client limit on queued requests (`webapp.limits.ClientQueueLimit`)."""
    from starlette.middleware import Middleware

    from webapp.limits import ClientQueueLimit

    return dict(theme=gr.themes.Soft(primary_hue="indigo"), css=CSS, allowed_paths=[str(output_dir())],
                max_file_size=f"{MAX_UPLOAD_MB}mb", state_session_capacity=SESSIONS_KEPT,
                app_kwargs={"middleware": [Middleware(ClientQueueLimit)], "lifespan": files.lifespan})


def serve(demo: gr.Blocks, **options) -> None:
    """Launch and serve until SIGINT (Ctrl+C) or SIGTERM (how a Space or a container is stopped; Python's
    default for it would end the process without any clean-up). The app's files are removed the moment
    shutdown begins (`webapp.files.close`); the server then gives running requests and connected clients
    SHUTDOWN_GRACE_SECONDS before it cancels them, so clients that stay connected cannot hold it open."""
    demo.launch(prevent_thread_lock=True, **options)
    demo.server.config.timeout_graceful_shutdown = SHUTDOWN_GRACE_SECONDS  # read by uvicorn when it shuts down
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while demo.is_running and not stop.wait(0.5):
            pass
    finally:
        print("Shutting down: removing the app's files, closing the server.", flush=True)
        files.close()
        demo.close()
        from gradio.tunneling import CURRENT_TUNNELS

        for tunnel in CURRENT_TUNNELS:  # --share
            tunnel.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
