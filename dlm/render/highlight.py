"""(text, label) pairs for gradio's `gr.HighlightedText`, with `COLOR_MAP[mode]` as its color_map.

    gr.HighlightedText(highlight(trace, step=-1), color_map=COLOR_MAP["state"])
"""

from __future__ import annotations

from dlm.render.palette import check_mode, label
from dlm.render.snapshot import MASKED, snapshot
from dlm.trace import Trace

MASK_PLACEHOLDER = "░░"  # stands for an undecided position


def highlight(trace: Trace, step: int | None = -1, row: int = 0, mode: str = "state") -> list[tuple[str, str | None]]:
    """One (text, label) pair per visible position of sample `row` after `step`.

    Args:
        trace: the run to show.
        step: index into trace.steps (-1: the last step), or None for the initial canvas.
        row: which sample of the batch.
        mode: "state" labels undecided positions "masked", this step's tokens "new", prompt tokens
            "prompt" and earlier tokens None; "confidence" labels generated tokens by the confidence
            the model had when it committed them ("high" >= 0.9, "mid" >= 0.5, "low"), undecided
            positions "masked" and the prompt None.

    Hidden positions (framing special tokens) are left out. An undecided position reads
    MASK_PLACEHOLDER, after a space unless it starts the text or follows whitespace, so runs of masks
    stay countable.
    """
    check_mode(mode)
    pairs: list[tuple[str, str | None]] = []
    for cell in snapshot(trace, step, row).cells:
        text = _mask_text(pairs[-1][0] if pairs else "") if cell.state == MASKED else cell.text
        pairs.append((text, label(cell, mode)))
    return pairs


def _mask_text(previous: str) -> str:
    """The placeholder, separated from the text before it unless whitespace already does that."""
    if not previous or previous[-1].isspace():
        return MASK_PLACEHOLDER
    return " " + MASK_PLACEHOLDER
