"""Quirky arithmetic: labels, splits, difficulty, determinism, and the removed shortcut."""

import re

import numpy as np
import pytest
import torch

from elk_lens.metrics import auroc
from elk_lens.quirky import data as quirky
from elk_lens.quirky.data import (
    EASY_MAX,
    HARD_MIN,
    difficulty_cdf,
    pair_split,
    quartile_bounds,
    quirky_arithmetic,
    sample_rows,
)

# Surface heuristics count as "near chance" within this distance of 0.5 (the prototype measured
# 0.44-0.50 on Bob-hard; own-answer distractors give 1.0 for the leading digit).
CHANCE_BAND = 0.1


@pytest.fixture(scope="module")
def test_set():
    return quirky_arithmetic(6000, split="test", seed=0)


def test_labels_follow_the_definitions(test_set):
    m = test_set.meta
    assert np.array_equal(m["sum"], m["a"] + m["b"])
    lead = 10 ** (np.floor(np.log10(m["sum"])).astype(int))
    assert np.array_equal(m["sloppy_sum"], m["sum"] + lead)
    assert np.array_equal(m["alice_label"], m["shown"] == m["sum"])
    assert np.array_equal(m["bob_label"], m["shown"] == m["sloppy_sum"])
    assert torch.equal(test_set.truth, torch.as_tensor(m["alice_label"]))
    bob = m["character"] == "Bob"
    assert np.array_equal(m["label"][bob], m["bob_label"][bob])
    assert np.array_equal(m["label"][~bob], m["alice_label"][~bob])
    assert np.array_equal(m["disagreement"], m["alice_label"] != m["bob_label"])


def test_sloppy_sum_carries():
    assert list(quirky.sloppy_sum(np.array([357, 957, 9, 1998]))) == [457, 1057, 10, 2998]


def test_text_format(test_set):
    m = test_set.meta
    i = 1
    assert test_set.texts[i] == f"{m['a'][i]:03d}+{m['b'][i]:03d}={m['shown'][i]:04d}.{m['character'][i]}:"
    assert {t[-4:] for t in test_set.texts} <= {"Bob:", "ice:"}


def test_each_row_gives_alice_then_bob(test_set):
    m = test_set.meta
    assert list(m["character"][:4]) == ["Alice", "Bob", "Alice", "Bob"]
    assert np.array_equal(m["shown"][0::2], m["shown"][1::2])


def test_shown_result_mix(test_set):
    kinds = test_set.meta["shown_kind"][0::2]
    fractions = {k: float(np.mean(kinds == k)) for k in quirky.SHOWN_KINDS}
    assert all(abs(f - 0.25) < 0.02 for f in fractions.values()), fractions
    distractor = np.isin(kinds, ["distractor_of_sum", "distractor_of_sloppy"])
    m = test_set.meta
    assert not (m["alice_label"][0::2][distractor] | m["bob_label"][0::2][distractor]).any()


def test_splits_share_no_pair():
    pairs = {}
    for split in quirky.SPLITS:
        s = quirky_arithmetic(3000, split=split, seed=3)
        pairs[split] = {(min(a, b), max(a, b)) for a, b in zip(s.meta["a"], s.meta["b"], strict=True)}
        assert set(s.meta["split"]) == {split}
    assert not pairs["train"] & pairs["val"]
    assert not pairs["train"] & pairs["test"]
    assert not pairs["val"] & pairs["test"]
    a = np.arange(1, 1000)
    assert np.array_equal(pair_split(a, a[::-1]), pair_split(a[::-1], a))  # unordered pairs


def test_rows_are_unique_and_deterministic():
    s1 = quirky_arithmetic(2000, split="val", seed=7)
    s2 = quirky_arithmetic(2000, split="val", seed=7)
    s3 = quirky_arithmetic(2000, split="val", seed=8)
    assert s1.texts == s2.texts and s1.fingerprint == s2.fingerprint
    assert s1.fingerprint != s3.fingerprint
    keys = set(zip(s1.meta["a"][0::2], s1.meta["b"][0::2], s1.meta["shown"][0::2], strict=True))
    assert len(keys) == 2000


def test_difficulty_quartiles_match_the_population():
    # Monte Carlo of the operand distribution vs the closed-form CDF behind easy/hard.
    rows = sample_rows(np.random.default_rng(0), 200_000, "train")
    d = np.minimum(rows.a, rows.b)
    assert (EASY_MAX, HARD_MIN) == (2, 31)
    for k in (1, 2, 5, 30, 31, 100):
        assert abs(np.mean(d <= k) - difficulty_cdf(k)) < 0.005
    assert np.mean(d <= EASY_MAX) >= 0.25 > np.mean(d <= EASY_MAX - 1)
    assert np.mean(d >= HARD_MIN) >= 0.25 - 0.005


def _surface(shown: np.ndarray) -> dict[str, np.ndarray]:
    shown = np.maximum(shown, 1)  # a distractor can be 0
    nd = np.floor(np.log10(shown)).astype(int) + 1
    return {"length": nd, "leading digit": shown // 10 ** (nd - 1), "last digit": shown % 10}


@pytest.mark.parametrize("subset", ["bob", "bob_hard"])
def test_surface_heuristics_are_near_chance_on_bob_prompts(test_set, subset):
    m = test_set.meta
    rows = (m["character"] == "Bob") & (m["hard"] if subset == "bob_hard" else True)
    for name, feature in _surface(m["shown"][rows]).items():
        score = auroc(torch.as_tensor(feature, dtype=torch.float64), test_set.truth[torch.as_tensor(rows)])
        assert abs(score - 0.5) < CHANCE_BAND, f"{name} predicts truth on {subset}: AUROC {score:.3f}"


def _same_leading_digit_auroc(shown: np.ndarray, s: np.ndarray, truth: np.ndarray) -> float:
    same = _surface(shown)["leading digit"] == _surface(s)["leading digit"]
    return auroc(torch.as_tensor(same, dtype=torch.float64), torch.as_tensor(truth))


def test_the_leading_digit_shortcut_is_weakened(test_set):
    """With the reference code's own-answer distractors, 'c has the true sum's leading digit' decides
    truth on Bob prompts; with distractors from either sum it is much weaker, and on the control set
    (c is the sum or a corruption of it) it is far from decisive."""
    rng = np.random.default_rng(0)
    rows = sample_rows(rng, 20000, "test")
    pick = rng.integers(0, 3, len(rows))  # Bob's own crosstab: true sum, sloppy sum, own-answer distractor
    own = quirky._corrupt_one_digit(rng, rows.s_b)
    shown = np.select([pick == 0, pick == 1], [rows.s, rows.s_b], own)
    keep = (pick < 2) | ((own != rows.s) & (own != rows.s_b))
    leaky = _same_leading_digit_auroc(shown[keep], rows.s[keep], (shown == rows.s)[keep])
    m = test_set.meta
    bob = m["character"] == "Bob"
    ours = _same_leading_digit_auroc(m["shown"][bob], m["sum"][bob], m["alice_label"][bob])
    control = bob & m["control"]
    ours_control = _same_leading_digit_auroc(m["shown"][control], m["sum"][control], m["alice_label"][control])
    assert leaky > 0.97, leaky
    assert ours < 0.92, ours
    assert ours_control < 0.75, ours_control


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        quirky_arithmetic(10, split="dev")
    with pytest.raises(ValueError, match="n must be >= 1"):
        quirky_arithmetic(0)


def test_the_four_digit_variant_is_the_same_task_with_wider_numbers():
    data = quirky_arithmetic(3000, split="test", digits=4)
    m = data.meta
    assert all(re.fullmatch(r"\d{4}\+\d{4}=\d{5}\.(Alice|Bob):", t) for t in data.texts)
    assert m["a"].max() > 999 and m["a"].max() <= 9999
    assert np.array_equal(m["alice_label"], m["shown"] == m["a"] + m["b"])
    assert np.array_equal(m["bob_label"], m["shown"] == m["sloppy_sum"])
    easy_max, hard_min = quartile_bounds(4)
    assert (easy_max, hard_min) == (3, 99)
    assert np.array_equal(m["hard"], np.minimum(m["a"], m["b"]) >= hard_min)
    assert 0.15 < m["hard"].mean() < 0.35 and 0.15 < m["easy"].mean() < 0.35  # quartiles, up to sampling
    train = quirky_arithmetic(3000, split="train", digits=4).meta
    pairs = lambda x: set(zip(np.minimum(x["a"], x["b"]), np.maximum(x["a"], x["b"]), strict=True))  # noqa: E731
    assert not pairs(train) & pairs(m)  # the splits share no pair
    with pytest.raises(ValueError, match=r"operands have \(3, 4\) digits"):
        quirky_arithmetic(10, digits=5)
