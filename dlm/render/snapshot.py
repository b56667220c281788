"""What one sample of a trace looks like at one moment: the colour-free view every renderer draws.

A trace of n steps has n + 1 *frames*: frame 0 is the initial canvas, frame k the canvas after step k
(`trace.steps[k - 1]`). The public functions take a `step` instead, which indexes `trace.steps` the
Python way (0 is the first step, -1 the last), with `step=None` meaning the initial canvas, before
any step.

Every visible position (not `trace.hidden`) becomes a `Cell` in one of four states:

    PROMPT     fixed by the caller (`trace.fixed`), never changed by the sampler
    MASKED     still undecided (`trace.mask_id`; -1, the empty slot, in causal and continuous traces)
    NEW        committed in this very step
    COMMITTED  committed in an earlier step (or already filled in the initial canvas)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from dlm.generation import whole_characters
from dlm.trace import Step, Trace

MASKED, NEW, PROMPT, COMMITTED = "masked", "new", "prompt", "committed"
STATES = (MASKED, NEW, PROMPT, COMMITTED)

KIND_NAMES = {"masked": "masked diffusion", "causal": "autoregressive", "continuous": "continuous diffusion"}  # trace.kind -> words for titles


@dataclass(frozen=True)
class Cell:
    """One visible canvas position in one frame."""

    position: int  # index into the trace's canvas (hidden positions get no cell)
    token: int  # id on the canvas; trace.mask_id while undecided
    text: str  # display text from trace.pieces ("" while undecided); a character split over tokens shows
    # whole at the token that completes it (dlm.generation.whole_characters)
    state: str  # one of STATES
    confidence: float | None  # the model's confidence when it committed this token; None if it never did
    guess: int  # the model's guess for this position in this frame (-1 where none, as in frame 0)
    guess_confidence: float  # the probability it gave that guess (0 where none)


@dataclass(frozen=True)
class Snapshot:
    """The visible canvas of one sample in one frame, with the run's counters at that moment."""

    frame: int  # 0: the initial canvas; k: after step k
    num_steps: int  # steps in the whole trace, so the frame reads "step frame/num_steps"
    cells: tuple[Cell, ...]  # visible positions, left to right
    nfe: int  # forward passes so far
    elapsed: float  # seconds since sampling started

    @property
    def progress(self) -> float:
        """Fraction of the generated (non-prompt) positions already decided; 1.0 when there are none."""
        generated = [cell for cell in self.cells if cell.state != PROMPT]
        if not generated:
            return 1.0
        return sum(cell.state != MASKED for cell in generated) / len(generated)


def default_title(trace: Trace) -> str:
    """"model · masked diffusion", or just the kind when the trace does not name its model."""
    if trace.kind not in KIND_NAMES:
        raise ValueError(f"unknown trace kind {trace.kind!r}; choose from {sorted(KIND_NAMES)}")
    kind = KIND_NAMES[trace.kind]
    return f"{trace.model} · {kind}" if trace.model else kind


def counter_text(snapshot: Snapshot, seconds: float | None = None) -> str:
    """"step 12/32 · NFE 12 · 1.25 s"; `seconds` overrides the snapshot's own clock (for races)."""
    seconds = snapshot.elapsed if seconds is None else seconds
    return f"step {snapshot.frame}/{snapshot.num_steps} · NFE {snapshot.nfe} · {seconds:.2f} s"


def frame_index(trace: Trace, step: int | None) -> int:
    """The frame showing `step` (Python indexing over trace.steps; None: the initial canvas)."""
    if step is None:
        return 0
    n = len(trace.steps)
    if not -n <= step < n:
        valid = f"{-n}..{n - 1}, or None" if n else "only None"
        raise IndexError(f"step {step} is out of range for a trace of {n} steps; use {valid} for the initial canvas")
    return step % n + 1


def check_row(trace: Trace, row: int) -> None:
    """Fail loudly on a sample index the trace does not have."""
    if not 0 <= row < trace.num_samples:
        raise IndexError(f"row {row} is out of range; the trace has samples 0..{trace.num_samples - 1}")


def snapshot(trace: Trace, step: int | None = -1, row: int = 0) -> Snapshot:
    """The view of sample `row` after `step` (-1: the last step; None: the initial canvas)."""
    check_row(trace, row)
    target = frame_index(trace, step)
    for frame, step_, commit_confidence in _walk(trace, row):
        if frame == target:
            return _snapshot(trace, row, frame, step_, commit_confidence)
    raise AssertionError("unreachable: frame_index returned a frame the trace does not have")


def snapshots(trace: Trace, row: int = 0) -> Iterator[Snapshot]:
    """Every frame of sample `row`, from the initial canvas to the last step (len(trace.steps) + 1)."""
    check_row(trace, row)
    for frame, step, commit_confidence in _walk(trace, row):
        yield _snapshot(trace, row, frame, step, commit_confidence)


def _walk(trace: Trace, row: int) -> Iterator[tuple[int, Step | None, dict[int, float]]]:
    """Yield (frame, step or None for frame 0, position -> confidence at its latest commit).

    The dict is updated in place from one frame to the next: read it before asking for the next frame.
    Only committed positions are read from each step, so walking a long trace stays cheap.
    """
    commit_confidence: dict[int, float] = {}
    yield 0, None, commit_confidence
    for frame, step in enumerate(trace.steps, start=1):
        positions = step.committed_positions(row)
        confidences = step.confidence[row, positions].tolist()
        commit_confidence.update(zip(positions, confidences))
        yield frame, step, commit_confidence


def _snapshot(
    trace: Trace, row: int, frame: int, step: Step | None, commit_confidence: dict[int, float]
) -> Snapshot:
    """Build the cells of one frame; `step` is None for the initial canvas."""
    canvas = (trace.initial if step is None else step.canvas)[row].tolist()  # (T,)
    length = len(canvas)
    guess = [-1] * length if step is None else step.guess[row].tolist()
    guess_confidence = [0.0] * length if step is None else step.confidence[row].tolist()
    new = set() if step is None else set(step.committed_positions(row))
    fixed, hidden = trace.fixed.tolist(), trace.hidden.tolist()

    visible = [position for position in range(length) if not hidden[position]]
    states = [_state(canvas[p] == trace.mask_id, fixed[p], p in new) for p in visible]
    # a character whose bytes are split over tokens shows whole at the token that completes it
    pieces = [None if state == MASKED else _piece(trace, canvas[p], p) for p, state in zip(visible, states)]
    texts = whole_characters(pieces)
    cells = []
    for position, state, text in zip(visible, states, texts):
        decided = state in (NEW, COMMITTED)
        cells.append(
            Cell(
                position=position,
                token=canvas[position],
                text=text,
                state=state,
                confidence=commit_confidence.get(position) if decided else None,
                guess=guess[position],
                guess_confidence=guess_confidence[position],
            )
        )
    return Snapshot(
        frame=frame,
        num_steps=len(trace.steps),
        cells=tuple(cells),
        nfe=0 if step is None else step.nfe,
        elapsed=0.0 if step is None else step.elapsed,
    )


def _state(masked: bool, fixed: bool, new: bool) -> str:
    if fixed:
        return PROMPT
    if masked:
        return MASKED
    return NEW if new else COMMITTED


def _piece(trace: Trace, token: int, position: int) -> str:
    if token not in trace.pieces:
        raise ValueError(f"token id {token} at position {position} has no display text in trace.pieces")
    return trace.pieces[token]
