"""The model's own answer (elk_lens.lm_output): the answer-columns path equals the full logits' columns."""

import pytest
import torch
from conftest import boot_native

from elk_lens.capturing import tokenize
from elk_lens.interventions import steer
from elk_lens.lm_output import output_log_odds

TEXTS = ["the cat sat.", "a dog ran far away.", "it is 12."]
ANSWERS = ("a", "b")  # single tokens of the tests' char tokenizer
EXACT_TOL = 1e-5  # float32: the same products summed in another order


def _full_logits_diff(model, texts):
    """The oracle: the full forward's logits at each last real token, true minus false column."""
    tokens = tokenize(model, texts)
    t_id, f_id = (model.tokenizer(a, add_special_tokens=False)["input_ids"][0] for a in ANSWERS)
    with torch.no_grad():
        logits = model(tokens.ids, attention_mask=tokens.mask)
    last = tokens.mask.sum(1) - 1
    picked = logits[torch.arange(len(texts)), last]
    return picked[:, t_id] - picked[:, f_id]


@pytest.mark.parametrize("fixture", ["native_model", "gpt2_model", "neox_model"])
def test_answer_columns_equal_the_full_logits(request, fixture):
    model = request.getfixturevalue(fixture)
    got = output_log_odds(model, TEXTS, answers=ANSWERS, batch_size=2)
    gap = (got - _full_logits_diff(model, TEXTS)).abs().max().item()
    assert gap < EXACT_TOL, f"{fixture}: answer columns vs full logits, max gap {gap:.2e}"


def test_the_soft_cap_is_applied(char_tok_dir):
    model = boot_native(char_tok_dir, output_logits_soft_cap=2.0)
    got = output_log_odds(model, TEXTS, answers=ANSWERS)
    gap = (got - _full_logits_diff(model, TEXTS)).abs().max().item()
    assert gap < EXACT_TOL, f"soft-capped model: max gap {gap:.2e}"


def test_an_intervention_applies_on_the_answer_columns_path(native_model):
    direction = torch.randn(native_model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    site = "blocks.1.hook_resid_pre"
    got = output_log_odds(
        native_model,
        TEXTS,
        answers=ANSWERS,
        intervention=lambda pos: steer(native_model, site, direction, alpha=3.0, positions=pos),
    )
    last = tokenize(native_model, TEXTS).mask.sum(1) - 1
    with steer(native_model, site, direction, alpha=3.0, positions=last[:, None]):
        oracle = _full_logits_diff(native_model, TEXTS)
    gap = (got - oracle).abs().max().item()
    assert gap < EXACT_TOL and (got - output_log_odds(native_model, TEXTS, answers=ANSWERS)).abs().max() > 1e-3, gap
