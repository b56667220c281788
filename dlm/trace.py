"""One denoising step, and a whole run of them: the data every consumer shares.

A `Step` is what the sampler yields; a `Trace` is the steps collected with what a renderer needs to
draw them without a tokenizer (`pieces` maps every token id that appears to its display text).
Colours and pixels live in `dlm.render`, never here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

TRACE_VERSION = 1


@dataclass
class Step:
    """The state after one denoising step, for every sample in the batch.

    Shapes: B samples, T canvas positions (prompt, generated region and any special tokens).
    """

    index: int  # 0-based step number
    canvas: torch.Tensor  # (B, T) long: token ids after this step; still-masked positions hold mask_id
    guess: torch.Tensor  # (B, T) long: the model's latest guess x0 at each masked position; at a committed
    # one, the token committed (-1 where the model never guessed: the prompt)
    confidence: torch.Tensor  # (B, T) float: probability the model gave that guess (0 where none)
    committed: torch.Tensor  # (B, T) bool: positions revealed in this step
    nfe: int  # forward passes (model evaluations per sample) so far
    elapsed: float  # seconds since sampling started

    def committed_positions(self, row: int = 0) -> list[int]:
        return self.committed[row].nonzero().flatten().tolist()

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "canvas": self.canvas.tolist(),
            "guess": self.guess.tolist(),
            "confidence": [[round(c, 5) for c in row] for row in self.confidence.tolist()],
            "committed": [self.committed_positions(b) for b in range(self.canvas.shape[0])],
            "nfe": self.nfe,
            "elapsed": self.elapsed,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Step:
        canvas = torch.tensor(d["canvas"], dtype=torch.long)
        committed = torch.zeros_like(canvas, dtype=torch.bool)
        for b, positions in enumerate(d["committed"]):
            committed[b, positions] = True
        return cls(
            index=d["index"],
            canvas=canvas,
            guess=torch.tensor(d["guess"], dtype=torch.long),
            confidence=torch.tensor(d["confidence"], dtype=torch.float32),
            committed=committed,
            nfe=d["nfe"],
            elapsed=d["elapsed"],
        )


@dataclass
class Trace:
    """A whole generation run: the starting canvas, every step, and the decoded result."""

    kind: str  # "masked" (diffusion), "causal" (autoregressive) or "continuous" (embedding-space diffusion)
    mask_id: int  # id of a not-yet-decided position in `canvas` (-1 for causal traces)
    initial: torch.Tensor  # (B, T) long: the canvas before the first step
    fixed: torch.Tensor  # (T,) bool: prompt / fixed tokens, never changed by the sampler
    hidden: torch.Tensor  # (T,) bool: framing special tokens ([CLS], <s>, </s>) not worth drawing
    pieces: dict[int, str]  # display text of every token id that appears in canvases or guesses
    texts: list[str] = field(default_factory=list)  # final decoded output, one per sample
    prompt: str = ""  # the prompt (or infilling template) as given
    model: str = ""  # where the model came from
    config: dict = field(default_factory=dict)  # the sampler settings used
    steps: list[Step] = field(default_factory=list)

    @property
    def num_samples(self) -> int:
        return self.initial.shape[0]

    @property
    def final(self) -> torch.Tensor:
        return self.steps[-1].canvas if self.steps else self.initial

    @property
    def nfe(self) -> int:
        return self.steps[-1].nfe if self.steps else 0

    @property
    def seconds(self) -> float:
        return self.steps[-1].elapsed if self.steps else 0.0

    def to_dict(self) -> dict:
        return {
            "version": TRACE_VERSION,
            "kind": self.kind,
            "mask_id": self.mask_id,
            "initial": self.initial.tolist(),
            "fixed": self.fixed.nonzero().flatten().tolist(),
            "hidden": self.hidden.nonzero().flatten().tolist(),
            "length": self.initial.shape[1],
            "pieces": {str(k): v for k, v in self.pieces.items()},
            "texts": self.texts,
            "prompt": self.prompt,
            "model": self.model,
            "config": self.config,
            "steps": [s.to_dict() for s in self.steps],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Trace:
        if d.get("version") != TRACE_VERSION:
            raise ValueError(f"unsupported trace version {d.get('version')!r}; expected {TRACE_VERSION}")
        length = d["length"]
        fixed = torch.zeros(length, dtype=torch.bool)
        fixed[d["fixed"]] = True
        hidden = torch.zeros(length, dtype=torch.bool)
        hidden[d["hidden"]] = True
        return cls(
            kind=d["kind"],
            mask_id=d["mask_id"],
            initial=torch.tensor(d["initial"], dtype=torch.long),
            fixed=fixed,
            hidden=hidden,
            pieces={int(k): v for k, v in d["pieces"].items()},
            texts=list(d["texts"]),
            prompt=d["prompt"],
            model=d["model"],
            config=dict(d["config"]),
            steps=[Step.from_dict(s) for s in d["steps"]],
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict()), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
