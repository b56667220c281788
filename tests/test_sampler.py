"""Invariants of the masked-diffusion sampler and the AR loop, on tiny real models."""

from __future__ import annotations

import pytest
import torch

import dlm
from dlm.config import REMASKING, SCHEDULES, SamplerConfig
from dlm.schedules import num_transfer_tokens
from dlm.trace import Trace


def check_run_invariants(trace: Trace, length: int) -> None:
    """The invariants every masked run must keep, checked step by step."""
    mask_id = trace.mask_id
    previous = trace.initial
    fixed = trace.fixed
    revealed = 0
    for step in trace.steps:
        canvas = step.canvas
        assert torch.equal(canvas[:, fixed], trace.initial[:, fixed]), "prompt / fixed tokens changed"
        was_committed = previous != mask_id
        assert torch.equal(canvas[was_committed], previous[was_committed]), "a committed token changed"
        now_masked = (canvas == mask_id).sum(1)
        assert (now_masked <= (previous == mask_id).sum(1)).all(), "masks increased"
        assert torch.equal(step.committed, (previous == mask_id) & (canvas != mask_id)), "committed != newly revealed"
        revealed += int(step.committed[0].sum())
        previous = canvas
    assert revealed == length, "the run must reveal exactly the masked positions"
    assert not (trace.final == mask_id).any(), "masks left at the end"


@pytest.mark.parametrize("remasking", sorted(REMASKING))
@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_invariants_every_strategy(roberta, remasking, schedule):
    trace = dlm.generate(roberta, "the cat", length=12, steps=5, remasking=remasking, schedule=schedule,
                         temperature=0.8, top_k=20, top_p=0.9, seed=1, num_samples=2)
    assert len(trace.steps) == 5
    assert [int(s.committed[0].sum()) for s in trace.steps] == num_transfer_tokens(12, 5, schedule)
    check_run_invariants(trace, 12)


def test_invariants_bert_blocks_guidance(bert):
    trace = dlm.generate(bert, "the cat sat", length=12, steps=6, block_length=4, cfg_scale=1.5, seed=0)
    check_run_invariants(trace, 12)
    assert trace.nfe == 12  # guidance costs two model evaluations per step
    # semi-autoregressive: every position of block j is committed before any of block j + 1
    start = int(trace.fixed.logical_not().nonzero()[0])
    block_of_step = []
    for step in trace.steps:
        blocks = {(p - start) // 4 for p in step.committed_positions(0)}
        assert len(blocks) == 1
        block_of_step.append(blocks.pop())
    assert block_of_step == sorted(block_of_step)


@pytest.mark.parametrize("blocks", [None, 8])
def test_dilated_order_commits_spread_out_positions_and_fills_the_gaps(roberta, blocks):
    """Dilated remasking, 16 positions in 8 steps (4 per block of 8): each step commits positions a
    stride apart, never neighbours; the strides' offsets come in bit-reversed order, so each later
    step's positions sit halfway between committed ones; the order is the same for every sample."""
    trace = dlm.generate(roberta, "the cat", length=16, steps=8, remasking="dilated", temperature=0.9, seed=2,
                         num_samples=2, block_length=blocks)
    check_run_invariants(trace, 16)
    start = int(trace.fixed.logical_not().nonzero()[0])
    committed = [[p - start for p in step.committed_positions(0)] for step in trace.steps]
    assert committed == [[p - start for p in step.committed_positions(1)] for step in trace.steps]
    if blocks is None:  # stride 8: offsets 0, 4, 2, 6, 1, 5, 3, 7
        assert committed == [[o, o + 8] for o in (0, 4, 2, 6, 1, 5, 3, 7)]
    else:  # two blocks of 8 in 4 steps each: stride 4, offsets 0, 2, 1, 3
        assert committed == [[b + o, b + o + 4] for b in (0, 8) for o in (0, 2, 1, 3)]
    for positions in committed:
        assert all(q - p > 1 for p, q in zip(positions, positions[1:])), "neighbours committed together"


@pytest.mark.parametrize("remasking", ["dilated", "low_confidence"])
def test_annealed_temperature_moves_from_start_to_end_in_every_block(roberta, monkeypatch, remasking):
    """temperature_end: each step samples at the temperature of its place in its block, linear from
    `temperature` at the first step to `temperature_end` at the last, in both sampling paths (only
    the committed positions, or every candidate the choice reads); the invariants hold."""
    import dlm.sampler as sampler

    seen = []
    real = sampler.sample_tokens

    def spy(logits, config, uniforms):
        seen.append(round(config.temperature, 6))
        return real(logits, config, uniforms)

    monkeypatch.setattr(sampler, "sample_tokens", spy)
    trace = dlm.generate(roberta, "the cat", length=16, steps=8, remasking=remasking, temperature=1.3,
                         temperature_end=0.6, top_k=20, seed=3, num_samples=2, block_length=8)
    check_run_invariants(trace, 16)
    per_block = [1.3, round(1.3 - 0.7 / 3, 6), round(1.3 - 1.4 / 3, 6), 0.6]
    assert sorted(set(seen), reverse=True) == per_block
    if remasking == "dilated":  # one call per step: the schedule, block after block
        assert seen == per_block * 2
    seen.clear()
    constant = dlm.generate(roberta, "the cat", length=16, steps=8, remasking=remasking, temperature=1.3,
                            top_k=20, seed=3, num_samples=2, block_length=8)
    assert set(seen) == {1.3}
    # the first step draws the same uniforms at the same temperature: the same tokens
    assert torch.equal(trace.steps[0].canvas, constant.steps[0].canvas)
    # greedy stays greedy: a recommended final temperature (a model card's) does not refuse temperature 0
    greedy = dlm.generate(roberta, "the cat", length=16, steps=8, remasking=remasking, temperature=0,
                          temperature_end=0.6, seed=3, block_length=8)
    assert greedy.texts == dlm.generate(roberta, "the cat", length=16, steps=8, remasking=remasking, temperature=0,
                                        seed=4, block_length=8).texts


def test_step_temperature():
    from dlm.schedules import step_temperature

    assert [round(step_temperature(1.2, 0.6, i, 4), 6) for i in range(4)] == [1.2, 1.0, 0.8, 0.6]
    assert step_temperature(0.9, None, 3, 8) == 0.9  # None: constant
    assert step_temperature(1.2, 0.6, 0, 1) == 1.2  # a one-step block samples at the start's
    assert step_temperature(1.2, 0.6, 9, 4) == 0.6  # past the last step (parallel rules): the end's
    assert step_temperature(0.5, 1.5, 2, 3) == 1.5  # annealing upwards works the same way


def test_dilated_order_ranks_every_position_once():
    from dlm.sampling import dilated_order

    for n, steps in [(1, 1), (7, 3), (12, 5), (16, 16), (5, 9), (128, 8)]:
        order = dilated_order(n, steps)
        assert order.shape == (n,) and len(set(order.tolist())) == n and float(order.max()) == 1.0
    assert dilated_order(16, 16).argsort(descending=True).tolist()[:4] == [0, 8, 4, 12]  # one per step: bit-reversed
    # a step that takes part of a group (the cosine schedule's first steps) still spreads over the block
    assert dilated_order(32, 4).argsort(descending=True).tolist()[:4] == [0, 16, 8, 24]
    with pytest.raises(ValueError, match="dilated order"):
        dilated_order(0, 4)


def test_threshold_commits_at_least_one_per_step(roberta):
    # a random tiny model is never confident, so a high threshold forces the one-per-step floor
    trace = dlm.generate(roberta, "the", length=10, steps=10, threshold=0.99, seed=0)
    assert all(int(s.committed[0].sum()) >= 1 for s in trace.steps)
    check_run_invariants(trace, 10)
    # a threshold every position passes commits everything in one step
    trace = dlm.generate(roberta, "the", length=10, steps=10, threshold=1e-9, seed=0)
    assert len(trace.steps) == 1 and trace.nfe == 1
    check_run_invariants(trace, 10)


@pytest.mark.parametrize("rule", [{"factor": 1.0}, {"factor": 1e-9}, {"factor": 1e9}, {"entropy_bound": 0.0},
                                  {"entropy_bound": 2.0}, {"entropy_bound": 1e9}])
@pytest.mark.parametrize("blocks", [None, 4])
def test_parallel_rules_keep_the_invariants(roberta, rule, blocks):
    trace = dlm.generate(roberta, "the cat", length=12, steps=12, block_length=blocks, temperature=0.9, seed=3,
                         num_samples=2, **rule)
    assert all(int(s.committed[r].sum()) >= 1 for s in trace.steps for r in range(2))
    check_run_invariants(trace, 12)
    assert trace.nfe == len(trace.steps) <= 12
    if rule in ({"factor": 1e9}, {"entropy_bound": 1e9}):  # everything passes: one step per block
        assert len(trace.steps) == (1 if blocks is None else 3)


def test_factor_rule_commits_the_confident_prefix():
    from dlm.sampler import choose_positions

    confidence = torch.tensor([[0.99, 0.2, 0.95, 0.9, 0.5]])
    eligible = torch.tensor([[True, True, True, False, True]])
    # ranked eligible confidences 0.99, 0.95, 0.5, 0.2: (n+1)(1-c) = 0.02, 0.15, 2.0, 3.2
    chosen = choose_positions(confidence, confidence, eligible, 1, None, factor=1.0)
    assert chosen.tolist() == [[True, False, True, False, False]]
    assert choose_positions(confidence, confidence, eligible, 1, None, factor=0.01).sum() == 1  # the floor
    assert choose_positions(confidence, confidence, eligible, 1, None, factor=10.0).tolist() == [eligible[0].tolist()]


def test_entropy_bound_commits_while_the_summed_entropy_is_bounded():
    from dlm.sampler import choose_positions

    score = torch.tensor([[0.9, 0.1, 0.8, 0.7, 0.3]])  # commit order: 0, 2, 3, 4, 1
    entropy = torch.tensor([[0.1, 2.0, 0.3, 0.5, 1.0]])
    eligible = torch.ones(1, 5, dtype=torch.bool)
    # prefixes in that order: sum - max = 0, 0.1, 0.4, 0.9, 1.9
    for bound, expected in [(0.0, 1), (0.1, 2), (0.45, 3), (1.0, 4), (5.0, 5)]:
        chosen = choose_positions(score, score, eligible, 1, None, entropy=entropy, entropy_bound=bound)
        assert int(chosen.sum()) == expected
        assert chosen[0, [0, 2, 3, 4, 1][:expected]].all()
    with pytest.raises(ValueError, match="entropies"):
        choose_positions(score, score, eligible, 1, None, entropy_bound=1.0)


def test_same_seed_same_text_any_batch_size(roberta):
    options = dict(length=16, steps=8, temperature=1.0, top_p=0.95, remasking="random", seed=1234)
    one = dlm.generate(roberta, "once upon", num_samples=1, **options)
    eight = dlm.generate(roberta, "once upon", num_samples=8, **options)
    again = dlm.generate(roberta, "once upon", num_samples=1, **options)
    assert one.texts[0] == eight.texts[0] == again.texts[0]
    assert torch.equal(one.final[0], eight.final[0])
    assert len(set(eight.texts)) > 1, "rows must differ from one another"
    other = dlm.generate(roberta, "once upon", num_samples=1, **{**options, "seed": 99})
    assert not torch.equal(other.final[0], one.final[0])


def test_same_seed_same_text_ar(gpt2):
    options = dict(length=10, temperature=1.0, seed=7)
    one = dlm.generate(gpt2, "the cat", num_samples=1, **options)
    eight = dlm.generate(gpt2, "the cat", num_samples=8, **options)
    assert torch.equal(one.final[0], eight.final[0])


def test_infill_keeps_template(roberta):
    trace = dlm.generate(roberta, infill="the [MASK] sat on the [MASK][MASK]", seed=0)
    assert int((~trace.fixed).sum()) == 3
    check_run_invariants(trace, 3)
    assert trace.texts[0].startswith("the")


def test_fixed_tokens_are_kept(roberta):
    trace = dlm.generate(roberta, "the cat", length=8, steps=4, fixed={4: "mat"}, seed=0)
    mat = roberta.tokenizer("mat", add_special_tokens=False)["input_ids"]
    start = int((~trace.fixed).nonzero()[0])
    assert trace.final[0, start + 4 : start + 4 + len(mat)].tolist() == mat
    check_run_invariants(trace, 8 - len(mat))


def test_eos_forbidden_never_sampled(roberta):
    # make EOS the model's favourite token: with allow_eos it appears, forbidden it never does
    lm = roberta
    with torch.no_grad():
        bias = lm.model.lm_head.bias
        saved = bias.clone()
        bias[lm.eos_id] += 50.0
    try:
        allowed = dlm.generate(lm, "the cat", length=8, steps=4, seed=0)
        forbidden = dlm.generate(lm, "the cat", length=8, steps=4, seed=0, allow_eos=False)
    finally:
        with torch.no_grad():
            bias.copy_(saved)
    gen = ~allowed.fixed
    assert (allowed.final[0, gen] == lm.eos_id).all()
    assert allowed.texts[0] == "the cat", "text after the first EOS must be dropped"
    assert not (forbidden.final[0, gen] == lm.eos_id).any()


def test_ar_matches_transformers_greedy(gpt2):
    """The AR loop (one token per step, KV cache) gives what transformers' own generate gives."""
    trace = dlm.generate(gpt2, "the cat", length=12, allow_eos=False, seed=0)
    assert len(trace.steps) == 12 and trace.nfe == 12
    assert all(int(s.committed[0].sum()) == 1 for s in trace.steps)
    prompt = torch.tensor([[gpt2.bos_id] + gpt2.tokenizer("the cat", add_special_tokens=False)["input_ids"]])
    forbidden = [[i] for i in gpt2.tokenizer.all_special_ids]
    expected = gpt2.model.generate(prompt, max_new_tokens=12, do_sample=False, bad_words_ids=forbidden,
                                   pad_token_id=gpt2.tokenizer.pad_token_id)
    assert trace.final[0].tolist() == expected[0].tolist()


def test_step_records(roberta):
    gen = dlm.stream(roberta, "the", length=6, steps=3, seed=0)
    steps = list(gen)
    assert [s.index for s in steps] == [0, 1, 2]
    assert [s.nfe for s in steps] == [1, 2, 3]
    assert all(b.elapsed >= a.elapsed for a, b in zip(steps, steps[1:]))
    for s in steps:
        assert s.guess.shape == s.canvas.shape == s.confidence.shape
        assert ((s.confidence >= 0) & (s.confidence <= 1)).all()
        # the committed tokens are the model's guesses at those positions
        assert torch.equal(s.canvas[s.committed], s.guess[s.committed])
    with pytest.raises(RuntimeError, match="only once"):
        list(gen)


def test_trace_json_round_trip(roberta, tmp_path):
    trace = dlm.generate(roberta, "the cat", length=6, steps=3, seed=0, num_samples=2)
    loaded = Trace.load(trace.save(tmp_path / "t.json"))
    assert loaded.texts == trace.texts and loaded.pieces == trace.pieces and loaded.config == trace.config
    assert torch.equal(loaded.initial, trace.initial) and torch.equal(loaded.fixed, trace.fixed)
    for a, b in zip(loaded.steps, trace.steps):
        assert torch.equal(a.canvas, b.canvas) and torch.equal(a.committed, b.committed)
        assert torch.allclose(a.confidence, b.confidence, atol=1e-5)


def test_wordpiece_pieces_read_as_text(bert):
    trace = dlm.generate(bert, "the cat sat on the mat", length=4, steps=2, seed=0)
    prompt_ids = trace.initial[0][trace.fixed & ~trace.hidden].tolist()
    assert "".join(trace.pieces[i] for i in prompt_ids).strip() == "the cat sat on the mat"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"remasking": "best"}, "choose from"),
        ({"schedule": "quadratic"}, "choose from"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_k": -2}, "top_k"),
        ({"threshold": 1.5}, "threshold"),
        ({"temperature": 0.8, "temperature_end": 0}, "temperature_end"),
        ({"factor": 0}, "factor"),
        ({"entropy_bound": -0.1}, "entropy_bound"),
        ({"threshold": 0.9, "factor": 1.0}, "one parallel-decoding rule"),
        ({"steps": 0}, "steps"),
        ({"length": 0}, "length"),
        ({"block_length": 0}, "block_length"),
        ({"cfg_scale": -1}, "cfg_scale"),
        ({"num_samples": 0}, "num_samples"),
        ({"colour": "red"}, "choose from"),
    ],
)
def test_invalid_options_name_the_valid_choices(roberta, options, message):
    with pytest.raises(ValueError, match=message):
        dlm.stream(roberta, "the", **options)


def test_invalid_runs(roberta, gpt2):
    with pytest.raises(ValueError, match="between"):
        dlm.generate(roberta, "the", length=4, steps=5)
    with pytest.raises(ValueError, match="between"):
        dlm.generate(roberta, "the", length=8, steps=2, block_length=2)
    with pytest.raises(ValueError, match="positions"):
        dlm.generate(roberta, "the", length=500)
    with pytest.raises(ValueError, match="no blanks"):
        dlm.generate(roberta, infill="nothing to fill")
    with pytest.raises(ValueError, match="masked"):
        dlm.generate(gpt2, infill="the [MASK] sat")
    with pytest.raises(ValueError, match="not both"):
        dlm.generate(roberta, "the", infill="a [MASK]")


def test_schedules_sum_to_n():
    for schedule in SCHEDULES:
        for n in (1, 7, 64, 128):
            for steps in {s for s in (1, 2, 3, n // 2, n) if 1 <= s <= n}:
                counts = num_transfer_tokens(n, steps, schedule)
                assert len(counts) == steps and sum(counts) == n and min(counts) >= 1
    cosine = num_transfer_tokens(64, 8, "cosine")
    exponential = num_transfer_tokens(64, 8, "exponential")
    assert cosine[0] < cosine[-1] and exponential[0] > exponential[-1]


def test_config_replace_and_round_trip():
    config = SamplerConfig().replace(steps=8, remasking="margin")
    assert SamplerConfig.from_dict({**config.to_dict(), "unknown_future_key": 1}) == config
    annealed = config.replace(temperature=1.5, temperature_end=0.5)
    assert annealed.at_temperature(0.7) == annealed.replace(temperature=0.7)
    assert annealed.temperature == 1.5  # a copy: the original keeps its own
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        annealed.at_temperature(-0.1)
    with pytest.raises(ValueError, match="top_p must be in"):  # the checks still run where a config is made
        SamplerConfig(top_p=0.0)


@pytest.mark.parametrize("remasking", ["entropy", "margin", "random", "dilated"])
def test_sampling_only_committed_positions_writes_the_same_text(roberta, monkeypatch, remasking):
    """When the commit order does not read the sampled tokens, only the committed positions are sampled,
    with the very uniforms a full sampling pass would use: the same text, step for step."""
    import dlm.sampler as sampler

    options = dict(length=16, steps=8, remasking=remasking, temperature=0.9, top_p=0.9, seed=7, num_samples=2,
                   block_length=8)
    assert sampler.sampled_late(roberta.settings.replace(**{k: v for k, v in options.items() if k != "seed"}))
    late = dlm.generate(roberta, "the cat", **options)
    drawn = []
    real_sample = sampler.sample_tokens
    monkeypatch.setattr(sampler, "sample_tokens", lambda logits, *a: drawn.append(logits.shape[1]) or real_sample(logits, *a))
    dlm.generate(roberta, "the cat", **options)
    assert max(drawn) <= 2 * 2  # a step commits 2 per row here, and only those are sampled
    monkeypatch.setattr(sampler, "sampled_late", lambda config: False)
    monkeypatch.setattr(sampler, "sample_candidates", sample_every_candidate)
    early = dlm.generate(roberta, "the cat", **options)
    assert torch.equal(late.final, early.final)
    for a, b in zip(late.steps, early.steps):
        assert torch.equal(a.canvas, b.canvas) and torch.equal(a.committed, b.committed)
    assert not sampler.sampled_late(roberta.settings.replace(remasking="low_confidence", temperature=0.9))
    assert not sampler.sampled_late(roberta.settings.replace(remasking="entropy", temperature=0.9, threshold=0.9))


def sample_every_candidate(rows, probs, guess_rows, eligible, sample_of, uniforms, config, k, value=None):
    """The reference for `dlm.sampler.sample_candidates`: a sample at every candidate."""
    from dlm.sampling import sample_tokens

    guess_rows[eligible] = sample_tokens(rows.index_select(0, eligible).unsqueeze(0), config, uniforms.unsqueeze(0))[0]
    return torch.zeros(eligible.numel(), dtype=torch.bool)


@pytest.mark.parametrize("rule", [{}, dict(threshold=0.2), dict(threshold=0.9), dict(factor=1.0), dict(factor=3.0),
                                  dict(entropy_bound=0.5), dict(threshold=0.5, block_length=8)])
@pytest.mark.parametrize("remasking", ["low_confidence", "margin"])
def test_candidates_are_sampled_only_where_the_choice_reads_them(roberta, monkeypatch, rule, remasking):
    """Low-confidence order and the threshold / factor rules read the sampled token's probability; a
    candidate is sampled only where that could change the choice. The text, the positions committed at
    each step and their confidences are those of sampling every candidate with the same uniforms."""
    import dlm.sampler as sampler

    options = dict(length=24, steps=24, remasking=remasking, temperature=1.0, seed=11, num_samples=3, **rule)
    drawn, candidates = [], []
    real_sample, real_candidates = sampler.sample_tokens, sampler.sample_candidates
    monkeypatch.setattr(sampler, "sample_tokens", lambda logits, *a: drawn.append(logits.shape[1]) or real_sample(logits, *a))
    monkeypatch.setattr(sampler, "sample_candidates",
                        lambda rows, probs, guess, eligible, *a: candidates.append(eligible.numel())
                        or real_candidates(rows, probs, guess, eligible, *a))
    lazy = dlm.generate(roberta, "the cat", **options)
    drawn, candidates = list(drawn), list(candidates)  # the lazy run's
    monkeypatch.setattr(sampler, "sample_candidates", sample_every_candidate)
    full = dlm.generate(roberta, "the cat", **options)
    assert torch.equal(lazy.final, full.final) and len(lazy.steps) == len(full.steps)
    for a, b in zip(lazy.steps, full.steps):
        assert torch.equal(a.canvas, b.canvas) and torch.equal(a.committed, b.committed)
        assert torch.allclose(a.confidence[a.committed], b.confidence[b.committed])
    if remasking == "margin" and "threshold" not in rule and "factor" not in rule:
        assert not candidates  # nothing reads a sample: only the committed positions are sampled (test above)
        return
    assert len(candidates) == len(lazy.steps) and sum(drawn) <= sum(candidates)
    if "entropy_bound" in rule or rule.get("factor", 0) >= 2:  # every candidate can matter
        assert sum(drawn) == sum(candidates)
    elif remasking == "margin" and rule.get("threshold") == 0.9:  # the order needs no sample: the k best and
        assert sum(drawn) < 0.2 * sum(candidates)  # the few sure enough to reach 0.9 are all it samples


@pytest.mark.parametrize("rule", [dict(threshold=0.05), dict(factor=1.98)])
@pytest.mark.parametrize("remasking", ["low_confidence", "margin", "entropy"])
def test_sure_candidates_are_always_sampled(monkeypatch, rule, remasking):
    """On the bundled model (rarely sure: low thresholds, so that the rules fire), the candidates that
    could pass are sampled whatever their rank, so the text, the commits and their
    confidences are those of sampling every candidate."""
    import dlm.sampler as sampler

    lm = dlm.load("default")
    options = dict(length=32, steps=32, remasking=remasking, temperature=0.8, top_p=0.95, seed=2, num_samples=2,
                   block_length=None, **rule)
    lazy = dlm.generate(lm, "It was a dark and stormy", **options)
    monkeypatch.setattr(sampler, "sample_candidates", sample_every_candidate)
    full = dlm.generate(lm, "It was a dark and stormy", **options)
    assert torch.equal(lazy.final, full.final)
    for a, b in zip(lazy.steps, full.steps):
        assert torch.equal(a.committed, b.committed)
        assert torch.allclose(a.confidence[a.committed], b.confidence[b.committed])
    if "threshold" in rule:  # the rule fired: a step committed more than one position in a row
        assert any(int(s.committed.sum(-1).max()) > 1 for s in full.steps)


def test_threads_sampling_one_model_at_once_each_get_their_own_text(roberta):
    """The sampler projects only the open positions to the vocabulary, through a hook on the model's output
    layer that answers to the thread that asked: threads sharing one model (the app's users) get the
    text each would get alone, at the same time."""
    import threading

    options = [dict(length=20 + 4 * i, steps=5 + i, seed=i, temperature=0.9, cfg_scale=1.0 * (i % 2)) for i in range(4)]
    alone = [dlm.generate(roberta, "the cat", **o).steps[-1].canvas for o in options]
    together = [None] * len(options)
    start = threading.Barrier(len(options))

    def run(i):
        start.wait()
        together[i] = dlm.generate(roberta, "the cat", **options[i]).steps[-1].canvas

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(options))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(torch.equal(a, b) for a, b in zip(alone, together))


def test_loading_hooks_the_output_layer_before_any_thread_runs_it(roberta_dir):
    """`dlm.load` installs the projection hook at once, so concurrent first requests never add it while
    another thread is inside the model."""
    lm = dlm.load(str(roberta_dir))
    assert getattr(lm.model.get_output_embeddings(), "_dlm_gather", False)
    assert len(lm.model.get_output_embeddings()._forward_pre_hooks) == 1
    dlm.generate(lm, "the cat", length=8, steps=4, seed=0)
    assert len(lm.model.get_output_embeddings()._forward_pre_hooks) == 1  # installed once, not per call
