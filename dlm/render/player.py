"""A trace as one standalone HTML page with a small player: no server, no network, no dependencies.

    to_html(trace, "run.html")                           # one pane
    to_html_side_by_side([diffusion, ar], "race.html")   # several panes on one time slider

The page embeds the trace data as JSON in a <script type="application/json"> block and animates it
with the vanilla JS in static/player.js (styles in static/player.css). Trace text never reaches the
page as markup: titles and prompts are HTML-escaped, the JSON is escaped so no token can close its
<script> block, and the player sets token text with textContent only.

The JSON, per pane: `positions` (canvas index of each visible column), `pieces` (id -> text, for
the ids it uses) and `frames` (frame 0 is the initial canvas, frame k the canvas after step k), each
with `canvas`, `guess` and `confidence` per column, `committed` (columns revealed in that step),
`labels` (per colouring mode, an index into the top-level `labels` list of that mode), `nfe`,
`elapsed`, `progress` and, only where a column shows other text than its token's piece (a character
split over tokens, whole at the token that completes it), `text` (column -> text). Top level: `align`,
`frameMs`, `labels`, `ticks` ([clock or step number, frame of pane 0, frame of pane 1, ...]) and `panes`.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from dlm.generation import whole_characters
from dlm.render.palette import (
    BACKGROUND,
    BAR_FILL,
    BAR_TRACK,
    COLOR_MAP,
    DIVIDER,
    MODES,
    MUTED,
    NEW_OUTLINE,
    PROMPT_TEXT,
    TEXT,
    label,
)
from dlm.render.snapshot import MASKED, NEW, Snapshot, default_title, snapshots
from dlm.render.timeline import Tick, check_alignment, check_titles, event_times, step_ticks, time_ticks
from dlm.trace import Trace

STATIC = Path(__file__).with_name("static")
PLAYER_FRAME_MS = 250  # at 1x, a step-by-step player shows each step this long
SPEEDS = (0.25, 0.5, 1, 2, 4)  # choices of the speed control
CONFIDENCE_DECIMALS = 3  # enough for the details line, and keeps the page small
FRACTION_DECIMALS = 4  # for seconds and progress

# characters that must not appear raw in JSON inside <script>: "</script>" and "<!--" would end or
# confuse the block, "&" starts entities in some parsers, U+2028/U+2029 end lines in older JS
_SCRIPT_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def to_html(trace: Trace, path: str | Path | None = None, row: int = 0, title: str | None = None) -> str:
    """Sample `row` of `trace` as a standalone player page; written to `path` if given, always returned.

    The player steps through the run (play/pause, slider, previous/next, speed), colours tokens by
    state or by confidence, and shows the model's guess and confidence for a hovered or clicked token.
    """
    heading = default_title(trace) if title is None else title
    return _write(_page(heading, [trace], [None], row, step_ticks([trace]), "step"), path)  # no pane heading


def to_html_side_by_side(
    traces: list[Trace],
    path: str | Path | None = None,
    titles: list[str] | None = None,
    row: int = 0,
    align: str = "time",
    title: str | None = None,
) -> str:
    """Several traces as panes of one player page, driven by one slider.

    Args:
        titles: one heading per pane (default: each trace's model and kind).
        align: "time" (the slider is the wall clock: each pane shows its last step finished by then,
            and play runs in real time) or "step" (the slider is the step number).
        title: the page heading (default: the pane titles joined by "vs").
    """
    check_alignment(align)
    names = check_titles(traces, titles)
    titles = [default_title(trace) if name is None else name for trace, name in zip(traces, names)]
    ticks = time_ticks(traces, event_times(traces)) if align == "time" else step_ticks(traces)
    heading = " vs ".join(titles) if title is None else title
    return _write(_page(heading, traces, titles, row, ticks, align), path)


def script_json(data: object) -> str:
    """`data` as JSON that is safe to place inside a <script> element (and still parses to `data`)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).translate(_SCRIPT_ESCAPES)


def _write(page: str, path: str | Path | None) -> str:
    if path is not None:
        Path(path).write_text(page, encoding="utf-8")
    return page


def _page(
    title: str, traces: list[Trace], titles: list[str | None], row: int, ticks: list[Tick], align: str
) -> str:
    """The whole HTML document."""
    data = {
        "align": align,
        "frameMs": PLAYER_FRAME_MS,
        "labels": {mode: _labels(mode) for mode in MODES},
        "ticks": [[tick.time, *tick.frames] for tick in ticks],
        "panes": [_pane_data(trace, row) for trace in traces],
    }
    panes = "\n".join(_pane_html(name, trace.prompt) for name, trace in zip(titles, traces))
    last = len(ticks) - 1
    speeds = "".join(f'<option value="{s}"{" selected" if s == 1 else ""}>{s}×</option>' for s in SPEEDS)
    css = _css_variables() + _label_css() + (STATIC / "player.css").read_text(encoding="utf-8")
    js = (STATIC / "player.js").read_text(encoding="utf-8")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
{css}</style>
</head>
<body>
<main id="player" class="mode-state">
<h1>{html.escape(title)}</h1>
<div class="controls">
  <button type="button" id="prev" title="previous step (←)">◀</button>
  <button type="button" id="play" title="play / pause (space)">Play</button>
  <button type="button" id="next" title="next step (→)">▶</button>
  <input type="range" id="scrub" min="0" max="{last}" value="{last}" aria-label="position in the run">
  <span id="clock" class="clock"></span>
  <label>speed <select id="speed">{speeds}</select></label>
  <label><input type="checkbox" id="confidence"> colour by confidence</label>
</div>
{_legends()}
<div class="panes">
{panes}
</div>
<p class="keys">space: play / pause · ← →: step · Home / End: first / last ·
hover or click a token for the model's guess</p>
</main>
<script type="application/json" id="trace-data">{script_json(data)}</script>
<script>
{js}</script>
</body>
</html>
"""


def _pane_html(title: str | None, prompt: str) -> str:
    """The static part of one pane (heading only if `title`); the player fills in the rest."""
    title_html = f"<h2>{html.escape(title)}</h2>" if title else ""
    prompt_html = f'<p class="prompt">{html.escape(prompt)}</p>' if prompt else ""
    return f"""<section class="pane">
  {title_html}
  {prompt_html}
  <div class="meta"><span class="counter"></span><span class="percent"></span></div>
  <div class="bar"><div class="fill"></div></div>
  <div class="canvas"></div>
  <p class="details">hover or click a token</p>
</section>"""


def _pane_data(trace: Trace, row: int) -> dict:
    """One trace's frames, restricted to its visible positions and the pieces they use."""
    frames = list(snapshots(trace, row))
    pieces = _used_pieces(trace, frames)
    return {
        "positions": [cell.position for cell in frames[0].cells],
        "pieces": pieces,
        "frames": [_frame_data(snapshot, pieces) for snapshot in frames],
    }


def _frame_data(snapshot: Snapshot, pieces: dict[str, str]) -> dict:
    cells = snapshot.cells
    data = {
        "canvas": [cell.token for cell in cells],
        "guess": [cell.guess for cell in cells],
        "confidence": [round(cell.guess_confidence, CONFIDENCE_DECIMALS) for cell in cells],
        "committed": [column for column, cell in enumerate(cells) if cell.state == NEW],
        "labels": {mode: [_LABEL_INDEX[mode][label(cell, mode)] for cell in cells] for mode in MODES},
        "nfe": snapshot.nfe,
        "elapsed": round(snapshot.elapsed, FRACTION_DECIMALS),
        "progress": round(snapshot.progress, FRACTION_DECIMALS),
    }
    # a character split over tokens shows whole at the token that completes it: not its piece alone
    text = {str(column): cell.text for column, cell in enumerate(cells)
            if cell.state != MASKED and cell.text != pieces[str(cell.token)]}
    if text:
        data["text"] = text
    return data


def _labels(mode: str) -> list[str | None]:
    """Every label of `mode`, None (drawn plain) first: frames refer to labels by index in this list."""
    return [None, *COLOR_MAP[mode]]


_LABEL_INDEX = {mode: {name: index for index, name in enumerate(_labels(mode))} for mode in MODES}


def _used_pieces(trace: Trace, frames: list[Snapshot]) -> dict[str, str]:
    """Display text of every id the page shows: decided tokens and the model's guesses, each on its own
    (bytes that are no character on their own, kept as surrogate escapes in the trace, show as U+FFFD)."""
    ids = {cell.token for frame in frames for cell in frame.cells if cell.state != MASKED}
    ids |= {cell.guess for frame in frames for cell in frame.cells if cell.guess >= 0}
    missing = sorted(ids - trace.pieces.keys())
    if missing:
        raise ValueError(f"token ids {missing[:10]} have no display text in trace.pieces")
    return {str(token): whole_characters([trace.pieces[token]])[0] for token in sorted(ids)}


def _css_variables() -> str:
    """The palette's page colours, as CSS custom properties for static/player.css."""
    colours = {
        "background": BACKGROUND,
        "text": TEXT,
        "prompt-text": PROMPT_TEXT,
        "muted": MUTED,
        "bar-track": BAR_TRACK,
        "bar-fill": BAR_FILL,
        "new-outline": NEW_OUTLINE,
        "divider": DIVIDER,
    }
    return ":root {\n" + "".join(f"  --{name}: {colour};\n" for name, colour in colours.items()) + "}\n"


def _label_css() -> str:
    """One background rule per (mode, label): a token carries a class per mode, e.g.
    "state-new confidence-high", and the <main> element's class picks the mode that shows."""
    return "".join(
        f".mode-{mode} .{mode}-{name} {{ background: {colour}; }}\n"
        for mode in MODES
        for name, colour in COLOR_MAP[mode].items()
    )


def _legends() -> str:
    """A swatch per label, one row per mode (CSS shows the row of the active mode)."""
    rows = []
    for mode in MODES:
        swatches = "".join(
            f'<span class="swatch" style="background: {colour}">{html.escape(name)}</span>'
            for name, colour in COLOR_MAP[mode].items()
        )
        rows.append(f'<div class="legend legend-{mode}">{swatches}</div>')
    return "\n".join(rows)
