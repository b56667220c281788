"""dlm: text diffusion language models: load, stream, score and render.

    import dlm
    lm = dlm.load("default")                      # bundled name, folder, or Hub repo id
    trace = dlm.generate(lm, "It was a bright cold day", length=48, steps=16, seed=0)
    print(trace.texts[0])
    print(dlm.log_likelihood(lm, "Call me Ishmael.").perplexity)
    dlm.generate(instruct, dlm.chat_prompt(instruct, "Write a haiku"))  # instruct models: their chat template
"""

from dlm.config import REMASKING, SCHEDULES, SamplerConfig
from dlm.generation import Generation, chat_prompt, generate, stream
from dlm.likelihood import Likelihood, log_likelihood
from dlm.loading import LanguageModel, ModelNotFoundError, bundled_models, load
from dlm.trace import Step, Trace

__all__ = [
    "REMASKING",
    "SCHEDULES",
    "Generation",
    "LanguageModel",
    "Likelihood",
    "ModelNotFoundError",
    "SamplerConfig",
    "Step",
    "Trace",
    "bundled_models",
    "chat_prompt",
    "generate",
    "load",
    "log_likelihood",
    "stream",
]
