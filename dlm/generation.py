"""The entry points: `stream` yields denoising steps, `generate` collects them into a `Trace`.

Every family shares this front door, which looks the model's family up in `dlm.families`: a masked
model runs the diffusion sampler (`dlm.sampler`), a causal one the autoregressive loop (`dlm.ar`), a
continuous one embedding-space diffusion (`dlm.continuous`), and all yield the same `Step`s, so the
app, the CLI, the renderers and the benchmark treat them alike. This module holds what they share:
the `Generation` base class and the canvases.

    lm = dlm.load("default")
    for step in dlm.stream(lm, "Once upon a time", length=48, steps=16, seed=0):
        print(step.index, step.nfe)
    trace = dlm.generate(lm, "The [MASK] [MASK] sat on the mat", seed=0)  # blanks: infilling
"""

from __future__ import annotations

import codecs
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import torch

from dlm.config import SamplerConfig
from dlm.families import family
from dlm.loading import LanguageModel
from dlm.sampling import row_generators
from dlm.trace import Step, Trace

BLANK = "[MASK]"  # the generic blank in infilling templates (a tokenizer's own mask token works too)


@dataclass(frozen=True)
class Canvas:
    """The starting canvas of a run, before any step."""

    ids: torch.Tensor  # (T,) long: framing specials, prompt / fixed tokens, masked positions
    fixed: torch.Tensor  # (T,) bool: prompt and fixed tokens (including framing specials)
    hidden: torch.Tensor  # (T,) bool: framing special tokens
    infill: bool  # True when the blanks are spread through a template rather than after a prompt


class Generation:
    """A run in progress: iterate it for `Step`s; `trace()` snapshots what has happened so far."""

    def __init__(
        self,
        lm: LanguageModel,
        canvas: Canvas,
        config: SamplerConfig,
        generator: torch.Generator | None,
        seed: int | None,
        prompt: str,
    ):
        self.lm = lm
        self.canvas = canvas
        self.config = config
        self.prompt = prompt
        self.generators = row_generators(generator, seed, config.num_samples)
        self.initial = canvas.ids.unsqueeze(0).repeat(config.num_samples, 1)  # (B, T)
        self.steps: list[Step] = []
        self._pieces: dict[int, str] = {}  # display text per token id, filled lazily
        self._pieces_steps = 0  # steps whose ids are already in _pieces
        self._started = False
        self._cuda = lm.device.type == "cuda"

    def __iter__(self) -> Iterator[Step]:
        if self._started:
            raise RuntimeError("a Generation can be iterated only once; start a new one with dlm.stream")
        self._started = True
        self._t0 = time.perf_counter()
        steps = self._run()
        while True:
            # inference mode is per thread, and a consumer may resume us on another thread (gradio
            # streams each update from a worker), so enter it around each step, not the whole loop
            with torch.inference_mode():
                step = next(steps, None)
            if step is None:
                return
            self.steps.append(step)
            yield step

    def _run(self) -> Iterator[Step]:
        raise NotImplementedError

    def _elapsed(self) -> float:
        if self._cuda:
            torch.cuda.synchronize()  # count the GPU work, not just its launch
        return time.perf_counter() - self._t0

    def run(self) -> Trace:
        """Run to the end and return the trace."""
        for _ in self:
            pass
        return self.trace()

    # ---- results -----------------------------------------------------------------------------

    @property
    def final(self) -> torch.Tensor:
        return self.steps[-1].canvas if self.steps else self.initial

    def texts(self) -> list[str]:
        """Full texts (prompt + generation, or the filled template), cut at the first generated EOS."""
        return [self._decode(row, completion_only=False) for row in self.final]

    def completions(self) -> list[str]:
        """Only the generated part, cut at the first generated EOS."""
        return [self._decode(row, completion_only=True) for row in self.final]

    def _decode(self, row: torch.Tensor, completion_only: bool) -> str:
        generated = ~self.canvas.fixed
        keep = ~self.canvas.hidden & (row >= 0)  # causal runs leave unfilled slots at -1
        if completion_only:
            keep &= generated
        eos = self.lm.eos_id
        if eos is not None and not self.canvas.infill:
            hits = ((row == eos) & generated).nonzero()
            if len(hits):
                keep[int(hits[0]) :] = False  # everything from the first generated EOS is dropped
        return self.lm.tokenizer.decode(row[keep].tolist(), skip_special_tokens=True).strip()

    def trace(self) -> Trace:
        """The run so far as a `Trace` (cheap to call after every step)."""
        self._update_pieces()
        return Trace(
            kind=self.lm.kind,
            mask_id=self._mask_id,
            initial=self.initial,
            fixed=self.canvas.fixed,
            hidden=self.canvas.hidden,
            pieces=dict(self._pieces),
            texts=self.texts(),
            prompt=self.prompt,
            model=self.lm.source,
            config=self.config.to_dict(),
            steps=list(self.steps),
        )

    @property
    def _mask_id(self) -> int:
        return self.lm.mask_id if self.lm.kind == "masked" else -1

    def _update_pieces(self) -> None:
        """Add display text for token ids that appeared since the last call."""
        seen = {int(i) for i in self.initial.unique()} if not self._pieces else set()
        for step in self.steps[self._pieces_steps :]:
            seen.update(int(i) for i in step.canvas.unique())
            seen.update(int(i) for i in step.guess.unique())
        self._pieces_steps = len(self.steps)
        new = sorted(i for i in seen if i >= 0 and i not in self._pieces)
        self._pieces.update(zip(new, raw_pieces(self.lm.tokenizer, new)))  # single ids: no neighbours yet


def stream(
    lm: LanguageModel,
    prompt: str = "",
    *,
    config: SamplerConfig | None = None,
    infill: str | None = None,
    fixed: dict[int, str | int] | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    **overrides,
) -> Generation:
    """Start a generation; iterate the result for one `Step` per denoising step (or per AR token).

    Args:
        lm: from `dlm.load`.
        prompt: text the output continues (any length, may be empty); never changed.
        config: sampler settings; defaults to the checkpoint's recommendations (`lm.settings`).
        infill: a template with blanks (`[MASK]` or the tokenizer's mask token) to fill instead
            of continuing a prompt; every non-blank token is kept. Masked models only.
        fixed: tokens pinned at positions of the generated region, {position: text or token id}.
        generator / seed: the randomness (same seed, same text, whatever `num_samples`).
        **overrides: any `SamplerConfig` field, e.g. `steps=16, remasking="margin"`; continuous models
            also take `solver`, `rounding` and `clamp` (`dlm.continuous.ContinuousOptions`).
    """
    return family(lm.kind).stream_function()(lm, prompt, config=config, infill=infill, fixed=fixed,
                                             generator=generator, seed=seed, **overrides)


def generate(lm: LanguageModel, prompt: str = "", **kwargs) -> Trace:
    """Run `stream` to the end and return the `Trace` (see `stream` for the arguments)."""
    return stream(lm, prompt, **kwargs).run()


# ---- canvases ----------------------------------------------------------------------------------


def special_framing(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer wraps every text in: ([CLS], [SEP]), (<s>, </s>), ..."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    framed = tokenizer("a", add_special_tokens=True)["input_ids"]
    for i in range(len(framed) - len(plain) + 1):
        if framed[i : i + len(plain)] == plain:
            return framed[:i], framed[i + len(plain) :]
    raise ValueError("cannot find how the tokenizer frames a text with special tokens")


def has_chat_template(lm: LanguageModel) -> bool:
    """True when the checkpoint's tokenizer carries a chat template (an instruct model)."""
    return bool(getattr(lm.tokenizer, "chat_template", None))


def chat_prompt(lm: LanguageModel, message: str | list[dict]) -> str:
    """The prompt an instruct model answers: `message` (the user's turn, or a list of {"role", "content"}
    turns) rendered by the tokenizer's chat template, ending where the assistant's reply starts. It already
    holds the template's special tokens (BOS included), and the canvases add no second copy, so its token
    ids are exactly `apply_chat_template(..., add_generation_prompt=True)`'s."""
    if not has_chat_template(lm):
        raise ValueError(f"{lm.source} has no chat template (it is not an instruct model): give a plain prompt")
    turns = [{"role": "user", "content": message}] if isinstance(message, str) else list(message)
    if not turns or not all(isinstance(t, dict) and {"role", "content"} <= set(t) for t in turns):
        raise ValueError('a chat is a message, or a non-empty list of {"role": ..., "content": ...} turns')
    if not str(turns[-1]["content"]).strip():
        raise ValueError("the chat message is empty")
    return lm.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def prompt_canvas(
    lm: LanguageModel,
    prompt: str,
    length: int,
    fixed: dict[int, str | int],
    blank: int | None = None,
    closing: bool = True,
) -> Canvas:
    """[framing] prompt [MASK] * length [framing], with optional tokens pinned inside the masks.

    blank: the id of a position to generate (default: the mask token); closing=False leaves out
    the closing framing token (continuous models, which decide themselves where the text ends).
    """
    prefix, suffix = special_framing(lm.tokenizer)
    if not closing:
        suffix = []
    body = encode(lm.tokenizer, prompt)
    if prefix and body[: len(prefix)] == prefix:
        prefix = []  # the prompt already opens with the framing (a chat template's BOS): no second one
    ids = prefix + body + [lm.mask_id if blank is None else blank] * length + suffix
    is_fixed = [True] * (len(prefix) + len(body)) + [False] * length + [True] * len(suffix)
    start = len(prefix) + len(body)
    for position, value in sorted(fixed.items()):
        tokens = [value] if isinstance(value, int) else encode(lm.tokenizer, value)
        if position < 0 or position + len(tokens) > length:
            raise ValueError(f"fixed tokens at position {position} ({len(tokens)} tokens) fall outside 0..{length - 1}")
        for j, token in enumerate(tokens):
            ids[start + position + j] = token
            is_fixed[start + position + j] = True
    if all(is_fixed):
        raise ValueError("nothing to generate: every position is fixed")
    hidden = [True] * len(prefix) + [False] * (len(ids) - len(prefix) - len(suffix)) + [True] * len(suffix)
    return anchored(lm, Canvas(torch.tensor(ids), torch.tensor(is_fixed), torch.tensor(hidden), infill=False))


def infill_canvas(lm: LanguageModel, template: str) -> Canvas:
    """Every blank in the template becomes one masked position; the text around it is fixed.

    Whitespace before a blank belongs to the blank (BPE tokens carry their leading space).
    """
    markers = {BLANK} | ({lm.tokenizer.mask_token} if lm.tokenizer.mask_token else set())
    pattern = r"\s*(?:" + "|".join(re.escape(m) for m in sorted(markers)) + ")"
    fragments = re.split(pattern, template)
    if len(fragments) == 1:
        raise ValueError(f"infill template has no blanks; mark each missing token with {BLANK}")
    prefix, suffix = special_framing(lm.tokenizer)
    ids, is_fixed = list(prefix), [True] * len(prefix)
    for i, fragment in enumerate(fragments):
        if fragment:
            tokens = encode(lm.tokenizer, fragment)
            ids += tokens
            is_fixed += [True] * len(tokens)
        if i < len(fragments) - 1:
            ids.append(lm.mask_id)
            is_fixed.append(False)
    ids += suffix
    is_fixed += [True] * len(suffix)
    hidden = [True] * len(prefix) + [False] * (len(ids) - len(prefix) - len(suffix)) + [True] * len(suffix)
    return anchored(lm, Canvas(torch.tensor(ids), torch.tensor(is_fixed), torch.tensor(hidden), infill=True))


def anchored(lm: LanguageModel, canvas: Canvas) -> Canvas:
    """The canvas, with BOS put in front (hidden) when a shifted model would otherwise have to generate
    position 0: its prediction for position i is the output at i - 1 (`dlm.shifted`), and position 0
    has none. Tokenizers that frame texts with BOS (ours) never need it."""
    if not lm.shifted or bool(canvas.fixed[0]):
        return canvas
    given = torch.tensor([True])
    return Canvas(torch.cat([torch.tensor(start_ids(lm)), canvas.ids]), torch.cat([given, canvas.fixed]),
                  torch.cat([given, canvas.hidden]), canvas.infill)


def start_ids(lm: LanguageModel) -> list[int]:
    """[BOS]: what a shifted model's canvas starts with when neither framing nor prompt gives position 0."""
    if lm.bos_id is None:
        raise ValueError(f"{lm.source} is a shifted model, which never generates position 0, and its tokenizer has "
                         "no BOS to put there: give a prompt")
    return [lm.bos_id]


def causal_canvas(lm: LanguageModel, prompt: str, length: int) -> Canvas:
    """[BOS] prompt, then `length` empty slots (-1) the model fills left to right. A prompt that already
    starts with the start token (a chat template's `<|im_start|>`, a BOS written out) gets no second one."""
    body = encode(lm.tokenizer, prompt)
    prefix = [lm.bos_id] if lm.bos_id is not None and body[:1] != [lm.bos_id] else []
    if not prefix and not body:
        raise ValueError("this causal model has no BOS token, so it needs a non-empty prompt")
    ids = prefix + body + [-1] * length
    is_fixed = [True] * (len(prefix) + len(body)) + [False] * length
    hidden = [True] * len(prefix) + [False] * (len(body) + length)
    canvas = Canvas(torch.tensor(ids), torch.tensor(is_fixed), torch.tensor(hidden), infill=False)
    check_fits(lm, canvas)
    return canvas


def check_fits(lm: LanguageModel, canvas: Canvas) -> None:
    limit = lm.max_positions
    if limit is not None and len(canvas.ids) > limit:
        raise ValueError(
            f"prompt and length need {len(canvas.ids)} positions, but the model has {limit}; "
            "shorten the prompt or the length"
        )


# ---- display text ------------------------------------------------------------------------------


def token_pieces(tokenizer, ids: list[int]) -> list[str]:
    """Display text of consecutive tokens (a text's ids, in order), such that joining them reads as the text.

    Byte-level BPE pieces carry their own leading space. WordPiece pieces do not: a word start
    gets a space and a `##` continuation loses its marker. A character whose bytes are split over
    tokens (é, Hebrew, emoji in byte-level BPE) shows whole at the token that completes it.
    """
    return whole_characters(raw_pieces(tokenizer, ids))


def raw_pieces(tokenizer, ids: list[int]) -> list[str]:
    """Display text of single tokens, each on its own, for a vocabulary of pieces (`Trace.pieces`).

    A token whose bytes are no whole character on their own (the first byte of "é" in byte-level BPE)
    keeps them as surrogate escapes (`bytes.decode("utf-8", "surrogateescape")`, PEP 383) rather than
    U+FFFD, so that `whole_characters` can join them with their neighbours' bytes once the canvas is known.
    """
    wordpiece = _is_wordpiece(tokenizer)
    pieces = []
    for i in ids:
        text = tokenizer.decode([i], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if wordpiece and i not in tokenizer.all_special_ids:
            token = tokenizer.convert_ids_to_tokens(i)
            text = token[2:] if token.startswith("##") else " " + text
        elif "\ufffd" in text:
            raw = _token_bytes(tokenizer, i)
            if raw is not None:
                text = raw.decode("utf-8", "surrogateescape")
        pieces.append(text)
    return pieces


_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of a byte that is no character


def whole_characters(pieces: list[str | None]) -> list[str]:
    """Display texts for consecutive pieces from `raw_pieces`, one per piece: bytes split over pieces are
    decoded together, and each character goes to the piece that completes it (a piece holding only the
    first bytes of one shows nothing for them), so the colouring stays per token. None (an undecided
    position) ends a run: bytes left incomplete there, or that never form a character, show as U+FFFD."""
    if not any(piece and _ESCAPED_BYTE.search(piece) for piece in pieces):
        return ["" if piece is None else piece for piece in pieces]
    texts: list[str] = []
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    pending = None  # index of the last piece fed to the decoder, which gets whatever a flush returns
    for piece in pieces:
        if piece is None:
            if pending is not None:
                texts[pending] += decoder.decode(b"", final=True)
                pending = None
            texts.append("")
            continue
        texts.append(decoder.decode(piece.encode("utf-8", "surrogateescape")))
        pending = len(texts) - 1
    if pending is not None:
        texts[pending] += decoder.decode(b"", final=True)
    return texts


def _token_bytes(tokenizer, i: int) -> bytes | None:
    """The bytes a token stands for, when the tokenizer says: byte-level BPE (GPT-2's alphabet of printable
    stand-ins, one per byte) or SentencePiece byte fallback (`<0xC3>`); None otherwise."""
    token = tokenizer.convert_ids_to_tokens(i)
    if not isinstance(token, str):
        return None
    if re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", token):
        return bytes([int(token[3:5], 16)])
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or type(backend.decoder).__name__ != "ByteLevel":
        return None
    alphabet = _byte_level_alphabet()
    return bytes(alphabet[char] for char in token) if all(char in alphabet for char in token) else None


@cache
def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: the printable character that stands for each byte -> the byte.
    Printable Latin-1 bytes stand for themselves; the others, in order, for U+0100 onwards."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [byte for byte in range(256) if byte not in printable]
    return {chr(byte): byte for byte in printable} | {chr(256 + n): byte for n, byte in enumerate(others)}


def _is_wordpiece(tokenizer) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend is not None and type(backend.model).__name__ == "WordPiece"


def forbidden_ids(lm: LanguageModel, allow_eos: bool) -> list[int]:
    """Token ids the sampler must never produce: every special token (and the mask, which a foreign
    checkpoint may name only in its config), except EOS when allowed."""
    special = set(lm.tokenizer.all_special_ids) | ({lm.mask_id} if lm.kind == "masked" else set())
    if allow_eos and lm.eos_id is not None:
        special.discard(lm.eos_id)
    vocab = lm.model.get_output_embeddings().weight.shape[0]
    return sorted(i for i in special if i < vocab)
