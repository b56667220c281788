"""Instruct models: a chat message wrapped in the tokenizer's chat template, token for token what
`apply_chat_template` gives, with no second BOS; in the library, the CLI and the app's Generate tab."""

from __future__ import annotations

import json

import pytest

import dlm
from dlm.generation import causal_canvas, has_chat_template, prompt_canvas

# a template in the style of LLaDA's and SmolLM2's: it writes the BOS itself, then one block per turn
TEMPLATE = ("{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}{% endfor %}"
            "{% if add_generation_prompt %}assistant:{% endif %}")


def _with_template(folder):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = TEMPLATE
    tok.save_pretrained(folder)
    return dlm.load(folder)


def _copy(folder, tmp_path_factory, name):
    import shutil

    target = tmp_path_factory.mktemp(name) / "model"
    shutil.copytree(folder, target)
    return str(target)


@pytest.fixture(scope="module")
def instruct_masked(roberta_dir, tmp_path_factory):
    return _with_template(_copy(roberta_dir, tmp_path_factory, "instruct-roberta"))


@pytest.fixture(scope="module")
def instruct_causal(gpt2_dir, tmp_path_factory):
    return _with_template(_copy(gpt2_dir, tmp_path_factory, "instruct-gpt2"))


def _expected(lm, message):
    ids = lm.tokenizer.apply_chat_template([{"role": "user", "content": message}], tokenize=True,
                                           add_generation_prompt=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def test_a_chat_prompt_is_the_templates_tokens_with_one_bos(instruct_masked, instruct_causal):
    message = "the cat sat on the mat"
    for lm in (instruct_masked, instruct_causal):
        expected = _expected(lm, message)
        assert expected[0] == lm.bos_id and expected.count(lm.bos_id) == 1
        prompt = dlm.chat_prompt(lm, message)
        if lm.kind == "causal":
            canvas = causal_canvas(lm, prompt, 4)
        else:
            canvas = prompt_canvas(lm, prompt, 4, {})
        given = canvas.ids[canvas.fixed].tolist()
        if lm.kind == "masked":  # the closing framing (</s>) follows the masks
            assert given[-1] == lm.tokenizer.sep_token_id
            given = given[:-1]
        assert given == expected  # no doubled BOS, nothing added or lost
        trace = dlm.generate(lm, prompt, length=4, steps=2, seed=0)
        assert trace.steps and isinstance(trace.texts[0], str)


def test_chat_turns_and_refusals(instruct_masked, roberta):
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
             {"role": "user", "content": "the cat"}]
    prompt = dlm.chat_prompt(instruct_masked, turns)
    assert prompt.count("user:") == 2 and prompt.endswith("assistant:")
    assert not has_chat_template(roberta) and has_chat_template(instruct_masked)
    with pytest.raises(ValueError, match="no chat template"):
        dlm.chat_prompt(roberta, "hi")
    with pytest.raises(ValueError, match="empty"):
        dlm.chat_prompt(instruct_masked, "  ")
    with pytest.raises(ValueError, match="turns"):
        dlm.chat_prompt(instruct_masked, [{"content": "no role"}])


def test_cli_chat(instruct_masked, capsys):
    from dlm.cli import main

    assert main(["generate", "--model", instruct_masked.path, "--chat", "the cat", "--length", "4", "--steps", "2",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out
    assert main(["generate", "--model", instruct_masked.path, "--chat", "a", "--prompt", "b"]) == 2
    assert "not several" in capsys.readouterr().err


def test_the_generate_tab_chats_with_an_instruct_model(instruct_masked, roberta):
    from webapp.runs import parse_generate_request, positions_needed, start_generation
    from webapp.settings import DIFFUSION
    from webapp.tabs.generate import CHAT, MODES, mode_choices

    def request(mode, text):
        return parse_generate_request(DIFFUSION, mode, text, 4, 2, "linear", 1.0, 0, 1.0, "low_confidence", 0, 0,
                                      "off", 0, 0, 1, True)

    chat = request("chat", "the cat")
    assert chat.chat and chat.key("x") != request("continue", "the cat").key("x")
    assert positions_needed(instruct_masked, chat) == len(_expected(instruct_masked, "the cat")) + 4 + 1
    expected = _expected(instruct_masked, "the cat")
    trace = start_generation(instruct_masked, chat)[0].run()
    assert trace.steps[-1].canvas[0, : len(expected)].tolist() == expected  # the reply follows the chat prompt
    with pytest.raises(ValueError, match="no chat template"):
        start_generation(roberta, chat)
    with pytest.raises(ValueError, match="message is empty"):
        request("chat", " ")
    assert mode_choices([roberta, None]).choices == [(label, value) for label, value in MODES]
    assert mode_choices([roberta, instruct_masked]).choices[-1] == CHAT
