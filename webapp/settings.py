"""Everything the app is set to: per-request limits, serving, the models it loads by role, and what
the controls start at. One place to read (and change) how much one user may ask of the Space."""

from __future__ import annotations

from pathlib import Path

import dlm

ROOT = Path(__file__).resolve().parents[1]  # the repository (app.py's folder)
BENCH_RESULTS = ROOT / "bench" / "results"

# ---- per-request limits: one user cannot starve the others -------------------------------------


MAX_LENGTH = 256  # tokens a generation may write (the model's own position limit may be lower)
MAX_STEPS = 256  # denoising steps per generation
MAX_SAMPLES = 4  # samples drawn side by side in one generation
MAX_SEED = 2**31 - 1  # seeds run from 0 to this (a 32-bit signed integer: what every client can send)
MAX_PROMPT_CHARS = 2_000  # characters of prompt or infilling template
MAX_UPLOAD_MB = 5  # size of an uploaded .txt / .csv (also enforced by the server on upload)
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
MAX_ROWS = 200  # texts classified per request; longer files are cut, with a warning
MAX_LABELS = 8  # classes in one classification
MAX_LABEL_CHARS = 40  # characters of one class name
MAX_CLASSIFY_SAMPLES = 64  # Monte-Carlo mask patterns per text: zero-shot, or the trained classifier's cap
MAX_FRAME_MS = 2_000  # slowest animation frame
MIN_FRAME_MS = 40  # fastest animation frame (browsers clamp faster GIF frames anyway)
# work one request may ask for (the per-field limits above multiply to far more than a fair share):
MAX_GENERATION_WORK = 256 * 256 * 2  # length x forward passes x samples (x 2 with guidance): 2 full-size samples
MAX_CLASSIFY_PASSES = 200 * 2 * 32  # texts x labels x mask patterns: 200 reviews, 2 labels, 32 samples
RACE_FRAMES = 150  # a side-by-side race GIF has at most about this many frames (it plays faster instead)


# ---- serving ------------------------------------------------------------------------------------
CONCURRENCY = 2  # model-bound requests running at once, all tabs together (2 CPU cores on a free Space)
QUEUE_SIZE = 32  # requests waiting in the queue; more get "queue full"
MAX_QUEUED_PER_CLIENT = 4  # requests one client (address) may have waiting or running; more get a 429
MIN_UPDATE_SECONDS = 0.05  # at most ~20 streamed updates a second per request
OUTPUT_TTL_SECONDS = 3_600  # rendered files are deleted after an hour
SHUTDOWN_GRACE_SECONDS = 3  # at shutdown, running requests and open connections get this long, then are cancelled
SESSIONS_KEPT = 100  # client sessions whose state (the last run, the last predictions) stays in memory; Gradio
# evicts the oldest beyond this (its default, 10,000 sessions of ~1 MB each, let a busy Space grow without bound)
STATE_TTL_SECONDS = 600  # a session's last run / predictions are dropped this long after they were written
DIFFUSION, AR, CLASSIFIER = "diffusion", "autoregressive", "classifier"  # what the app loads, by role
CONTINUOUS = "continuous"  # the embedding-space diffusion model (Generate and Animate)
ENV = {DIFFUSION: "DLM_MODEL", AR: "DLM_AR_MODEL", CONTINUOUS: "DLM_CONTINUOUS_MODEL", CLASSIFIER: "DLM_CLASSIFIER"}
DEFAULTS = {DIFFUSION: "default", AR: "default-ar", CONTINUOUS: "default-continuous",
            CLASSIFIER: "default-classifier"}  # bundled names, folders or Hub ids


# ---- what the controls start at (until the diffusion model's card is read) ------------------------
START = dlm.SamplerConfig(length=48, steps=24, temperature=0.8, top_p=0.95)
DEFAULT_PROMPT = "Once upon a time"
DEFAULT_MESSAGE = "Write a short story about a lighthouse keeper."  # chat mode (instruct models)
DEFAULT_TEMPLATE = "The [MASK] [MASK] sat on the [MASK] and looked at the [MASK]."
DEFAULT_LABELS = "positive, negative"
DEFAULT_LABEL_PROMPT = "A {label} review:"
TRAINED, ZERO_SHOT = "trained", "zero-shot"  # the Classify tab's two kinds of classifier
MODEL_COLORS = {DIFFUSION: "#6366f1", AR: "#f97316"}  # indigo and orange, in the Compare charts
