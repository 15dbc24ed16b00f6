"""Asking the model (elk_lens.prompts): the prefix-cached forward equals the forward over the whole prompt,
through the bridge and through transformers on the same GGUF; prompt formats; bad input."""

import pytest
import torch
from gguf_files import write_tiny_llama_gguf
from transformers import AutoModelForCausalLM

from elk_lens.data.statements import StatementSet
from elk_lens.lm_output import output_log_odds
from elk_lens.models import load_model
from elk_lens.prompts import (
    Prompt,
    _prefix_ids,
    chat_prompt,
    few_shot_prompt,
    prompted_log_odds,
    zero_shot_prompt,
)

# float32 forwards of the same weights: cached vs uncached attention, bridge vs HF eager (tests/zoo/test_gguf.py)
LOGIT_TOL = 1e-4
TEXTS = ["the cat sat.", "a dog ran off.", "he is tall.", "the sun is hot today."]
ANSWERS = ("T", "F")  # single tokens in the tiny byte-level tokenizer
CHAT = "{% for m in messages %}<s>U:{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}A:{% endif %}"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("prompts")
    gguf = write_tiny_llama_gguf(root / "tiny.gguf", n_ctx=256)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ELK_LENS_CACHE", str(root / "cache"))
        model = load_model(str(gguf))
    hf = AutoModelForCausalLM.from_pretrained(str(root), gguf_file=gguf.name, dtype=torch.float32).eval()
    return model, hf


def _examples() -> StatementSet:
    texts = ["it is red.", "it is blue.", "we sat.", "we ran.", "go on.", "stop."]
    return StatementSet(texts, torch.tensor([True, False, True, False, True, False]), name="ex")


def _whole_prompt(model, hf, prompt: Prompt, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The oracle: each prompt's full token sequence run at once, through the bridge and through HF."""
    t_id, f_id = (model.tokenizer(a, add_special_tokens=False)["input_ids"][0] for a in prompt.answers)
    bridge, ref = [], []
    for text in texts:
        ids = _prefix_ids(model, prompt) + model.tokenizer(text + prompt.suffix, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([ids])
        with torch.no_grad():
            for out, logits in ((bridge, model(ids)[0, -1]), (ref, hf(ids).logits[0, -1])):
                out.append(float(logits[t_id] - logits[f_id]))
    return torch.tensor(bridge), torch.tensor(ref)


@pytest.mark.parametrize("kind", ["few_shot", "chat"])
def test_prefix_cached_answers_equal_the_whole_prompt_forward(tiny, kind):
    model, hf = tiny
    if kind == "few_shot":
        prompt = few_shot_prompt(_examples(), 4, seed=1, question=" Q:", answers=ANSWERS)
    else:
        model.tokenizer.chat_template = CHAT
        prompt = chat_prompt(model.tokenizer, instruction="true?", answers=ANSWERS)
    got = prompted_log_odds(model, TEXTS, prompt, batch_size=3)  # a full and a partial batch, right-padded
    bridge, ref = _whole_prompt(model, hf, prompt, TEXTS)
    assert (got - bridge).abs().max() < LOGIT_TOL
    assert (got - ref).abs().max() < LOGIT_TOL
    reversed_one_by_one = prompted_log_odds(model, TEXTS[::-1], prompt, batch_size=1).flip(0)
    assert (got - reversed_one_by_one).abs().max() < LOGIT_TOL  # row order and batch size do not matter


def test_zero_shot_is_the_plain_answer_of_statement_and_question(tiny):
    model, _ = tiny
    prompt = zero_shot_prompt(" Q:", ANSWERS)
    got = prompted_log_odds(model, TEXTS, prompt)
    assert torch.equal(got, output_log_odds(model, [t + " Q:" for t in TEXTS], answers=ANSWERS))


def test_few_shot_draws_balanced_labelled_examples_from_the_rows_given():
    prompt = few_shot_prompt(_examples(), 4, seed=0, question=" Q:", answers=(" yes", " no"))
    lines = prompt.prefix.splitlines()
    assert len(lines) == 4 and sum(line.endswith(" Q: yes") for line in lines) == 2
    texts = set(_examples().texts)
    assert all(line.rsplit(" Q:", 1)[0] in texts for line in lines)
    assert prompt.suffix == " Q:" and prompt == few_shot_prompt(
        _examples(), 4, seed=0, question=" Q:", answers=(" yes", " no")
    )
    assert prompt != few_shot_prompt(_examples(), 4, seed=3, question=" Q:", answers=(" yes", " no"))


def test_chat_prompt_keeps_the_templates_own_bos_and_adds_none(tiny):
    model, _ = tiny
    model.tokenizer.chat_template = CHAT
    prompt = chat_prompt(model.tokenizer, instruction="true?", answers=ANSWERS)
    assert prompt.prefix == "<s>U:true?\n\n" and prompt.suffix == "\nA:" and not prompt.model_bos
    assert _prefix_ids(model, prompt).count(model.tokenizer.bos_token_id) == 1


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m: few_shot_prompt(_examples(), 1), ValueError, r"k must lie in \[2, inf\); got 1"),
        (lambda m: few_shot_prompt(_examples(), 8), ValueError, "'ex' has 3 true statements; k=8 needs 4"),
        (lambda m: prompted_log_odds(m, TEXTS, "zero_shot"), TypeError, "prompt must be a Prompt"),
        (lambda m: prompted_log_odds(m, "a text", zero_shot_prompt()), TypeError, "got a single str"),
        (lambda m: prompted_log_odds(m, TEXTS, zero_shot_prompt(), batch_size=0), ValueError, "batch_size"),
        (lambda m: Prompt("p", "x", "y", ("a",)), TypeError, "answers must be a pair"),
        (lambda m: prompted_log_odds(m, TEXTS, Prompt("p", "x" * 300, ":", ANSWERS)), ValueError, r"n_ctx=256"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(tiny, call, error, match):
    with pytest.raises(error, match=match):
        call(tiny[0])


def test_a_tokenizer_without_chat_template_is_refused(tiny):
    model, _ = tiny
    model.tokenizer.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        chat_prompt(model.tokenizer)
