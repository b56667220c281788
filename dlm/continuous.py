"""Continuous (embedding-space) diffusion: Diffusion-LM (Li et al. 2022) as a second model family.

Tokens become vectors of a learned embedding table; the forward process adds Gaussian noise to
them, q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), over T = 1000 steps; a bidirectional
transformer, told the step t, predicts the clean vectors x_0 from x_t; and the prediction is rounded
back to tokens, by the nearest embedding or by the decoder's logits (x_0 projected onto the tied
table). Sampling runs DDIM or DDPM over any number of strided steps, with Diffusion-LM's clamping
trick (snap the prediction to the nearest embedding before each update).

Prompts condition by in-painting: their clean embeddings stay fixed in x_t at every step, and a
segment embedding marks them as given. Classifier-free guidance (Ho & Salimans 2022) runs a second
branch with the given positions withheld (zeroed and marked so), as training does for a fraction of
examples, and mixes the predictions like the masked sampler mixes its logits:
    x0 = uncond + (1 + cfg_scale) * (cond - uncond)       (cfg_scale 0: conditional only)
which is diffusers' `guidance_scale` minus one.

    lm = dlm.load("runs/continuous")          # config.json: model_type "dlm-continuous", dlm.kind "continuous"
    trace = dlm.generate(lm, "It was", length=48, steps=100, seed=0, solver="ddpm", rounding="logits")

The model is a transformers `PreTrainedModel` (saved as safetensors, loaded without remote code: importing
this module registers it with the Auto classes); the backbone is transformers' own `ModernBertModel`,
fed through `inputs_embeds`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, ModernBertConfig, ModernBertModel, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from dlm import generation as _generation
from dlm.config import FIELDS as SAMPLER_FIELDS
from dlm.config import SamplerConfig
from dlm.generation import Canvas, Generation, forbidden_ids, infill_canvas, prompt_canvas
from dlm.loading import LanguageModel
from dlm.sampling import forbid
from dlm.trace import Step, Trace

KIND = "continuous"  # LanguageModel.kind and Trace.kind of this family
MODEL_TYPE = "dlm-continuous"  # config.json's model_type

# abar(s) for s = t / T in [0, 1], before normalising by abar(0) and capping each beta at MAX_BETA
NOISE_SCHEDULES = {
    "sqrt": "abar(s) = 1 - sqrt(s + 1e-4): noise rises fast at first (Diffusion-LM; suits discrete data)",
    "cosine": "abar(s) = cos^2(pi/2 (s + 0.008) / 1.008) (Nichol & Dhariwal 2021)",
}
MAX_BETA = 0.999  # improved-diffusion's cap on a single step's noise (the sqrt curve crosses 0 at s = 1)

SOLVERS = {  # both are DDIM's update (Song et al. 2021, eq. 12) with a different eta
    "ddim": "deterministic DDIM (eta 0): same start noise, same text",
    "ddpm": "ancestral DDPM (eta 1): fresh noise at every step, the posterior q(x_t' | x_t, x0)",
}
ETA = {"ddim": 0.0, "ddpm": 1.0}
ROUNDINGS = {
    "nearest": "the token whose embedding is nearest to the predicted x0 (Diffusion-LM)",
    "logits": "the argmax of the decoder's logits, x0 . E^T + bias (adds the learned token prior)",
}

GENERATE, GIVEN, WITHHELD = 0, 1, 2  # segment ids: noised and predicted / clean prompt / prompt withheld (CFG)


# =================================================================================================
# Noise schedule
# =================================================================================================


def _alpha_bar_curve(name: str, s: torch.Tensor) -> torch.Tensor:
    if name == "sqrt":
        return 1.0 - torch.sqrt(s + 1e-4)
    if name == "cosine":
        return torch.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
    raise ValueError(f"unknown noise schedule {name!r}; choose from {sorted(NOISE_SCHEDULES)}")


class NoiseSchedule:
    """The discrete forward process over t = 0..T (t = 0 is the clean data).

    beta_t = min(1 - abar(t/T) / abar((t-1)/T), MAX_BETA) and abar_t = prod_{i<=t} (1 - beta_i), as
    improved-diffusion's `betas_for_alpha_bar` (which Diffusion-LM uses); while no beta is capped this
    is exactly abar(t/T) / abar(0).
    """

    def __init__(self, name: str = "sqrt", num_steps: int = 1000):
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        cpu = torch.device("cpu")  # explicit: from_pretrained builds models under a meta-device context
        s = torch.linspace(0.0, 1.0, num_steps + 1, dtype=torch.float64, device=cpu)
        curve = _alpha_bar_curve(name, s)
        betas = (1.0 - curve[1:] / curve[:-1]).clamp(max=MAX_BETA)  # (T,)
        self.name, self.num_steps = name, num_steps
        self.betas = betas
        ones = torch.ones(1, dtype=torch.float64, device=cpu)
        self.alpha_bars = torch.cat([ones, torch.cumprod(1.0 - betas, 0)])  # (T+1,)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """A draw of x_t ~ q(x_t | x_0) = N(sqrt(abar_t) x0, (1 - abar_t) I). x0, noise: (B, L, D); t: (B,)."""
        abar = self.alpha_bars[t.cpu()].to(x0.device, x0.dtype).view(-1, 1, 1)
        return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise

    def timesteps(self, steps: int) -> list[int]:
        """steps + 1 evenly strided times from T down to 0; step i goes from the i-th to the next."""
        if not 1 <= steps <= self.num_steps:
            raise ValueError(f"steps must be between 1 and the {self.num_steps} training steps, got {steps}")
        return torch.linspace(self.num_steps, 0, steps + 1, dtype=torch.float64, device="cpu").round().long().tolist()

    def step(
        self, x_t: torch.Tensor, x0: torch.Tensor, t: int, t_next: int, eta: float, noise: torch.Tensor | None
    ) -> torch.Tensor:
        """x_{t_next} from x_t and a prediction of x0 (DDIM, Song et al. 2021, eq. 12):

            eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)
            sigma = eta * sqrt((1 - abar') / (1 - abar_t)) * sqrt(1 - abar_t / abar')
            x' = sqrt(abar') x0 + sqrt(1 - abar' - sigma^2) eps + sigma * noise

        eta 0 is deterministic DDIM; eta 1 samples DDPM's posterior q(x_t' | x_t, x0) over the stride.
        At t_next = 0 (abar' = 1) the result is x0 itself.
        """
        if not 0 <= t_next < t <= self.num_steps:
            raise ValueError(f"a step goes from t to an earlier t_next in 0..{self.num_steps}, got {t} -> {t_next}")
        abar, abar_next = float(self.alpha_bars[t]), float(self.alpha_bars[t_next])
        eps = (x_t - math.sqrt(abar) * x0) / math.sqrt(1.0 - abar)
        sigma = eta * math.sqrt((1.0 - abar_next) / (1.0 - abar) * (1.0 - abar / abar_next))
        x_next = math.sqrt(abar_next) * x0 + math.sqrt(max(1.0 - abar_next - sigma**2, 0.0)) * eps
        if sigma > 0:
            if noise is None:
                raise ValueError("a stochastic step (eta > 0) needs noise")
            x_next = x_next + sigma * noise
        return x_next


# =================================================================================================
# The model
# =================================================================================================


class ContinuousConfig(PretrainedConfig):
    """A Diffusion-LM denoiser: embedding table, timestep MLP, segment flags, ModernBERT backbone.

    `backbone` is the full ModernBertConfig as a dict; when not given it is built from the size arguments.
    """

    model_type = MODEL_TYPE

    def __init__(
        self,
        vocab_size: int = 4096,  # tokens in the embedding table (the tokenizer's length)
        embedding_dim: int = 64,  # the space diffusion runs in; smaller than hidden, as in Diffusion-LM
        hidden_size: int = 256,  # transformer width
        num_hidden_layers: int = 3,
        num_attention_heads: int = 4,
        intermediate_size: int = 640,  # GeGLU feed-forward width
        max_position_embeddings: int = 192,  # canvas positions the sampler may use (rotary: a little past training)
        num_diffusion_steps: int = 1000,  # T of the training process
        noise_schedule: str = "sqrt",  # see NOISE_SCHEDULES
        self_conditioning: bool = True,  # feed the previous x0 estimate back in (Chen et al. 2023, "Analog Bits")
        initializer_range: float = 0.02,
        backbone: dict | None = None,
        **kwargs,
    ):
        if noise_schedule not in NOISE_SCHEDULES:
            raise ValueError(f"unknown noise schedule {noise_schedule!r}; choose from {sorted(NOISE_SCHEDULES)}")
        kwargs.setdefault("tie_word_embeddings", False)  # one table serves as input and decoder: nothing to tie
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.hidden_size = hidden_size
        self.max_position_embeddings = max_position_embeddings
        self.num_diffusion_steps = num_diffusion_steps
        self.noise_schedule = noise_schedule
        self.self_conditioning = self_conditioning
        self.initializer_range = initializer_range
        if backbone is None:
            backbone = ModernBertConfig(
                vocab_size=1,  # the backbone's own token table is never used (we pass inputs_embeds): one row
                pad_token_id=0, bos_token_id=None, eos_token_id=None, cls_token_id=None, sep_token_id=None,
                hidden_size=hidden_size,
                num_hidden_layers=num_hidden_layers,
                num_attention_heads=num_attention_heads,
                intermediate_size=intermediate_size,
                max_position_embeddings=max_position_embeddings,
                global_attn_every_n_layers=1,  # global attention everywhere: canvases are short
                initializer_range=initializer_range,
            ).to_dict()
        if backbone["hidden_size"] != hidden_size:
            raise ValueError(f"backbone width {backbone['hidden_size']} differs from hidden_size {hidden_size}")
        self.backbone = backbone


@dataclass
class ContinuousOutput(ModelOutput):
    loss: torch.Tensor | None = None  # mse + ce
    mse: torch.Tensor | None = None  # (B,) per sample: mean squared error of x0 over its predicted positions
    ce: torch.Tensor | None = None  # (B,) per sample: rounding cross-entropy of the decoder on the predicted x0
    x0: torch.Tensor | None = None  # (B, L, D) the predicted clean embeddings


def timestep_features(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """(B,) integer steps -> (B, dim) sinusoidal features (the DDPM / Transformer encoding)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float().unsqueeze(1) * freqs.unsqueeze(0)  # (B, half)
    features = torch.cat([angles.cos(), angles.sin()], dim=1)
    return F.pad(features, (0, dim - 2 * half))


class ContinuousDiffusionLM(PreTrainedModel):
    """Predicts clean embeddings x0 from noised ones; the decoder is the (normalised) embedding table."""

    config_class = ContinuousConfig
    base_model_prefix = "denoiser"
    _supports_sdpa = True

    def __init__(self, config: ContinuousConfig):
        super().__init__(config)
        width, dim = config.hidden_size, config.embedding_dim
        self.embed_tokens = nn.Embedding(config.vocab_size, dim)  # E; rows are used normalised (see `table`)
        self.output_bias = nn.Parameter(torch.zeros(config.vocab_size))  # the decoder's per-token bias
        self.input_proj = nn.Linear(dim * (2 if config.self_conditioning else 1), width)  # [x_t, x0_prev] -> width
        self.time_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.segment = nn.Embedding(3, width)  # GENERATE / GIVEN / WITHHELD
        self.backbone = ModernBertModel(ModernBertConfig.from_dict(config.backbone))
        self.output_proj = nn.Linear(width, dim)
        self.schedule = NoiseSchedule(config.noise_schedule, config.num_diffusion_steps)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if module is self:
            nn.init.zeros_(self.output_bias)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def get_output_embeddings(self) -> nn.Embedding:
        return self.embed_tokens  # the decoder projects onto this same table

    # ---- the embedding space -------------------------------------------------------------------

    def table(self) -> torch.Tensor:
        """(V, D) the embedding table, each row scaled to norm sqrt(D) (unit RMS per dimension).

        Fixing the norm (as CDCD, Dieleman et al. 2022) keeps the data at the scale the noise schedule
        assumes: Diffusion-LM's MSE term alone would shrink the table, and the rounding term alone grow it.
        """
        return F.normalize(self.embed_tokens.weight.float(), dim=-1) * math.sqrt(self.config.embedding_dim)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, L, D) float32 clean embeddings x0."""
        return self.table()[ids]

    def logits(self, x0: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, L, V) decoder logits x0 . E^T + bias (float32)."""
        return x0.float() @ self.table().T + self.output_bias.float()

    def nearest(self, x0: torch.Tensor, forbidden: list[int] | None = None) -> torch.Tensor:
        """(B, L, D) -> (B, L) ids of the nearest embeddings: argmin |x0 - e|^2 = argmax x0.e - |e|^2 / 2."""
        table = self.table()
        score = x0.float() @ table.T - 0.5 * (table**2).sum(-1)  # (B, L, V)
        return forbid(score, forbidden or []).argmax(-1)

    # ---- the denoiser --------------------------------------------------------------------------

    def denoise(
        self, x_t: torch.Tensor, t: torch.Tensor, segment: torch.Tensor, x_self: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The model's x0 for every position. x_t: (B, L, D); t: (B,) long; segment: (B, L) long.

        Given positions must already hold their clean embeddings; withheld ones are zeroed here, so
        the unconditional branch never sees them. x_self: the previous x0 estimate (zeros: none).
        """
        withheld = (segment == WITHHELD).unsqueeze(-1)
        inputs = x_t.float().masked_fill(withheld, 0.0)
        if self.config.self_conditioning:
            x_self = torch.zeros_like(inputs) if x_self is None else x_self.float().masked_fill(withheld, 0.0)
            inputs = torch.cat([inputs, x_self], dim=-1)
        dtype = self.input_proj.weight.dtype
        time = self.time_mlp(timestep_features(t, self.config.hidden_size).to(dtype))  # (B, width)
        h = self.input_proj(inputs.to(dtype)) + self.segment(segment) + time.unsqueeze(1)
        h = self.backbone(inputs_embeds=h).last_hidden_state
        return self.output_proj(h).float()

    def forward(
        self,
        input_ids: torch.Tensor,
        timesteps: torch.Tensor,
        noise: torch.Tensor,
        segment: torch.Tensor,
        self_condition: torch.Tensor | bool = False,
        **_,
    ) -> ContinuousOutput:
        """The training loss for one batch (randomness comes from the collator):

            x_t = sqrt(abar_t) E[w] + sqrt(1 - abar_t) noise, given positions kept clean
            loss = |f(x_t, t) - E[w]|^2 + CE(decoder(f(x_t, t)), w)      over the positions to predict

        Diffusion-LM's L_simple plus its rounding term, here on the model's x0 (so the decoder's
        logits are trained on what sampling rounds). With self-conditioning, when `self_condition`
        is set a first no-grad pass gives the estimate the second pass conditions on.
        """
        x0 = self.embed(input_ids)  # (B, L, D)
        given = (segment == GIVEN).unsqueeze(-1)
        x_t = torch.where(given, x0, self.schedule.add_noise(x0, noise.float(), timesteps))
        x_self = None
        if self.config.self_conditioning and bool(self_condition):
            with torch.no_grad():
                x_self = self.denoise(x_t, timesteps, segment).detach()
        x0_hat = self.denoise(x_t, timesteps, segment, x_self)
        scored = (segment == GENERATE).float()  # (B, L)
        count = scored.sum(1).clamp(min=1)
        mse = (((x0_hat - x0) ** 2).mean(-1) * scored).sum(1) / count  # (B,)
        ce_all = F.cross_entropy(self.logits(x0_hat).transpose(1, 2), input_ids, reduction="none")  # (B, L)
        ce = (ce_all * scored).sum(1) / count  # (B,)
        weight = (scored.sum(1) > 0).float()
        loss = ((mse + ce) * weight).sum() / weight.sum().clamp(min=1)
        return ContinuousOutput(loss=loss, mse=mse.detach(), ce=ce.detach(), x0=x0_hat)


AutoConfig.register(MODEL_TYPE, ContinuousConfig)
AutoModel.register(ContinuousConfig, ContinuousDiffusionLM)


# =================================================================================================
# Sampling
# =================================================================================================


@dataclass(frozen=True)
class ContinuousOptions:
    """Sampler settings only this family has (the shared ones are in `SamplerConfig`)."""

    solver: str = "ddim"  # "ddim" (deterministic) or "ddpm" (ancestral): see SOLVERS
    rounding: str = "nearest"  # how x0 becomes tokens: see ROUNDINGS
    clamp: bool = True  # Diffusion-LM's clamping trick: update with the rounded x0's embedding

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; choose from {sorted(SOLVERS)}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"unknown rounding {self.rounding!r}; choose from {sorted(ROUNDINGS)}")
        if not isinstance(self.clamp, bool):
            raise ValueError(f"clamp must be True or False, got {self.clamp!r}")

    def replace(self, **overrides) -> ContinuousOptions:
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ContinuousOptions:
        """From a checkpoint's `dlm.sampler` block, ignoring the keys that belong to `SamplerConfig`."""
        return cls(**{k: v for k, v in d.items() if k in OPTION_FIELDS})


OPTION_FIELDS = tuple(f.name for f in dataclasses.fields(ContinuousOptions))


def guide(cond: torch.Tensor, uncond: torch.Tensor, cfg_scale: float) -> torch.Tensor:
    """Classifier-free guidance on x0: uncond + (1 + cfg_scale) (cond - uncond); cfg_scale 0 is cond."""
    return uncond + (1.0 + cfg_scale) * (cond - uncond)


def predict_x0(
    model: ContinuousDiffusionLM,
    x_t: torch.Tensor,
    t: torch.Tensor,
    segment: torch.Tensor,
    x_self: torch.Tensor | None,
    cfg_scale: float,
) -> torch.Tensor:
    """The (guided) x0 the sampler uses: with cfg_scale > 0 the conditional branch and the one with
    every given position withheld run in one batch of 2B and are mixed by `guide`. (B, L, D)."""
    if cfg_scale == 0:
        return model.denoise(x_t, t, segment, x_self)
    unconditional = segment.masked_fill(segment == GIVEN, WITHHELD)
    both = model.denoise(
        torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([segment, unconditional]),
        None if x_self is None else torch.cat([x_self, x_self]),
    )
    cond, uncond = both.chunk(2)
    return guide(cond, uncond, cfg_scale)


def row_normals(generators: list[torch.Generator], shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """(B, *shape) standard normals, row b from generators[b] (so a row's noise ignores the batch size)."""
    return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)


class ContinuousGeneration(Generation):
    """A continuous-diffusion run; see `dlm.stream` (or `continuous_stream`) for how to start one.

    Step k records the rounded prediction of x0 (canvas and guess alike: what the text would be if
    sampling stopped now, diffusers' "preview"), the decoder's probability of each rounded token,
    and as committed the positions whose token changed in this step. Given positions never change.
    """

    def __init__(self, lm, canvas, config, generator, seed, prompt, options: ContinuousOptions):
        super().__init__(lm, canvas, config, generator, seed, prompt)
        self.options = options

    def _run(self) -> Iterator[Step]:
        config, options, lm = self.config, self.options, self.lm
        model, device = lm.model, lm.device
        schedule = model.schedule
        times = schedule.timesteps(config.steps)
        given = self.canvas.fixed.to(device)  # (T,)
        num_rows, num_positions = self.initial.shape
        initial = self.initial.to(device)  # (B, T): -1 where text is to be generated
        segment = torch.where(given, GIVEN, GENERATE).expand(num_rows, -1)  # (B, T)
        x0_given = model.embed(initial.clamp(min=0))  # (B, T, D); only the given rows are used
        keep = given.view(1, -1, 1)
        x = row_normals(self.generators, (num_positions, model.config.embedding_dim), device)  # x_T ~ N(0, I)
        x = torch.where(keep, x0_given, x)
        x_self = torch.zeros_like(x) if model.config.self_conditioning else None
        prompted = bool((self.canvas.fixed & ~self.canvas.hidden).any())
        cfg_scale = config.cfg_scale if prompted else 0.0  # nothing to guide by without a prompt
        forbidden = forbidden_ids(lm, config.allow_eos)
        eta = ETA[options.solver]
        previous, nfe = initial, 0
        for index, (t, t_next) in enumerate(zip(times[:-1], times[1:])):
            t_batch = torch.full((num_rows,), t, dtype=torch.long, device=device)
            x0 = predict_x0(model, x, t_batch, segment, x_self, cfg_scale)  # (B, T, D)
            nfe += 2 if cfg_scale > 0 else 1
            logits = forbid(model.logits(x0), forbidden)  # (B, T, V)
            tokens = logits.argmax(-1) if options.rounding == "logits" else model.nearest(x0, forbidden)  # (B, T)
            x0_used = model.embed(tokens) if options.clamp else x0
            x0_used = torch.where(keep, x0_given, x0_used)
            noise = row_normals(self.generators, x.shape[1:], device) if eta > 0 and t_next > 0 else None
            x = torch.where(keep, x0_given, schedule.step(x, x0_used, t, t_next, eta, noise))
            if x_self is not None:
                x_self = x0  # self-conditioning on the model's own estimate, as in training
            canvas = torch.where(given, initial, tokens)
            confidence = torch.softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, T)
            confidence = confidence.masked_fill(given, 0.0)
            yield Step(
                index=index,
                canvas=canvas.cpu(),
                guess=canvas.cpu(),
                confidence=confidence.float().cpu(),
                committed=((canvas != previous) & ~given).cpu(),
                nfe=nfe,
                elapsed=self._elapsed(),
            )
            previous = canvas

    def trace(self) -> Trace:
        trace = super().trace()
        trace.config = {**trace.config, **self.options.to_dict()}
        return trace


def continuous_canvas(lm: LanguageModel, prompt: str, length: int, fixed: dict[int, str | int]) -> Canvas:
    """[framing prefix] prompt, then `length` positions to generate (-1), with optional pinned tokens.

    No closing framing: training blocks are packed `<s> doc </s> <s> ...`, so a fixed end token
    would force the text to stop exactly at the end of the canvas.
    """
    return prompt_canvas(lm, prompt, length, fixed, blank=-1, closing=False)


def continuous_stream(
    lm: LanguageModel,
    prompt: str = "",
    *,
    config: SamplerConfig | None = None,
    infill: str | None = None,
    fixed: dict[int, str | int] | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    **overrides,
) -> ContinuousGeneration:
    """`dlm.stream` for continuous models (it dispatches here); the arguments are the same.

    **overrides: any `SamplerConfig` field (`length`, `steps`, `cfg_scale`, `allow_eos`, `num_samples`;
    the masked-only ones are ignored) or `ContinuousOptions` field (`solver`, `rounding`, `clamp`).
    Defaults for both come from the checkpoint's `dlm.sampler` block.
    """
    if lm.kind != KIND:
        raise ValueError(f"{lm.source} is a {lm.kind} model, not a continuous one")
    unknown = set(overrides) - set(SAMPLER_FIELDS) - set(OPTION_FIELDS)
    if unknown:
        choices = sorted((*SAMPLER_FIELDS, *OPTION_FIELDS))
        raise ValueError(f"unknown sampler option(s) {sorted(unknown)}; choose from {choices}")
    config = (config or lm.settings).replace(**{k: v for k, v in overrides.items() if k in SAMPLER_FIELDS})
    options = ContinuousOptions.from_dict(lm.card.get("sampler", {}))
    options = options.replace(**{k: v for k, v in overrides.items() if k in OPTION_FIELDS})
    if infill is not None and prompt:
        raise ValueError("give either a prompt to continue or an infill template, not both")
    if infill is not None:
        if fixed:
            raise ValueError("an infill template already says which tokens are fixed; drop `fixed`")
        if lm.tokenizer.mask_token is None:
            raise ValueError(f"infill templates mark blanks with {_generation.BLANK}, which needs a tokenizer "
                             "with a mask token; pin tokens with `fixed=` instead")
        template = infill_canvas(lm, infill)
        canvas = Canvas(template.ids.masked_fill(~template.fixed, -1), template.fixed, template.hidden, infill=True)
    else:
        canvas = continuous_canvas(lm, prompt, config.length, fixed or {})
    _generation.check_fits(lm, canvas)
    lm.model.schedule.timesteps(config.steps)  # fail now on a bad number of steps, not at the first step
    return ContinuousGeneration(lm, canvas, config, generator, seed, prompt if infill is None else infill, options)
