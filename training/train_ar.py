"""Train the autoregressive baseline matched to a diffusion run: same tokenizer, data, size, tokens.

    python -m training.train_ar --match runs/diffusion --data prose --output-dir runs/ar --max-steps 2000

`--match` takes the diffusion run's folder: its tokenizer is reused and the GPT-2 model gets the
same width, depth and feed-forward size, so the parameter counts agree within 10% (checked). Use
the same --data, --block-size, --batch-size and --max-steps for the same token budget.
Without --match the model is built from the size flags and a tokenizer given by --tokenizer.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from training import common
from training.data import DataError

PARAMETER_TOLERANCE = 0.10  # the matched AR model may differ by at most 10% in parameters
RECOMMENDED = {"length": 64, "temperature": 0.8, "top_p": 0.95}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.train_ar", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_argument_group("model")
    model.add_argument("--match", help="diffusion run folder to match (tokenizer and size)")
    model.add_argument("--tokenizer", help="tokenizer folder (without --match)")
    model.add_argument("--init", help="causal-LM checkpoint to continue (bundled name such as default-ar, or folder): "
                                      "its weights and tokenizer; with --match its size is checked against the run")
    model.add_argument("--hidden-size", type=int, default=256)
    model.add_argument("--layers", type=int, default=4)
    model.add_argument("--heads", type=int, default=4)
    model.add_argument("--intermediate-size", type=int, default=1024)
    common.add_common_flags(parser)
    return parser


def matched_sizes(run_dir: Path) -> tuple[dict, int, Path]:
    """Width, depth and heads of the diffusion model, its parameter count, and its tokenizer folder."""
    configs = [run_dir / "config.json"] + sorted(run_dir.glob("checkpoint-*/config.json"))
    found = [c for c in configs if c.is_file()]
    tokenizer = run_dir / "tokenizer"
    if not found or not tokenizer.is_dir():
        raise DataError(f"{str(run_dir)!r} is not a diffusion run folder (needs tokenizer/ and a config.json)")
    config = json.loads(found[0].read_text())
    from transformers import AutoConfig, AutoModelForMaskedLM

    diffusion = AutoModelForMaskedLM.from_config(AutoConfig.for_model(**config))
    sizes = {k: config[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")}
    return sizes, sum(p.numel() for p in diffusion.parameters()), tokenizer


def gpt2(tokenizer, block_size: int, sizes: dict, n_inner: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=block_size,
        n_embd=sizes["hidden_size"],
        n_layer=sizes["num_hidden_layers"],
        n_head=sizes["num_attention_heads"],
        n_inner=n_inner,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    return GPT2LMHeadModel(config)


def matched_inner(tokenizer, block_size: int, sizes: dict, target_params: int) -> int:
    """The GPT-2 feed-forward width whose parameter count is closest to `target_params`.

    Each unit of feed-forward width costs (2 * hidden + 1) parameters per layer, so one model built at
    the diffusion model's width tells the rest (the architectures differ: GeGLU, positions, heads).
    """
    reference = sizes["intermediate_size"]
    params = sum(p.numel() for p in gpt2(tokenizer, block_size, sizes, reference).parameters())
    per_unit = (2 * sizes["hidden_size"] + 1) * sizes["num_hidden_layers"]
    return max(8, round((reference + (target_params - params) / per_unit) / 8) * 8)


def main(argv: list[str] | None = None) -> int:
    return common.run_cli(build_parser(), run, argv)


def run(args) -> Path:
    from transformers import AutoTokenizer, set_seed

    common.set_threads(args.threads)
    args.init = common.resolve_init(args.init)
    target_params, tokenizer_dir = None, args.tokenizer
    sizes = {"hidden_size": args.hidden_size, "num_hidden_layers": args.layers,
             "num_attention_heads": args.heads, "intermediate_size": args.intermediate_size}
    if args.match:
        sizes, target_params, tokenizer_dir = matched_sizes(Path(args.match))
    if args.init:
        tokenizer_dir = args.init
    if not tokenizer_dir:
        raise DataError("give --match DIFFUSION_RUN or --tokenizer FOLDER")
    resume_from = common.prepare_output_dir(args.output_dir, args.resume, args.overwrite)
    common.record_start(args, "training.train_ar")
    set_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    texts = common.load_texts_for(args)
    train, validation = common.pack_splits(args, texts, tokenizer)
    n_inner = sizes["intermediate_size"]
    if target_params:
        n_inner = matched_inner(tokenizer, args.block_size, sizes, target_params)
    if args.init:
        import torch
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(args.init, use_safetensors=True, dtype=torch.float32)
    else:
        model = gpt2(tokenizer, args.block_size, sizes, n_inner)
    params = sum(p.numel() for p in model.parameters())
    if target_params and abs(params - target_params) > PARAMETER_TOLERANCE * target_params:
        raise ValueError(f"AR model has {params:,} parameters, diffusion {target_params:,}: more than 10% apart")
    if target_params:
        print(f"parameters: AR {params:,} (feed-forward {n_inner}) vs diffusion {target_params:,} "
              f"({params / target_params - 1:+.1%})")
    from transformers import DataCollatorForLanguageModeling

    from training.trainers import CausalTrainer

    collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
    trainer = CausalTrainer(model=model, args=common.training_arguments(args, resume_from), data_collator=collator,
                            train_dataset=train, eval_dataset=validation, processing_class=tokenizer)
    length = min(RECOMMENDED["length"], args.block_size // 2)
    dlm_block = {"kind": "causal", "matched_to": args.match, "sampler": {**RECOMMENDED, "length": length}}
    return common.train_and_finish(trainer, tokenizer, args, resume_from, texts, kind="causal",
                                   module="training.train_ar", dlm_block=dlm_block, title="dlm autoregressive baseline")


if __name__ == "__main__":
    sys.exit(main())
