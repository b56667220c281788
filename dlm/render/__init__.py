"""Pictures of a denoising run, drawn from a `dlm.trace.Trace` alone (no tokenizer, no model).

    highlight(trace, step=-1)              (text, label) pairs for gr.HighlightedText, with COLOR_MAP
    to_gif(trace, "run.gif")               animated GIF: initial canvas, then one frame per step
    to_mp4(trace, "run.mp4")               the same as an h264 video (needs imageio-ffmpeg)
    to_html(trace, "run.html")             standalone page with a player (play, scrub, token details)
    to_gif_side_by_side([a, b], "race.gif")     several runs in columns, raced in wall-clock time
    to_html_side_by_side([a, b], "race.html")   several panes on one time slider

Steps are numbered like `trace.steps` (-1: the last); `step=None` is the initial canvas, before any
step. Layers, bottom up: `snapshot` (what a frame shows, colour-free), `palette` (labels and
colours), then `highlight`, `frames` (Pillow) with `animation` (GIF, MP4), and `player` (HTML).
"""

from dlm.render.animation import to_gif, to_gif_side_by_side, to_mp4
from dlm.render.frames import FrameRenderer, FrameStyle
from dlm.render.highlight import MASK_PLACEHOLDER, highlight
from dlm.render.palette import COLOR_MAP, CONFIDENCE_BANDS, MODES, confidence_band
from dlm.render.player import to_html, to_html_side_by_side
from dlm.render.snapshot import Cell, Snapshot, snapshot, snapshots
from dlm.render.timeline import ALIGNMENTS

__all__ = [
    "ALIGNMENTS",
    "COLOR_MAP",
    "CONFIDENCE_BANDS",
    "MASK_PLACEHOLDER",
    "MODES",
    "Cell",
    "FrameRenderer",
    "FrameStyle",
    "Snapshot",
    "confidence_band",
    "highlight",
    "snapshot",
    "snapshots",
    "to_gif",
    "to_gif_side_by_side",
    "to_html",
    "to_html_side_by_side",
    "to_mp4",
]
