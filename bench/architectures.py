"""Which masked-LM architectures dlm runs: a tiny random checkpoint of every `*ForMaskedLM` that
transformers ships (and a user might bring), through every operation, as a table.

    python bench/architectures.py                          # the whole matrix (about two minutes on 2 cores)
    python bench/architectures.py --only bert albert --json bench/results/architectures.json

Each checkpoint is built here (random weights, the bundled `default` tokenizer), saved as safetensors
and loaded back through `dlm.load`, as a user's folder or Hub repo would be. Operations:
generation with each remasking rule, blocks (semi-autoregressive), the prefix and dual key/value
caches, classifier-free guidance, infilling, the ELBO, and the command line. A cell is `ok`, `refused`
(a clear ValueError that says why, e.g. a cache on an architecture whose attention it cannot route),
or `FAIL` (anything else: a crash, or a cache whose window of an unchanged canvas differs from the full
forward, or whose one-step-per-block run writes other text than the exact run).
`tests/test_architectures.py` runs the same matrix and asserts it has no FAIL.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)

# model type -> config overrides beyond TINY (sizes whose names differ, or short-sequence settings)
ARCHITECTURES: dict[str, dict] = {
    "bert": {},
    "roberta": {},
    "distilbert": dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64),
    "albert": dict(embedding_size=16),
    "deberta": dict(relative_attention=True, pos_att_type=["c2p", "p2c"]),
    "deberta-v2": dict(relative_attention=True, pos_att_type=["c2p", "p2c"], position_buckets=32),
    "electra": dict(embedding_size=16),
    "modernbert": dict(global_attn_every_n_layers=2, local_attention=16),
    "xlm-roberta": {},
    "xlm-roberta-xl": {},
    "camembert": {},
    "mpnet": {},
    "big_bird": dict(attention_type="original_full"),
    "convbert": dict(embedding_size=32),
    "ernie": {},
    "megatron-bert": {},
    "mobilebert": dict(embedding_size=16, intra_bottleneck_size=32, true_hidden_size=32, num_feedforward_networks=1),
    "rembert": dict(input_embedding_size=16, output_embedding_size=16),
    "roformer": dict(embedding_size=32),
    "squeezebert": dict(embedding_size=32, q_groups=1, k_groups=1, v_groups=1, post_attention_groups=1,
                        intermediate_groups=1, output_groups=1),
    "data2vec-text": {},
    "roberta-prelayernorm": {},
    "longformer": dict(attention_window=8),
    "funnel": dict(block_sizes=[1, 1], d_model=32, n_head=2, d_head=16, d_inner=64, num_decoder_layers=1),
    "fnet": {},
    "nystromformer": {},  # (its default config: landmarks == segment length, so full attention)
    "yoso": {},
    "mra": {},
    "ibert": {},
    "xmod": dict(languages=["en_XX"], default_language="en_XX"),
    "eurobert": {},
    "nomic_bert": {},
    "gte": {},
    "ultrabert": {},
    "jina_embeddings_v3": {},
    "roc_bert": {},
}

# a fixed-length architecture: dlm refuses it at load with a clear message (dlm.loading.refuse_fixed_length)
FIXED_LENGTH = {"nystromformer": dict(num_landmarks=4, segment_means_seq_len=8)}

# model types transformers lists under masked LM that are not text masked LMs a user brings to dlm
NOT_TEXT_MASKED_LMS = {
    "bart": "encoder-decoder (denoising seq2seq), not a bidirectional masked LM",
    "mbart": "encoder-decoder", "mvp": "encoder-decoder",
    "esm": "protein sequences (amino-acid vocabulary)", "esmc": "protein sequences",
    "layoutlm": "needs a bounding box per token (documents)", "tapas": "needs table token types",
    "perceiver": "byte-level Perceiver IO with a latent array", "reformer": "axial positions and LSH buckets",
    "luke": "needs an entity vocabulary", "flaubert": "XLM-style LM head model", "xlm": "XLM-style LM head model",
    "modernvbert": "vision-language", "ultravbert": "vision-language", "neomme": "multimodal",
}

OPERATIONS = ("generate", "blocks", "cache prefix", "cache dual", "cfg", "infill", "elbo", "cli")


def build(model_type: str, folder: Path, tokenizer) -> Path:
    """A tiny random checkpoint of `model_type`, saved (safetensors) with the tokenizer."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    config = AutoConfig.for_model(model_type)
    sizes = {key: value for key, value in TINY.items() if hasattr(config, key) and model_type != "funnel"}
    ids = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
               eos_token_id=tokenizer.eos_token_id)
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), max_position_embeddings=160,
                                  **sizes, **ids, **ARCHITECTURES.get(model_type, {}))
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _cell(run) -> str:
    try:
        run()
    except ValueError as error:  # a refusal: our clear message
        return f"refused: {str(error).splitlines()[0][:120]}"
    except Exception as error:  # noqa: BLE001 - anything else is a defect, reported in the table
        return f"FAIL: {type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''}"
    return "ok"


def check(path: Path) -> dict[str, str]:
    """Every operation on one saved checkpoint: {operation: "ok" | "refused: why" | "FAIL: what"}."""
    import dlm
    from dlm.cli import main as cli

    try:
        lm = dlm.load(str(path))
    except Exception as error:  # noqa: BLE001
        return {op: f"FAIL: load: {type(error).__name__}: {error}"[:200] for op in OPERATIONS}
    options = dict(length=16, steps=4, seed=0)

    def remasking_rules():
        projection_at_rows_is_exact()
        for rule in dlm.REMASKING:
            text = dlm.generate(lm, "the cat", remasking=rule, **options).texts[0]
            assert isinstance(text, str)

    def projection_at_rows_is_exact():
        """The sampler's forward, the vocabulary projection run at some positions only, gives those
        positions' logits of the full forward (or falls back to it where the head is no single module)."""
        from dlm.shifted import canvas_logits

        ids = torch.randint(5, len(lm.tokenizer) - 1, (2, 24), generator=torch.Generator().manual_seed(2))
        rows = torch.rand(2, 24, generator=torch.Generator().manual_seed(3)) < 0.5
        with torch.inference_mode():
            full = canvas_logits(lm.model, ids, torch.ones_like(ids)).float()
            some = canvas_logits(lm.model, ids, torch.ones_like(ids), rows=rows).float()
        gap = (some - full[rows]).abs().max().item()
        if gap > 1e-4:
            raise AssertionError(f"logits at chosen rows differ from the full forward's by {gap:.3g}")

    def window_is_exact():
        """Positions fed alone, the rest from the cache, give the full forward's logits on an unchanged canvas."""
        from dlm.cache import KVCache

        ids = torch.randint(5, len(lm.tokenizer) - 1, (2, 24), generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            cache = KVCache(lm.model)  # refuses (ValueError) an architecture it cannot route
            with cache.fill():
                full = lm.model(input_ids=ids).logits.float()
            for lo, hi in ((0, 24), (7, 15)):
                gap = (cache.forward(ids, lo, hi) - full[:, lo:hi]).abs().max().item()
                if gap > 1e-4:
                    raise AssertionError(f"a cached window differs from the full forward by {gap:.3g}")

    def cached(kind):
        def run():
            window_is_exact()
            # one step per block: every step sees the whole canvas, so the cache must change nothing
            settings = dict(length=16, steps=2, block_length=8, temperature=0.0, seed=0)
            exact = dlm.generate(lm, "the cat", **settings)
            fast = dlm.generate(lm, "the cat", cache=kind, **settings)
            if not torch.equal(exact.steps[-1].canvas, fast.steps[-1].canvas):
                raise AssertionError(f"{kind} cache changed the text of an exact run")
            # and a run with several steps per block completes
            dlm.generate(lm, "the cat", cache=kind, length=16, steps=4, block_length=8, seed=0)
        return run

    def command_line():
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli(["generate", "--model", str(path), "--prompt", "the cat", "--length", "8", "--steps", "2",
                          "--seed", "0", "--json"])
        if status != 0:
            raise RuntimeError(err.getvalue().strip())
        json.loads(out.getvalue())

    def elbo():
        result = dlm.log_likelihood(lm, "the cat sat on the mat", num_samples=4, seed=0)
        assert torch.isfinite(torch.tensor(float(result.perplexity)))

    runs = {
        "generate": remasking_rules,
        "blocks": lambda: dlm.generate(lm, "the cat", block_length=8, **options),
        "cache prefix": cached("prefix"),
        "cache dual": cached("dual"),
        "cfg": lambda: dlm.generate(lm, "the cat", cfg_scale=1.5, **options),
        "infill": lambda: dlm.generate(lm, infill="the [MASK] [MASK] sat on the [MASK]", steps=3, seed=0),
        "elbo": elbo,
        "cli": command_line,
    }
    return {op: _cell(runs[op]) for op in OPERATIONS}


def matrix(model_types, tokenizer, workdir: Path, progress=None) -> dict[str, dict[str, str]]:
    rows = {}
    for model_type in model_types:
        try:
            path = build(model_type, workdir / model_type.replace("/", "_"), tokenizer)
        except Exception as error:  # noqa: BLE001 - e.g. an architecture this transformers lacks
            rows[model_type] = {op: f"FAIL: build: {type(error).__name__}: {error}"[:200] for op in OPERATIONS}
        else:
            rows[model_type] = check(path)
        if progress:
            progress(model_type, rows[model_type])
    return rows


def bundled_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(__file__).resolve().parents[1] / "dlm" / "models" / "default")


def table(rows: dict[str, dict[str, str]]) -> str:
    def short(cell: str) -> str:
        return cell.split(":")[0]

    lines = ["| architecture | " + " | ".join(OPERATIONS) + " |", "|---" * (len(OPERATIONS) + 1) + "|"]
    for model_type, cells in rows.items():
        lines.append(f"| {model_type} | " + " | ".join(short(cells[op]) for op in OPERATIONS) + " |")
    notes = [f"- {model_type}, {op}: {cell}" for model_type, cells in rows.items() for op, cell in cells.items()
             if cell != "ok"]
    return "\n".join(lines + ([""] + notes if notes else []))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="TYPE", help="these model types only")
    parser.add_argument("--json", type=Path, help="also write the matrix here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    model_types = args.only or [t for t in ARCHITECTURES if t in MODEL_FOR_MASKED_LM_MAPPING_NAMES]
    unlisted = sorted(set(MODEL_FOR_MASKED_LM_MAPPING_NAMES) - set(ARCHITECTURES) - set(NOT_TEXT_MASKED_LMS))
    with tempfile.TemporaryDirectory() as tmp:
        rows = matrix(model_types, bundled_tokenizer(), Path(tmp),
                      progress=lambda t, cells: print(f"{t}: " + ", ".join(c.split(':')[0] for c in cells.values()),
                                                      file=sys.stderr))
    print(table(rows))
    if unlisted:
        print(f"\nnew in this transformers, not in the matrix yet: {', '.join(unlisted)}")
    print("\nnot text masked LMs (left out): " + "; ".join(f"{k} ({v})" for k, v in NOT_TEXT_MASKED_LMS.items()))
    if args.json:
        import transformers

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"transformers": transformers.__version__, "torch": torch.__version__,
                                         "matrix": rows, "left_out": NOT_TEXT_MASKED_LMS}, indent=1) + "\n")
    return int(any(cell.startswith("FAIL") for cells in rows.values() for cell in cells.values()))


if __name__ == "__main__":
    sys.exit(main())
