"""Labels and colours: the one place that decides how a cell is coloured, for every renderer.

Two colouring modes:

    "state"       masked / new (committed in this step) / prompt; earlier tokens stay plain
    "confidence"  the model's confidence when it committed the token: high / mid / low; masked stays grey
"""

from __future__ import annotations

from dlm.render.snapshot import MASKED, NEW, PROMPT, Cell

CONFIDENCE_BANDS = ((0.9, "high"), (0.5, "mid"))  # (lowest confidence, label), best first
LOWEST_BAND = "low"  # below every threshold above

# label -> background colour, per mode; a label missing here (None) is drawn plain
COLOR_MAP: dict[str, dict[str, str]] = {
    "state": {
        MASKED: "#d1d5db",  # grey: not decided yet
        NEW: "#fde047",  # yellow: revealed in this step
        PROMPT: "#bfdbfe",  # light blue: given by the caller
    },
    "confidence": {
        "high": "#86efac",  # green
        "mid": "#fde047",  # yellow
        "low": "#fca5a5",  # red
        MASKED: "#d1d5db",  # grey, as in "state"
    },
}
MODES = tuple(COLOR_MAP)

# colours of everything that is not a token's background
BACKGROUND = "#ffffff"
TEXT = "#111827"  # generated tokens
PROMPT_TEXT = "#1e3a8a"  # prompt tokens, so they read as given even where they have no background
MUTED = "#6b7280"  # step counter and other secondary text
BAR_TRACK = "#e5e7eb"  # progress bar, undecided part
BAR_FILL = "#22c55e"  # progress bar, decided part
NEW_OUTLINE = "#a16207"  # outline marking this step's tokens in "confidence" mode
DIVIDER = "#d1d5db"  # line between side-by-side columns


def check_mode(mode: str) -> None:
    if mode not in COLOR_MAP:
        raise ValueError(f"unknown mode {mode!r}; choose from {sorted(COLOR_MAP)}")


def confidence_band(confidence: float) -> str:
    """"high" (>= 0.9), "mid" (>= 0.5) or "low"."""
    for lowest, band in CONFIDENCE_BANDS:
        if confidence >= lowest:
            return band
    return LOWEST_BAND


def label(cell: Cell, mode: str) -> str | None:
    """The colour label of `cell` in `mode` (a key of COLOR_MAP[mode]), or None to draw it plain."""
    check_mode(mode)
    if mode == "state":
        return cell.state if cell.state in COLOR_MAP["state"] else None
    if cell.state == MASKED:
        return MASKED
    if cell.confidence is None:  # prompt, or given in the initial canvas: the model never chose it
        return None
    return confidence_band(cell.confidence)
