"""The dlm Space: watch text emerge from masks, export the animation, classify texts, race diffusion against AR.

    python app.py                                              # bundled models on http://127.0.0.1:7860
    python app.py --model runs/diffusion --ar-model runs/ar    # any folder or Hub repo id
    python app.py --share                                      # also a public gradio.live link
    DLM_MODEL=user/dlm-small python app.py                     # the same through the environment (a Space's variables)

Models load lazily, once, on the first request that needs them (or in a warm-up thread after launch).
The app lives in webapp/: settings.py (limits, serving, roles), models.py (the model registry),
runs.py (generation requests), one module per tab in webapp/tabs/, and page.py, which puts them together.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

from dlm.allocator import keep_freed_memory
from webapp import models
from webapp.models import Models, configure
from webapp.page import build_demo, launch_options, serve
from webapp.settings import AR, CLASSIFIER, CONTINUOUS, DIFFUSION, ENV

demo = build_demo()  # for the bundled models or the DLM_* environment; main() rebuilds it for other flags


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="The dlm Gradio app.")
    parser.add_argument("--model", default=os.environ.get(ENV[DIFFUSION]),
                        help=f"diffusion model: bundled name, folder or Hub id (env {ENV[DIFFUSION]}; default 'default')")
    parser.add_argument("--ar-model", default=os.environ.get(ENV[AR]),
                        help=f"autoregressive model for Compare and the race (env {ENV[AR]}; default 'default-ar')")
    parser.add_argument("--continuous-model", default=os.environ.get(ENV[CONTINUOUS]),
                        help=f"continuous (embedding-space) diffusion model for Generate and Animate (env "
                             f"{ENV[CONTINUOUS]}; default 'default-continuous')")
    parser.add_argument("--classifier", default=os.environ.get(ENV[CLASSIFIER]),
                        help=f"trained classifier for the Classify tab: bundled name, folder with classifier.json or "
                             f"Hub id (env {ENV[CLASSIFIER]}; default 'default-classifier')")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve your network")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also make a public gradio.live link")
    parser.add_argument("--no-warm-up", action="store_true", help="load models on the first request, not at launch")
    return parser


def main(argv: list[str] | None = None) -> int:
    global demo
    args = build_parser().parse_args(argv)
    keep_freed_memory()  # a step's temporaries reuse the heap instead of faulting in fresh pages (dlm.allocator)
    sources = {DIFFUSION: args.model, AR: args.ar_model, CONTINUOUS: args.continuous_model, CLASSIFIER: args.classifier}
    on_space = bool(os.environ.get("SPACE_ID"))
    if not on_space:  # fail fast on a typo; a Space keeps serving and shows the error in the page
        from dlm.loading import resolve

        # not the classifier: the app serves without it (zero-shot), and the header says why it is missing
        flags = {DIFFUSION: "--model", AR: "--ar-model", CONTINUOUS: "--continuous-model"}
        for role, flag in flags.items():
            try:
                resolve(Models(sources).source(role))
            except ValueError as error:
                print(f"error: {flag}: {error}", file=sys.stderr)
                return 2
    previous = models.MODELS.source(DIFFUSION)
    registry = configure(sources)
    if registry.source(DIFFUSION) != previous:  # the controls start at the chosen model's recommendations
        demo = build_demo()
    if not args.no_warm_up:
        threading.Thread(target=registry.warm_up, name="warm-up", daemon=True).start()
    if on_space:
        serve(demo, **launch_options())  # the Space decides host and port
    else:
        serve(demo, server_name=args.host, server_port=args.port, share=args.share, **launch_options())
    return 0


if __name__ == "__main__":
    sys.exit(main())
