"""`capture_contrast`: each statement read twice, with the true and the false answer appended.

On the tiny native model with the char tokenizer (tests/conftest.py), where every character is one
token, so answers like ``("y", "n")`` add exactly one token and ``"no"`` adds two.
"""

import pytest
import torch

from elk_lens.capturing import capture
from elk_lens.contrast import capture_contrast, contrast_statements
from elk_lens.data.statements import StatementSet
from elk_lens.reporters import fit_ccs, fit_crc, fit_vinc

TEXTS = ["cats are red.", "a b", "x y z!", "one 2 three", "sky is blue.", "ok"]  # different lengths
TRUTH = torch.tensor([True, False, True, False, False, True])
SITES = ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_post"]
ANSWERS = ("y", "n")
# capture vs run_with_cache on one unpadded text: same tokens, but capture passes an attention mask and
# stops the forward early, so kernels may differ in float32 rounding (test_capture.py measured <= 7.2e-7)
RUN_WITH_CACHE_TOL = 1e-5


@pytest.fixture(scope="module")
def statements() -> StatementSet:
    return StatementSet(list(TEXTS), TRUTH.clone(), name="toy")


def test_halves_equal_capture_of_the_texts_with_the_answers_appended(native_model, statements):
    pairs = capture_contrast(native_model, statements, SITES, answers=ANSWERS)
    assert pairs.answers == ANSWERS and [s.name for s in pairs.sites] == SITES
    for half, answer in ((pairs.true, ANSWERS[0]), (pairs.false, ANSWERS[1])):
        ref = capture(native_model, [t + answer for t in TEXTS], SITES)
        assert torch.equal(half.values, ref.values)  # exact: the same capture on the same texts
    x_true, x_false = pairs.at(SITES[1])
    assert torch.equal(x_true, pairs.true.at(SITES[1])) and torch.equal(x_false, pairs.false.at(SITES[1]))
    assert x_true.shape == (len(TEXTS), native_model.cfg.d_model)


@torch.no_grad()
def test_the_read_position_is_the_appended_answer_token(native_model, statements):
    """An independent oracle: run_with_cache of each appended text alone, at its last position."""
    pairs = capture_contrast(native_model, statements, SITES, answers=ANSWERS)
    for i, text in enumerate(TEXTS):
        for half, answer in ((pairs.true, ANSWERS[0]), (pairs.false, ANSWERS[1])):
            tokens = native_model.to_tokens(text + answer)
            assert native_model.tokenizer.decode(tokens[0, -1]) == answer
            _, cache = native_model.run_with_cache(tokens, names_filter=SITES)
            for j, site in enumerate(SITES):
                assert (half.values[i, j] - cache[site][0, -1]).abs().max() < RUN_WITH_CACHE_TOL


def test_rows_align_with_the_statements(native_model, statements):
    """Permuting the statements permutes the rows of both halves (batch_size=1: exact, no padding)."""
    perm = [3, 0, 5, 1, 4, 2]
    permuted = StatementSet([TEXTS[i] for i in perm], TRUTH[perm], name="toy-permuted")
    pairs = capture_contrast(native_model, statements, SITES, answers=ANSWERS, batch_size=1)
    pairs_perm = capture_contrast(native_model, permuted, SITES, answers=ANSWERS, batch_size=1)
    assert torch.equal(pairs_perm.true.values, pairs.true.values[perm])
    assert torch.equal(pairs_perm.false.values, pairs.false.values[perm])
    # the halves of a pair differ at the read position (different appended token), row by row
    x_true, x_false = pairs.at(SITES[0])
    assert ((x_true - x_false).abs().amax(1) > 0).all()


def test_cached_halves_do_not_collide(native_model, statements, tmp_path):
    """Both halves share sites and model: only the appended answer tells their cache keys apart."""
    plain = capture_contrast(native_model, statements, SITES, answers=ANSWERS)
    for _ in range(2):  # write, then read back
        cached = capture_contrast(native_model, statements, SITES, answers=ANSWERS, cache_dir=tmp_path)
        assert torch.equal(cached.true.values, plain.true.values)
        assert torch.equal(cached.false.values, plain.false.values)


def test_contrast_statements_append_the_answers_and_keep_the_labels(statements):
    with_true, with_false = contrast_statements(statements, ANSWERS)
    assert with_true.texts == [t + "y" for t in TEXTS] and with_false.texts == [t + "n" for t in TEXTS]
    assert torch.equal(with_true.truth, TRUTH) and torch.equal(with_false.truth, TRUTH)
    assert with_true.name == "toy+y" and with_false.name == "toy+n"


@pytest.mark.parametrize(
    "answers, match",
    [
        (("no", "n"), r"appending answer 'no' to statement 0 \('cats are red\.'\) adds 2 tokens, not one"),
        (("y", "no"), r"appending answer 'no' to statement 0 \('cats are red\.'\) adds 2 tokens, not one"),
        (("", "n"), r"appending answer '' to statement 0 \('cats are red\.'\) adds 0 tokens, not one"),
    ],
)
def test_an_answer_that_is_not_one_token_raises_naming_the_statement(native_model, statements, answers, match):
    with pytest.raises(ValueError, match=match):
        capture_contrast(native_model, statements, SITES, answers=answers)


@pytest.mark.parametrize("answers", [("y", "y"), ("y",), ("y", "n", "m")])
def test_answers_must_be_two_different_strings(native_model, statements, answers):
    with pytest.raises(ValueError, match="answers must be two different strings"):
        capture_contrast(native_model, statements, SITES, answers=answers)


@pytest.mark.parametrize("fit", [fit_ccs, fit_crc, fit_vinc])
def test_a_contrast_reporter_reads_captured_pairs(native_model, statements, fit):
    """End to end: float32 captured halves into a float64 pair method and back into the reporter."""
    pairs = capture_contrast(native_model, statements, SITES, answers=ANSWERS)
    x_true, x_false = pairs.at(SITES[1])
    assert x_true.dtype == torch.float32
    rep = fit(x_true, x_false, statements.truth, site=SITES[1])
    assert rep.reads == "contrast" and rep.site == SITES[1]
    scores = rep(x_true, x_false)
    assert scores.shape == (len(TEXTS),) and torch.isfinite(scores).all()
    with pytest.raises(ValueError, match="pass both halves"):
        rep(x_true)
