"""Farquhar et al.'s distractor battery (docs/methods/elk_methods.md §9): the coin, the distractor pairs on the tiny
model, and the tables, each row recomputed by hand."""

import random
import string

import numpy as np
import pytest
import torch

from elk_lens.activations import Activations
from elk_lens.capturing import capture
from elk_lens.contrast import ContrastActivations
from elk_lens.data.statements import StatementSet
from elk_lens.metrics import auroc
from elk_lens.quirky.rigor import capture_distractor_pairs, distractor_coin, distractor_table, seed_stability
from elk_lens.reporters import fit_ccs, fit_logistic
from elk_lens.reporters.registry import fit_method
from elk_lens.sites import Site

ANSWERS = ("y", "n")  # single tokens of the char tokenizer
WORDS = ("a", "b")
SITES = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_pre"]
CAPTURE_TOL = 1e-5  # float32 batched (padded) capture vs a one-row forward of the same text
N_BIG = 4000
CHANCE_SIGMAS = 4.0  # a fair coin's mean and its correlation with any fixed labels: within 4 sd of chance
LOGISTIC_FINDS_TRUTH = 0.95  # supervised reference row on the planted pairs (measured 1.0)


def _statements(n: int, seed: int = 0) -> StatementSet:
    rng = random.Random(seed)
    texts = ["".join(rng.choices(string.ascii_lowercase + " ", k=rng.randint(2, 10))) for _ in range(n)]
    truth = torch.tensor([rng.random() < 0.5 for _ in range(n)])
    return StatementSet(texts, truth, {"row": np.arange(n)}, name="tiny")


# --------------------------------------------------------------------------- the coin


def test_the_coin_is_seeded_label_independent_and_balanced():
    statements = _statements(N_BIG)
    coin = distractor_coin(statements, seed=0)
    assert coin.dtype == torch.bool and coin.shape == (N_BIG,)
    assert torch.equal(coin, distractor_coin(statements, seed=0))
    assert not torch.equal(coin, distractor_coin(statements, seed=1))
    # independent of the labels by construction: the same coin whatever the truth column says
    flipped = StatementSet(statements.texts, ~statements.truth, statements.meta)
    assert torch.equal(coin, distractor_coin(flipped, seed=0))
    sd = 0.5 / N_BIG**0.5
    assert abs(float(coin.double().mean()) - 0.5) < CHANCE_SIGMAS * sd
    corr = np.corrcoef(coin.numpy(), statements.truth.numpy())[0, 1]
    assert abs(corr) < CHANCE_SIGMAS / N_BIG**0.5, f"coin/label correlation {corr:.3f}"


# --------------------------------------------------------------------------- capture_distractor_pairs


def test_distractor_pairs_carry_the_coins_words_and_equal_capture_of_those_texts(native_model):
    statements = _statements(12, seed=1)
    pairs, coin = capture_distractor_pairs(native_model, statements, SITES, answers=ANSWERS, words=WORDS, seed=5)
    assert torch.equal(coin, distractor_coin(statements, seed=5))
    assert 0 < int(coin.sum()) < len(coin), "the test needs both faces of the coin"
    true_texts = [
        t + ANSWERS[0] + (WORDS[0] if c else WORDS[1]) for t, c in zip(statements.texts, coin.tolist(), strict=True)
    ]
    false_texts = [
        t + ANSWERS[1] + (WORDS[1] if c else WORDS[0]) for t, c in zip(statements.texts, coin.tolist(), strict=True)
    ]
    assert all(a[-1] != b[-1] for a, b in zip(true_texts, false_texts, strict=True)), (
        "the halves always differ in the word"
    )
    # the captured halves are exactly these texts (the data fingerprint hashes texts, truth and metadata)
    for half, texts in ((pairs.true, true_texts), (pairs.false, false_texts)):
        assert half.meta["data_fingerprint"] == StatementSet(texts, statements.truth, statements.meta).fingerprint
        assert half.position == "last" and [s.name for s in half.sites] == SITES
        assert torch.equal(half.values, capture(native_model, texts, SITES).values)
    assert pairs.answers == ANSWERS
    # read at the last token (the word), as a one-row forward of each text sees it
    for i in (0, 5, 11):
        _, cache = native_model.run_with_cache(native_model.to_tokens(true_texts[i]), names_filter=SITES)
        for j, name in enumerate(SITES):
            assert (pairs.true.values[i, j] - cache[name][0, -1]).abs().max() < CAPTURE_TOL


# --------------------------------------------------------------------------- tables on planted pairs

D = 12


def _planted(n: int, seed: int) -> tuple[ContrastActivations, torch.Tensor, torch.Tensor]:
    """Two sites; at each, x_true = base + a + tau t + 3 s u and x_false = base - a - tau t - 3 s u, with
    truth tau and an independent coin s (both +-1): the distractor is 3x stronger than truth."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(np.random.default_rng(99).normal(size=(D, 4)))
    t, u, a, nuisance = q.T
    tau, s = rng.permutation(np.repeat([1.0, -1.0], n // 2)), rng.permutation(np.repeat([1.0, -1.0], n // 2))
    halves = []
    for sign in (1.0, -1.0):
        per_site = []
        for _ in range(2):
            base = 3 * rng.normal(size=(n, 1)) * nuisance
            signal = tau[:, None] * t + 3 * s[:, None] * u
            per_site.append(base + sign * (a + signal) + 0.1 * rng.normal(size=(n, D)))
        halves.append(torch.as_tensor(np.stack(per_site, 1)))
    sites = [Site.parse(name) for name in SITES]
    acts = [Activations(h, sites, "last", {}) for h in halves]
    return ContrastActivations(acts[0], acts[1], ANSWERS), torch.as_tensor(tau > 0), torch.as_tensor(s > 0)


def test_distractor_table_has_one_row_per_method_and_site_each_recomputed():
    train, y_train, _ = _planted(120, 0)
    test, y_test, coin_test = _planted(80, 1)
    rows = distractor_table(train, y_train, test, y_test, coin_test)  # default: the three pair methods
    methods = ("ccs", "crc", "vinc", "logistic")
    assert [(r["method"], r["site"]) for r in rows] == [(m, s) for m in methods for s in SITES]
    only = distractor_table(train, y_train, test, y_test, coin_test, methods=("crc",))
    assert [(r["method"], r["site"]) for r in only] == [(m, s) for m in ("crc", "logistic") for s in SITES]
    assert all(set(r) == {"method", "site", "auroc vs truth", "auroc vs distractor"} for r in rows)
    for row in rows:
        i = SITES.index(row["site"])
        (xt, xf), (et, ef) = train.at(i), test.at(i)
        if row["method"] == "logistic":  # supervised, on the pair differences
            scores = fit_logistic((xt - xf).double(), y_train, site=row["site"])((et - ef).double())
            assert row["auroc vs truth"] > LOGISTIC_FINDS_TRUTH
        else:
            scores = fit_method(row["method"], y_train, site=row["site"], pair=(xt, xf))(et, ef)
        assert row["auroc vs truth"] == round(auroc(scores, y_test), 4)
        assert row["auroc vs distractor"] == round(auroc(scores, coin_test), 4)


def test_seed_stability_has_one_row_per_seed_with_an_auroc_per_target():
    train, y_train, _ = _planted(80, 2)
    test, y_test, coin_test = _planted(60, 3)
    targets = {"truth": y_test, "distractor": coin_test}
    rows = seed_stability(train, y_train, test, targets, site=1, seeds=range(3))
    assert [r["seed"] for r in rows] == [0, 1, 2]
    assert all(list(r) == ["seed", "auroc vs truth", "auroc vs distractor"] for r in rows)
    for row in rows:
        (xt, xf), (et, ef) = train.at(1), test.at(1)
        scores = fit_ccs(xt, xf, y_train, site=SITES[1], seed=row["seed"])(et, ef)
        assert row["auroc vs truth"] == round(auroc(scores, y_test), 4)
        assert row["auroc vs distractor"] == round(auroc(scores, coin_test), 4)


def test_seed_stability_with_one_class_target_raises():
    train, y_train, _ = _planted(40, 4)
    test, _, _ = _planted(20, 5)
    with pytest.raises(ValueError, match="both classes"):
        seed_stability(train, y_train, test, {"const": torch.ones(20, dtype=torch.bool)}, site=0, seeds=range(1))
