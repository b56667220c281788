"""Train or fine-tune a masked-diffusion language model.

From scratch on the offline prose corpus (the bundled `default`):
    python -m training.train_diffusion --data prose --output-dir runs/diffusion \
        --vocab-size 8192 --hidden-size 256 --layers 4 --heads 4 --intermediate-size 1024 --max-steps 2000
From the trained AR baseline (Dream / DiffuLLaMA: its weights, attention made bidirectional, logits
shifted by one; its tokenizer, block size limit and positions):
    python -m training.train_diffusion --init-from-ar default-ar --data prose --output-dir runs/diffusion-from-ar \
        --block-size 256 --max-steps 2000
Fine-tune any masked LM from the Hub (needs internet) and push it:
    python -m training.train_diffusion --init distilroberta-base --data wikitext --hub-config wikitext-2-raw-v1 \
        --output-dir runs/distilroberta-diffusion --push-to-hub you/distilroberta-diffusion
Resume after an interruption: the same command with --resume. Multi-GPU: `accelerate launch -m training.train_diffusion ...`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from training import common
from training.collator import WEIGHTINGS, DiffusionCollator
from training.data import DataError

# What the model card recommends to the sampler (and `dlm.load` hands to it): one token per step
# is the best quality; the app and the CLI let users trade it for speed.
RECOMMENDED = {"length": 64, "steps": 64, "remasking": "low_confidence", "temperature": 0.8, "top_p": 0.95}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.train_diffusion", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_argument_group("model")
    model.add_argument("--init", help="masked-LM checkpoint to fine-tune or continue (bundled name, folder or Hub id); "
                                      "default: from scratch")
    model.add_argument("--init-from-ar", metavar="AR_MODEL",
                       help="causal LM to start from (bundled name such as default-ar, or folder): its architecture, "
                            "weights and tokenizer, with bidirectional attention and logits shifted by one (Dream)")
    model.add_argument("--tokenizer", help="tokenizer folder (default: the checkpoint's, or one trained on the data)")
    model.add_argument("--vocab-size", type=int, default=8192, help="BPE vocabulary when training a tokenizer")
    model.add_argument("--arch", default="modernbert", choices=sorted(ARCHITECTURES),
                       help="from scratch: ModernBERT (pre-norm, rotary, GeGLU) or RoBERTa (post-norm BERT)")
    model.add_argument("--hidden-size", type=int, default=256)
    model.add_argument("--layers", type=int, default=4)
    model.add_argument("--heads", type=int, default=4)
    model.add_argument("--intermediate-size", type=int, help="feed-forward width (default: 704 ModernBERT, 1024 RoBERTa)")
    model.add_argument("--max-positions", type=int, help="positions the sampler may use (default: block size + 64)")
    model.add_argument("--trust-remote-code", action="store_true")
    diffusion = parser.add_argument_group("diffusion")
    diffusion.add_argument("--eps", type=float, default=1e-3, help="smallest mask rate")
    diffusion.add_argument("--weighting", default="elbo", choices=WEIGHTINGS, help="elbo: weight 1/t; uniform: plain CE")
    diffusion.add_argument("--prefix-fraction", type=float, default=0.3, help="samples keeping a clean prompt prefix")
    diffusion.add_argument("--t-sampling", default="stratified", choices=["stratified", "iid"],
                           help="noise levels of a batch: stratified (MDLM's low-discrepancy sampler) or i.i.d.")
    diffusion.add_argument("--mask-levels", help="comma-separated per-batch rates (seed projects' recipe), e.g. 1,0.8,0.6,0.4,0.2")
    common.add_common_flags(parser)
    return parser


def get_tokenizer(args, texts, resume: bool):
    from transformers import AutoTokenizer

    saved = Path(args.output_dir) / "tokenizer"
    if resume and saved.is_dir():
        return AutoTokenizer.from_pretrained(saved)
    source = args.tokenizer or args.init or args.init_from_ar
    if source:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=args.trust_remote_code)
    else:
        from training.tokenizer import train_tokenizer

        tokenizer = train_tokenizer(texts.train["text"], vocab_size=args.vocab_size)
    if tokenizer.mask_token_id is None:
        raise DataError("the tokenizer has no mask token; masked diffusion needs one")
    tokenizer.save_pretrained(saved)
    return tokenizer


def get_model(args, tokenizer):
    import torch
    from transformers import AutoModelForMaskedLM

    from dlm.loading import masked_model_from_pretrained

    if args.init_from_ar:
        return from_ar(args, tokenizer)
    if args.init:
        # float32 master weights whatever the checkpoint was saved in (the bundled models are fp16)
        model = masked_model_from_pretrained(args.init, use_safetensors=True, dtype=torch.float32,
                                             trust_remote_code=args.trust_remote_code)  # a shifted one too
        _check_vocab(model, tokenizer, args.init)
        return model
    return AutoModelForMaskedLM.from_config(ARCHITECTURES[args.arch](args, tokenizer))


def from_ar(args, tokenizer):
    """The AR model's architecture and weights as a shifted masked-diffusion model (dlm.shifted): full
    attention, and the prediction for position i read from the output at i - 1, so the pretrained head
    keeps its job (Dream; DiffuLLaMA). No annealing from causal to full attention: Dream switches at once."""
    import torch
    from transformers import AutoModelForCausalLM

    from dlm.shifted import from_causal_lm

    model = AutoModelForCausalLM.from_pretrained(args.init_from_ar, use_safetensors=True, dtype=torch.float32)
    _check_vocab(model, tokenizer, args.init_from_ar)
    names = ("max_position_embeddings", "n_positions")  # Llama / Qwen2, GPT-2
    positions = next((getattr(model.config, k) for k in names if getattr(model.config, k, None)), None)
    if positions is not None and args.block_size > positions:
        raise DataError(f"--block-size {args.block_size} is longer than {args.init_from_ar}'s {positions} positions")
    if tokenizer.mask_token_id is None or tokenizer.mask_token_id >= model.get_input_embeddings().weight.shape[0]:
        raise DataError(f"{args.init_from_ar}'s tokenizer has no mask token inside its vocabulary")
    return from_causal_lm(model)


def _check_vocab(model, tokenizer, source: str) -> None:
    vocab = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > vocab:
        raise DataError(f"the tokenizer has {len(tokenizer)} tokens but {source} has {vocab} embeddings: "
                        "they do not belong together")


def modernbert_config(args, tokenizer):
    """ModernBERT: pre-norm, rotary positions, GeGLU; global attention in every layer (short blocks)."""
    from transformers import ModernBertConfig

    return ModernBertConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=args.intermediate_size or 704,  # GeGLU: 704 gives RoBERTa-1024's parameter count
        max_position_embeddings=args.max_positions or args.block_size + 64,  # rotary: a little room past training
        global_attn_every_n_layers=1,
        reference_compile=False,  # no torch.compile: CPU-friendly and deterministic
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
    )


def roberta_config(args, tokenizer):
    from transformers import RobertaConfig

    positions = args.max_positions or args.block_size
    return RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=args.intermediate_size or 1024,
        max_position_embeddings=positions + tokenizer.pad_token_id + 1,  # RoBERTa offsets positions by padding_idx
        type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


ARCHITECTURES = {"modernbert": modernbert_config, "roberta": roberta_config}


def main(argv: list[str] | None = None) -> int:
    return common.run_cli(build_parser(), run, argv)


def run(args) -> Path:
    common.set_threads(args.threads)
    if args.init and args.init_from_ar:
        raise ValueError("give --init (a masked LM) or --init-from-ar (a causal LM), not both")
    if args.init_from_ar and args.max_positions:
        raise ValueError("--max-positions does not apply with --init-from-ar: the AR model's config sets the positions")
    args.init = common.resolve_init(args.init)
    args.init_from_ar = common.resolve_init(args.init_from_ar)
    resume_from = common.prepare_output_dir(args.output_dir, args.resume, args.overwrite)
    common.record_start(args, "training.train_diffusion")
    from transformers import set_seed

    set_seed(args.seed)
    texts = common.load_texts_for(args)
    tokenizer = get_tokenizer(args, texts, bool(resume_from))
    train, validation = common.pack_splits(args, texts, tokenizer)
    model = get_model(args, tokenizer)
    model.config.save_pretrained(args.output_dir)  # lets `train_ar --match` read the sizes before the run ends
    levels = tuple(float(x) for x in args.mask_levels.split(",")) if args.mask_levels else None
    from dlm.shifted import SETTINGS, is_shifted

    shifted = is_shifted(model)
    collator = DiffusionCollator(tokenizer.mask_token_id, tokenizer.pad_token_id, eps=args.eps,
                                 weighting=args.weighting, prefix_fraction=args.prefix_fraction, levels=levels,
                                 clean_start=1 if shifted else 0,  # a shifted model's position 0 has no prediction
                                 stratified=args.t_sampling == "stratified")
    # held-out ELBO: every sample weighted 1/t, no clean prefix, the same masks at every evaluation
    eval_collator = dataclasses.replace(collator, weighting="elbo", prefix_fraction=0.0, levels=None, seed=1234,
                                        stratified=True)
    from training.trainers import DiffusionTrainer

    trainer = DiffusionTrainer(model=model, args=common.training_arguments(args, resume_from), data_collator=collator,
                               train_dataset=train, eval_dataset=validation, processing_class=tokenizer,
                               eval_collator=eval_collator)
    objective = (f"per-sample mask rate p = (1 - {args.eps}) t + {args.eps}, t ~ U(0, 1] "
                 + ("stratified over the batch" if args.t_sampling == "stratified" else "i.i.d.")
                 if levels is None else f"one mask rate per batch from {list(levels)}")
    objective += f"; loss weighted {'1/p (ELBO)' if args.weighting == 'elbo' else 'uniformly'}; "
    objective += f"{args.prefix_fraction:.0%} of samples keep a clean prefix of random length; documents packed as <s> text </s>."
    length = min(RECOMMENDED["length"], args.block_size // 2)  # leave room for a prompt
    settings = {**RECOMMENDED, "length": length, "steps": length}
    dlm_block = {"kind": "masked", "mask_token": tokenizer.mask_token, "objective": objective,
                 "prefix": "any length: trained with clean prefixes of random length",
                 "sampler": settings}
    if shifted:
        earlier = (getattr(model.config, "dlm", None) or {}).get("init_from_ar")  # continuing a shifted model
        origin = common.source_name(args.init_from_ar) or earlier or common.source_name(args.init)
        objective += (" Initialised from the causal LM " + str(origin) + ": bidirectional attention, logits "
                      "shifted by one (the output at i - 1 predicts token i), position 0 never masked.")
        dlm_block = {**SETTINGS, **dlm_block, "objective": objective, "init_from_ar": origin}
    return common.train_and_finish(
        trainer, tokenizer, args, resume_from, texts, kind="masked", module="training.train_diffusion",
        dlm_block=dlm_block, title="dlm masked-diffusion model",
    )


if __name__ == "__main__":
    sys.exit(main())
