"""Interventions: only the chosen (row, position) pairs change, each edit does its math, and failures are loud.

The oracle is the same model's clean ``run_with_cache``: at the hooked site every position that was not
edited must be bit-identical to it, and at a later layer so must every position before the first edit
(causal attention). The cache is taken inside the intervention, so it sees the site after the edit.
"""

import random
import string

import pytest
import torch
from conftest import D_MODEL, boot_native

from elk_lens.capturing import capture, tokenize
from elk_lens.erasure import fit_leace
from elk_lens.interventions import (
    erase,
    erase_edit,
    intervene,
    nie,
    random_direction_like,
    reflect,
    reflect_edit,
    steer,
    steer_edit,
)
from elk_lens.lm_output import output_log_odds
from elk_lens.sites import Site

TEXTS = ("hello world", "ab", "x y z!", "cat")  # different lengths: right padding in every row but the first
SITE = "blocks.1.hook_resid_pre"
LATER = "blocks.1.hook_resid_post"
ANSWERS = ("y", "n")  # the char tokenizer has no "True": single-character answers are single tokens
F64_TOL = 1e-12  # float64 model: the edit's own arithmetic, rounded; a wrong formula is off by O(1)


@pytest.fixture(autouse=True)
def _seeded():
    """Random directions below come from the global RNG: seed it so no test depends on test order."""
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def model64(char_tok_dir):
    """A float64 copy of the tiny native model, for checks of the edits' math."""
    return boot_native(char_tok_dir, dtype=torch.float64)


def tokens_of(model, texts=TEXTS):
    return tokenize(model, texts)


def last_real(tokens):
    return tokens.mask.sum(1) - 1


@torch.no_grad()
def run(model, tokens, names=(SITE, LATER)):
    """Logits and a cache of ``names`` (inside an intervention: the values after the edit)."""
    logits, cache = model.run_with_cache(tokens.ids, attention_mask=tokens.mask, names_filter=list(names))
    return logits, {n: cache[n] for n in names}


def edited_mask(shape, positions):
    """[batch, pos] bool: True at each (row, positions[row, j])."""
    mask = torch.zeros(shape, dtype=torch.bool)
    pos = positions.reshape(shape[0], -1)
    mask[torch.arange(shape[0])[:, None].expand_as(pos), pos] = True
    return mask


# --------------------------------------------------------------------------- locality


def test_alpha_zero_is_the_identity(native_model):
    tokens = tokens_of(native_model)
    clean, _ = run(native_model, tokens)
    with steer(native_model, SITE, torch.randn(D_MODEL), alpha=0.0, positions=last_real(tokens)):
        steered, _ = run(native_model, tokens)
    assert torch.equal(steered, clean)


@pytest.mark.parametrize("k", [1, 2], ids=["positions[batch]", "positions[batch,2]"])
def test_only_the_chosen_positions_change(native_model, k):
    tokens = tokens_of(native_model)
    last = last_real(tokens)
    positions = last if k == 1 else torch.stack([last, last - 1], 1)
    _, clean = run(native_model, tokens)
    with steer(native_model, SITE, torch.randn(D_MODEL), alpha=5.0, positions=positions):
        _, hit = run(native_model, tokens)
    edited = edited_mask(tokens.ids.shape, positions)
    changed = (hit[SITE] != clean[SITE]).any(-1)
    assert torch.equal(changed, edited), f"changed {changed.nonzero().tolist()} != edited {edited.nonzero().tolist()}"
    # causal attention: positions before a row's first edit are bit-identical downstream too
    first = positions.reshape(len(tokens), -1).min(1).values
    before = torch.arange(tokens.ids.shape[1])[None] < first[:, None]
    assert torch.equal(hit[LATER][before], clean[LATER][before])
    assert not torch.equal(hit[LATER][edited], clean[LATER][edited])


def test_the_hooked_tensor_is_not_modified_in_place(native_model):
    """A hook attached before the intervention keeps a reference to the tensor it saw: it must stay clean."""
    tokens = tokens_of(native_model)
    _, clean = run(native_model, tokens)
    seen = {}

    def keep(t, *, hook):
        seen["t"] = t  # no clone on purpose

    edit = steer(native_model, SITE, torch.ones(D_MODEL), alpha=3.0, positions=last_real(tokens))
    with native_model.hooks(fwd_hooks=[(SITE, keep)]), edit:  # attached first, so it runs first
        run(native_model, tokens)
    assert torch.equal(seen["t"], clean[SITE])


def test_each_rows_last_real_token_is_the_one_edited(native_model):
    tokens = tokens_of(native_model)
    last = last_real(tokens)
    assert len(set(last.tolist())) == len(TEXTS), "the texts must differ in length for this test to mean anything"
    _, clean = run(native_model, tokens)
    with steer(native_model, Site(1, "resid_pre"), torch.randn(D_MODEL), alpha=2.0, positions=last):
        _, hit = run(native_model, tokens)
    for row in range(len(TEXTS)):
        cols = (hit[SITE][row] != clean[SITE][row]).any(-1).nonzero().squeeze(1).tolist()
        assert cols == [int(last[row])], (
            f"row {row} ({TEXTS[row]!r}): edited columns {cols}, last real {int(last[row])}"
        )


# --------------------------------------------------------------------------- the edits' math


def test_steer_adds_exactly_alpha_times_the_direction(native_model):
    tokens = tokens_of(native_model)
    positions = torch.stack([last_real(tokens), torch.zeros(len(TEXTS), dtype=torch.long)], 1)
    direction, alpha = torch.randn(D_MODEL), -1.5
    _, clean = run(native_model, tokens)
    with steer(native_model, SITE, direction, alpha=alpha, positions=positions):
        _, hit = run(native_model, tokens)
    edited = edited_mask(tokens.ids.shape, positions)
    assert torch.equal(hit[SITE][edited], clean[SITE][edited] + alpha * direction)


def test_reflect_flips_the_probe_reading_and_keeps_the_orthogonal_part(model64):
    tokens = tokens_of(model64)
    last = last_real(tokens)
    w = torch.randn(D_MODEL, dtype=torch.float64)
    w_hat = w / w.norm()
    _, clean = run(model64, tokens)
    rows = torch.arange(len(TEXTS))
    h = clean[SITE][rows, last]
    # a hyperplane offset so every row reads at least 1 from it: the flip is then visible in each row
    spread = ((h - h.mean(0)) @ w_hat).abs().max()
    mu = h.mean(0) - (spread + 1) * w_hat + torch.randn(D_MODEL, dtype=torch.float64)
    mu -= ((mu - h.mean(0)) @ w_hat + spread + 1) * w_hat  # the random part moves mu only along the plane
    with reflect(model64, SITE, w, mu, positions=last):
        _, hit = run(model64, tokens)
    before, after = clean[SITE][rows, last] - mu, hit[SITE][rows, last] - mu
    reading_before, reading_after = before @ w_hat, after @ w_hat
    assert (reading_after + reading_before).abs().max() < F64_TOL
    assert reading_before.abs().min() >= 1 - F64_TOL, "the reading must be non-trivial for the flip to be checked"
    ortho = (after - reading_after[:, None] * w_hat) - (before - reading_before[:, None] * w_hat)
    assert ortho.abs().max() < F64_TOL


def test_erase_with_a_direction_leaves_zero_projection(model64):
    tokens = tokens_of(model64)
    last = last_real(tokens)
    u = torch.randn(D_MODEL, dtype=torch.float64) * 7
    _, clean = run(model64, tokens)
    with erase(model64, SITE, u, positions=last):
        _, hit = run(model64, tokens)
    rows = torch.arange(len(TEXTS))
    u_hat = u / u.norm()
    assert (clean[SITE][rows, last] @ u_hat).abs().min() > 0.01, "the projection must be non-zero before erasure"
    assert (hit[SITE][rows, last] @ u_hat).abs().max() < F64_TOL


def test_erase_with_a_leace_eraser_equals_the_eraser(native_model):
    """Fitted on captured activations at the site (random labels); float64 eraser on a float32 model."""
    rng = random.Random(0)
    texts = ["".join(rng.choices(string.ascii_lowercase + " ", k=rng.randint(3, 15))) for _ in range(120)]
    acts = capture(native_model, texts, [SITE]).at(SITE)
    labels = torch.tensor([rng.random() < 0.5 for _ in texts])
    eraser = fit_leace(acts, labels)
    tokens = tokens_of(native_model)
    last = last_real(tokens)
    _, clean = run(native_model, tokens)
    with erase(native_model, SITE, eraser, positions=last):
        _, hit = run(native_model, tokens)
    rows = torch.arange(len(TEXTS))
    want = eraser(clean[SITE][rows, last].double()).float()  # same rows, same shape: the same arithmetic
    assert torch.equal(hit[SITE][rows, last], want)
    assert not torch.equal(want, clean[SITE][rows, last])
    unedited = ~edited_mask(tokens.ids.shape, last)
    assert torch.equal(hit[SITE][unedited], clean[SITE][unedited])


# --------------------------------------------------------------------------- loud failures


def test_an_unknown_hook_name_raises_key_error_before_the_forward(native_model):
    for name in ("blocks.9.hook_resid_pre", "blocks.0.hook_nonsense"):
        with (
            pytest.raises(KeyError, match="do not exist"),
            steer(native_model, name, torch.randn(D_MODEL), alpha=1.0, positions=torch.zeros(1, dtype=torch.long)),
        ):
            pytest.fail("the context must not be entered")


def test_a_hook_that_never_fires_raises(native_model):
    """``stop_at_layer=1`` never reaches block 1's resid_mid (its resid_pre does fire: it is the returned value)."""
    tokens = tokens_of(native_model)
    with (
        pytest.raises(RuntimeError, match="never fired"),
        steer(native_model, "blocks.1.hook_resid_mid", torch.randn(D_MODEL), alpha=1.0, positions=last_real(tokens)),
        torch.no_grad(),
    ):
        native_model(tokens.ids, attention_mask=tokens.mask, stop_at_layer=1)


def test_a_wrong_width_direction_raises_value_error(native_model):
    tokens = tokens_of(native_model)
    with (
        pytest.raises(ValueError, match=rf"width {D_MODEL - 1}.*width {D_MODEL}"),
        steer(native_model, SITE, torch.randn(D_MODEL - 1), alpha=1.0, positions=last_real(tokens)),
    ):
        run(native_model, tokens)
    with pytest.raises(ValueError, match="mean mu has width"):
        reflect(native_model, SITE, torch.randn(D_MODEL), torch.randn(D_MODEL + 1), positions=last_real(tokens))


@pytest.mark.parametrize(
    "positions, message",
    [
        (torch.zeros(3, dtype=torch.long), "batch of 3 rows but .* batch of 4"),
        (torch.full((4,), 99), "out of range"),
        (torch.full((4,), -1), "out of range"),
    ],
    ids=["wrong batch", "past the end", "negative"],
)
def test_bad_positions_raise_value_error(native_model, positions, message):
    tokens = tokens_of(native_model)
    with (
        pytest.raises(ValueError, match=message),
        steer(native_model, SITE, torch.randn(D_MODEL), alpha=1.0, positions=positions),
    ):
        run(native_model, tokens)


@pytest.mark.parametrize(
    "positions, message",
    [
        (torch.zeros(4), "integer"),
        (torch.zeros(4, 1, 1, dtype=torch.long), r"\[batch\]"),
        (torch.zeros(4, 2, dtype=torch.long), "repeat"),
    ],
    ids=["float", "3-d", "repeated"],
)
def test_malformed_positions_raise_before_the_forward(native_model, positions, message):
    with pytest.raises(ValueError, match=message):
        intervene(native_model, SITE, steer_edit(torch.randn(D_MODEL), 1.0), positions).__enter__()


def test_a_zero_direction_cannot_be_erased_or_reflected():
    with pytest.raises(ValueError, match="zero vector"):
        erase_edit(torch.zeros(D_MODEL))
    with pytest.raises(ValueError, match="zero vector"):
        reflect_edit(torch.zeros(D_MODEL), torch.zeros(D_MODEL))


# --------------------------------------------------------------------------- output_log_odds


def manual_log_odds(model, texts):
    """The log-odds as ``output_log_odds`` computed them before it took interventions."""
    tokens = tokenize(model, texts)
    t_id, f_id = (model.tokenizer(a, add_special_tokens=False)["input_ids"][0] for a in ANSWERS)
    with torch.no_grad():
        logits = model(tokens.ids, attention_mask=tokens.mask)
    picked = logits[torch.arange(len(texts)), last_real(tokens)]
    return (picked[:, t_id] - picked[:, f_id]).float()


def test_output_log_odds_without_an_intervention_is_unchanged(native_model):
    got = output_log_odds(native_model, TEXTS, answers=ANSWERS)
    # not bitwise: output_log_odds multiplies by the two answer columns only (lm_output._answer_logits),
    # the full unembedding sums the same products in another order (float32)
    assert (got - manual_log_odds(native_model, TEXTS)).abs().max() < 1e-5


def test_output_log_odds_with_a_zero_steer_is_identical(native_model):
    clean = output_log_odds(native_model, TEXTS, answers=ANSWERS, batch_size=3)
    zero = output_log_odds(
        native_model,
        TEXTS,
        answers=ANSWERS,
        batch_size=3,
        positions_from_end=(0, 1),
        intervention=lambda pos: steer(native_model, SITE, torch.randn(D_MODEL), alpha=0.0, positions=pos),
    )
    assert torch.equal(zero, clean)


def test_output_log_odds_edits_each_batchs_last_tokens(native_model):
    """Batches of 3 then 1: positions are worked out per batch, after the batch's padding is trimmed."""
    seen = []

    def intervention(pos):
        seen.append(pos)
        return steer(native_model, SITE, torch.randn(D_MODEL), alpha=4.0, positions=pos)

    clean = output_log_odds(native_model, TEXTS, answers=ANSWERS, batch_size=3)
    steered = output_log_odds(
        native_model, TEXTS, answers=ANSWERS, batch_size=3, intervention=intervention, positions_from_end=(0, 1)
    )
    last = last_real(tokens_of(native_model))
    assert torch.equal(torch.cat(seen), torch.stack([last, last - 1], 1))
    assert [p.shape for p in seen] == [(3, 2), (1, 2)]
    assert (steered != clean).all()


def test_output_log_odds_rejects_offsets_past_the_start(native_model):
    with pytest.raises(ValueError, match="statement 1 has 3 tokens"):
        output_log_odds(
            native_model,
            TEXTS,
            answers=ANSWERS,
            positions_from_end=(0, 3),
            intervention=lambda pos: steer(native_model, SITE, torch.randn(D_MODEL), alpha=1.0, positions=pos),
        )


# --------------------------------------------------------------------------- controls and metrics


def test_random_direction_like_has_equal_norm_and_is_seed_deterministic():
    d = torch.randn(D_MODEL) * 3
    a, b, c = (random_direction_like(d, seed=s) for s in (7, 7, 8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.isclose(a.norm(), d.norm(), rtol=1e-6) and a.dtype == d.dtype
    assert (a @ d).abs() < 0.9 * a.norm() * d.norm(), "a random direction should not be parallel to d"


def test_nie_on_hand_computed_numbers():
    # PD+ = 0.8, PD- = -0.4: the gap is 1.2
    assert nie(0.8, -0.4, 0.2, toward="true") == pytest.approx(0.6 / 1.2)  # false -> true, half way
    assert nie(0.8, -0.4, -0.1, toward="false") == pytest.approx(-0.9 / -1.2)  # true -> false, 3/4 of the way
    assert nie(0.8, -0.4, -0.4, toward="true") == 0.0  # no effect
    with pytest.raises(ValueError, match=r"\('true', 'false'\)"):
        nie(0.8, -0.4, 0.0, toward="up")
    with pytest.raises(ValueError, match="undefined"):
        nie(0.5, 0.5, 0.7, toward="true")
