"""Transfer metrics (docs/methods/elk_methods.md §6.4-6.5): EIL on hand-computed cases, PGR's closed form, and the
bootstrap interval of PGR against the AUROCs computed independently (``auroc`` and scikit-learn)."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from elk_lens.metrics import auroc
from elk_lens.transfer import EIL_THRESHOLD, earliest_informative_layer, pgr, pgr_interval

NAN = float("nan")
AUROC_TOL = 1e-12  # the same Mann-Whitney count in float64 on both sides
PGR_TOL = 1e-12  # pgr of those AUROCs: one subtraction and one division more


# --------------------------------------------------------------------------- earliest informative layer


def _reference_eil(values, threshold=EIL_THRESHOLD) -> int:
    """EG ``viz.earliest_informative_layer``, restated with numpy: NaN sites never qualify."""
    a = np.asarray(values, dtype=float)
    best = np.nanmax(a)
    if best < 0.5:
        return len(a) // 2
    ok = np.where(np.isnan(a), False, a - 0.5 >= threshold * (best - 0.5))
    return int(np.argmax(ok))


@pytest.mark.parametrize(
    "aurocs, expected",
    [
        ([0.5, 0.7, 0.9, 0.95, 1.0], 4),  # cutoff 0.5 + 0.95 * 0.5 = 0.975: only the last site
        ([0.6, 0.879, 0.881, 0.9, 0.89], 2),  # cutoff 0.5 + 0.95 * 0.4 = 0.88
        ([0.99, 0.6, 1.0], 0),  # the first qualifying site, not the best one (0.49 >= 0.475)
        ([0.7, 0.9, 0.8, 0.9], 1),  # a tie at the top: the first of them
        ([0.3, 0.5, 0.4], 1),  # best exactly chance: the cutoff is 0, the first site at 0.5 qualifies
        ([0.4, 0.3, 0.45, 0.2, 0.1], 2),  # best below chance: the middle site, len // 2
        ([0.4, 0.3, 0.45, 0.2], 2),  # even length: len // 2 is the upper middle
        ([NAN, 0.9, NAN, 0.95], 3),  # NaN skipped; cutoff 0.5 + 0.95 * 0.45 = 0.9275
        ([NAN, 0.95, 0.6], 1),
        ([NAN, 0.4, 0.3, NAN], 2),  # below chance: the middle index counts the NaN sites too (as EG)
        ([0.8], 0),
    ],
)
def test_eil_on_hand_computed_cases(aurocs, expected):
    assert earliest_informative_layer(aurocs) == expected
    assert _reference_eil(aurocs) == expected  # the restated reference agrees with the hand computation


def test_eil_threshold_is_inclusive():
    """AUROC - 0.5 >= t * (max - 0.5): exactly at the cutoff qualifies (binary-exact numbers: 0.625 - 0.5
    == 0.5 * (0.75 - 0.5) with no rounding), just below it does not."""
    assert earliest_informative_layer([0.5, 0.625, 0.75], threshold=0.5) == 1
    assert earliest_informative_layer([0.5, 0.624, 0.75], threshold=0.5) == 2
    assert earliest_informative_layer([0.5, 0.625, 0.75], threshold=1.0) == 2  # only the best itself
    assert earliest_informative_layer([0.5, 0.625, 0.75], threshold=0.0) == 0  # anything at chance or above


def test_eil_matches_the_reference_on_random_curves():
    rng = np.random.default_rng(0)
    for _ in range(300):
        a = rng.uniform(0.2, 1.0, int(rng.integers(1, 12)))
        a[rng.random(a.size) < 0.2] = NAN
        if np.isnan(a).all():
            continue
        t = float(rng.choice([EIL_THRESHOLD, 0.5, 0.8]))
        assert earliest_informative_layer(a.tolist(), threshold=t) == _reference_eil(a, t), a


def test_eil_without_a_defined_auroc_raises():
    with pytest.raises(ValueError, match="at least one defined AUROC"):
        earliest_informative_layer([NAN, NAN])
    with pytest.raises(ValueError, match="at least one defined AUROC"):
        earliest_informative_layer([])


# --------------------------------------------------------------------------- PGR


def test_pgr_closed_form():
    # binary-exact values: every result below is exact, so == is the right comparison
    assert pgr(0.75, 0.5, 1.0) == 0.5
    assert pgr(0.5, 0.5, 1.0) == 0.0  # no gap recovered
    assert pgr(1.0, 0.5, 1.0) == 1.0  # all of it
    assert pgr(0.625, 0.75, 1.0) == -0.5  # below the floor: negative, not clipped
    assert pgr(1.0, 0.5, 0.75) == 2.0  # above the ceiling: > 1, not clipped
    assert pgr(0.75, 1.0, 0.5) == 0.5  # an inverted gap is still the same ratio
    assert pgr(0.8, 0.6, 0.9) == pytest.approx((0.8 - 0.6) / (0.9 - 0.6), abs=PGR_TOL)


def test_pgr_with_equal_floor_and_ceiling_is_nan():
    assert math.isnan(pgr(0.7, 0.6, 0.6))
    assert math.isnan(pgr(0.6, 0.6, 0.6))


# --------------------------------------------------------------------------- PGR interval


def _scores(n: int, shift: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced labels; positives shifted by ``shift`` standard deviations (AUROC ~ Phi(shift / sqrt 2))."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2 == 0
    return torch.randn(n, generator=gen, dtype=torch.float64) + shift * labels, labels


def _problem(n: int, seed: int = 0):
    """floor AUROC ~0.64, transfer ~0.76, ceiling ~0.92: a well-separated, well-behaved gap."""
    return _scores(n, 1.0, seed), _scores(n, 0.5, seed + 1), _scores(n, 2.0, seed + 2)


def test_pgr_interval_point_estimate_is_pgr_of_the_three_aurocs():
    transfer, floor, ceiling = _problem(300)
    out = pgr_interval(transfer, floor, ceiling, n_resamples=200, seed=0)
    ours = [auroc(s, y) for s, y in (transfer, floor, ceiling)]
    sk = [roc_auc_score(y.numpy(), s.numpy()) for s, y in (transfer, floor, ceiling)]
    got = [out["transfer_auroc"], out["floor_auroc"], out["ceiling_auroc"]]
    assert max(abs(a - b) for a, b in zip(got, ours, strict=True)) < AUROC_TOL
    assert max(abs(a - b) for a, b in zip(got, sk, strict=True)) < AUROC_TOL
    assert abs(out["pgr"] - pgr(*sk)) < PGR_TOL
    assert 0 < out["pgr"] < 1, "the test problem is meant to sit between its floor and ceiling"


def test_pgr_interval_contains_the_point_and_is_seeded():
    transfer, floor, ceiling = _problem(300)
    out = pgr_interval(transfer, floor, ceiling, n_resamples=300, seed=3)
    assert out["low"] < out["pgr"] < out["high"]
    assert pgr_interval(transfer, floor, ceiling, n_resamples=300, seed=3) == out
    other = pgr_interval(transfer, floor, ceiling, n_resamples=300, seed=4)
    assert other["pgr"] == out["pgr"] and (other["low"], other["high"]) != (out["low"], out["high"])
    inner = pgr_interval(transfer, floor, ceiling, n_resamples=300, seed=3, level=0.5)
    assert out["low"] < inner["low"] < inner["high"] < out["high"]  # same resamples, nested quantiles


def test_pgr_interval_narrows_as_n_grows():
    small = pgr_interval(*_problem(100), n_resamples=300, seed=0)
    large = pgr_interval(*_problem(1600), n_resamples=300, seed=0)
    # width ~ 1/sqrt(n): 16x the rows, about 1/4 the width
    assert (large["high"] - large["low"]) < 0.5 * (small["high"] - small["low"])


def test_pgr_interval_accepts_unequal_sizes_and_one_class_raises():
    (ts, ty), (fs, fy), (cs, cy) = _problem(200)
    out = pgr_interval((ts[:150], ty[:150]), (fs, fy), (cs[:90], cy[:90]), n_resamples=100)
    assert abs(out["transfer_auroc"] - auroc(ts[:150], ty[:150])) < AUROC_TOL
    with pytest.raises(ValueError, match="both classes"):
        pgr_interval((ts, torch.ones_like(ty)), (fs, fy), (cs, cy), n_resamples=50)
