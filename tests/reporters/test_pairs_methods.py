"""Contrast-pair methods (CCS, CRC-TPC, VINC), their shared pieces, and the batched L-BFGS under CCS.

Oracles: closed-form minimizers and a loop over single problems (``batched_lbfgs``); autograd (the CCS
gradient); a planted truth direction in synthetic pairs (every method); numpy recomputations
(``BurnsNorm``) and the binary LEACE closed form (``pseudo_label_erasure``); and Farquhar et al.'s
distractor theorem (arXiv 2312.10029), asserted as the known failure it is
(docs/methods/elk_methods.md §1, §2.1, §3.0-3.3, §9).
"""

import inspect
import json

import numpy as np
import pytest
import torch

from elk_lens.metrics import auroc
from elk_lens.reporters import Reporter, fit_ccs, fit_crc, fit_logistic, fit_vinc
from elk_lens.reporters.batched_lbfgs import batched_lbfgs
from elk_lens.reporters.ccs import ccs_loss, ccs_restarts, ccs_value_and_grad
from elk_lens.reporters.pairs import MIN_PAIRS, BurnsNorm, check_pairs, pseudo_label_erasure

F64 = torch.float64
D = 16
METHODS = {"ccs": fit_ccs, "crc": fit_crc, "vinc": fit_vinc}

# --- tolerances -------------------------------------------------------------------------------------
# Quadratics: rows stop at max|grad| < 1e-10; the Hessians' eigenvalues are >= 0.5, so the distance to
# the minimizer is <= 2e-10 * sqrt(p). 1e-6 leaves room for any blocking of the float64 arithmetic.
QUAD_TOL = 1e-6
# Batched vs one row alone: per row the algorithm is the same and only the matmul batch shape differs,
# so the two agree to rounding (measured: bit-identical); 1e-8 would still catch one differing step.
ALONE_TOL = 1e-8
ROSEN_TOL = 1e-6  # Rosenbrock stops at max|grad| < 1e-10; its Hessian at (1, 1) has eigenvalues 0.4 and 1002
GRAD_TOL = 1e-12  # closed-form vs autograd gradient, both float64 on O(1) values
PLANTED_COS = 0.95  # recovered direction vs the planted one (measured 0.999+ for all three methods)
AUROC_MIN = 0.95  # test-set AUROC on fresh pairs of the planted problem (measured 1.0)
# Vectorized vs sequential restarts in float64: the same per-row algorithm (measured: losses 3e-15 and
# probes 3e-13 apart); the loose bounds only say "the same optimum", robust to one rounding-flipped step.
RESTART_LOSS_TOL = 1e-6
RESTART_COS = 0.999
# Platt on flipped labels is the mirrored logistic problem, solved from the same zero start: scores negate
# up to the L-BFGS stopping tolerance, relative to the largest score (measured 2e-11)
FLIP_TOL = 1e-8
FOLD_TOL = 1e-9  # 1 - |corr| of the reporter's scores with the chosen restart's logit difference (float64 fold)
DISTRACTOR_GAP = 0.4  # |AUROC(scores, coin) - 0.5| > 0.4: the method reads the coin (measured 0.5 for all three)
TRUTH_LOST = 0.7  # ... and its truth AUROC stays near chance (measured 0.50-0.55 over seeds)
# "lost most of truth": test AUROC below this; measured 0.56-0.75 over seeds (the erasure's oblique readout
# is part noise, so a remnant of truth survives), against 1.0 with the answer offset and for CCS
IMBALANCED_LOST = 0.85
BURNS_TOL = 1e-12  # torch float64 vs numpy float64 of the same means and standard deviations
ERASE_MEAN_TOL = 1e-10  # LEACE equalizes the pseudo-label class means exactly, up to float64 rounding
CLOSED_FORM_TOL = 1e-8  # the package's eigh-based eraser vs the closed form with a linear solve (test_erasure.py)
FP64_COS_TOL = 1e-9  # one axis computed two ways in float64 (covariance-first vs row by row; eigh vs SVD)


def _cos(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=F64), torch.as_tensor(b, dtype=F64)
    return float(a @ b / (a.norm() * b.norm()))


# --- synthetic contrast pairs -------------------------------------------------------------------------


def _geometry(seed: int = 0) -> dict[str, np.ndarray]:
    """Orthonormal directions: truth t, distractor u, three nuisance axes, and the answer-token axis.

    They are orthogonal on purpose. A consistent CCS probe must be blind to the nuisance (it moves both
    halves together), so a nuisance overlapping t would tilt even the exact optimum away from t; and
    CRC/VINC read the raw difference through the oblique pseudo-label eraser, which moves a readout
    along the answer-token offset's readout whenever that offset overlaps t.
    """
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(D, 6)))
    return {"t": q[:, 0], "u": q[:, 1], "nuisance": q[:, 2:5].T * 3.0, "answer": q[:, 5] * 1.5}


def _signs(rng, n: int, positive: float = 0.5) -> np.ndarray:
    """Exactly round(positive * n) signs +1, the rest -1, shuffled. Balanced truth keeps truth out of the
    pseudo-label class-mean gap (see test_crc_and_vinc_lose_truth_when_labels_are_imbalanced...)."""
    return rng.permutation(np.where(np.arange(n) < round(positive * n), 1.0, -1.0))


def _pairs(
    seed: int, n: int = 400, *, distractor: float = 0.0, answer_offset: bool = True, truth_fraction: float = 0.5
):
    """Contrast pairs x_true = base + a_T + tau k t + noise, x_false = base + a_F - tau k t + noise.

    tau = +-1 is truth, k ~ U(0.5, 1.5) a per-statement strength, ``base`` a label-independent nuisance
    (scale 3, the SAME in both halves: a property of the statement, not of the appended answer),
    a_T = -a_F the appended answer token's own offset, and fresh isotropic noise per half. With
    ``distractor`` = h > 0, a coin s = +-1 independent of truth adds s h u to x_true and subtracts it
    from x_false: a negation-consistent feature, the premise of Farquhar et al.'s theorem.
    """
    g, rng = _geometry(), np.random.default_rng(seed)
    tau, coin = _signs(rng, n, truth_fraction), _signs(rng, n)
    k = rng.uniform(0.5, 1.5, n)
    base = rng.normal(size=(n, 3)) @ g["nuisance"]
    answer = g["answer"] if answer_offset else np.zeros(D)
    signal = (tau * k)[:, None] * g["t"] + (coin * distractor)[:, None] * g["u"]
    x_true = base + answer + signal + 0.1 * rng.normal(size=(n, D))
    x_false = base - answer - signal + 0.1 * rng.normal(size=(n, D))
    return torch.as_tensor(x_true), torch.as_tensor(x_false), torch.as_tensor(tau > 0), torch.as_tensor(coin > 0)


# --- batched L-BFGS -------------------------------------------------------------------------------------

N_QUAD, P_QUAD = 6, 5


def _quadratics(seed: int = 0):
    """Per-row strictly convex quadratics f_i(z) = 1/2 (z - c_i)^T A_i (z - c_i) and starting points.

    ``batched_lbfgs`` evaluates only the rows still searching, so one ``value_and_grad`` must serve any
    subset of rows (see test_a_per_row_function_family_is_not_supported). Each row therefore carries its
    problem index as a last coordinate with zero gradient: L-BFGS never moves it (its gradient, curvature
    pairs and hence search direction are all zero there), and the function reads it to pick (A_i, c_i).
    """
    gen = torch.Generator().manual_seed(seed)
    b = torch.randn(N_QUAD, P_QUAD, P_QUAD, generator=gen, dtype=F64)
    a = b @ b.transpose(1, 2) + 0.5 * torch.eye(P_QUAD, dtype=F64)  # eigenvalues >= 0.5
    c = torch.randn(N_QUAD, P_QUAD, generator=gen, dtype=F64)

    def value_and_grad(x):
        idx = x[:, -1].long()
        r = x[:, :-1] - c[idx]
        ar = torch.einsum("bij,bj->bi", a[idx], r)
        return 0.5 * (r * ar).sum(1), torch.cat([ar, torch.zeros_like(x[:, -1:])], 1)

    z0 = torch.randn(N_QUAD, P_QUAD, generator=gen, dtype=F64)
    z0[0] = c[0]  # row 0 starts at its minimizer
    x0 = torch.cat([z0, torch.arange(N_QUAD, dtype=F64)[:, None]], 1)
    return value_and_grad, x0, c


def test_batched_lbfgs_reaches_each_rows_closed_form_minimizer():
    value_and_grad, x0, c = _quadratics()
    x, iters = batched_lbfgs(value_and_grad, x0, tolerance_grad=1e-10, tolerance_change=0.0)
    assert (x[:, :-1] - c).abs().max() < QUAD_TOL
    assert torch.equal(x[:, -1], x0[:, -1])  # the problem tags never moved
    # rows converge independently: the row that starts at its optimum takes no step while the others iterate
    assert iters[0] == 0 and (iters[1:] > 0).all(), iters
    assert torch.equal(x[0], x0[0])


def test_batched_lbfgs_equals_running_each_row_alone():
    value_and_grad, x0, _ = _quadratics(1)
    kw = dict(tolerance_grad=1e-10, tolerance_change=0.0)
    x, iters = batched_lbfgs(value_and_grad, x0, **kw)
    alone = [batched_lbfgs(value_and_grad, x0[i : i + 1], **kw) for i in range(N_QUAD)]
    assert (x - torch.cat([xa for xa, _ in alone])).abs().max() < ALONE_TOL
    assert iters.tolist() == [int(it) for _, it in alone]  # same number of steps, row by row


def _rosenbrock(x):
    a, b = x[:, 0], x[:, 1]
    value = (1 - a) ** 2 + 100 * (b - a * a) ** 2
    grad = torch.stack([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)], 1)
    return value, grad


def test_batched_lbfgs_solves_rosenbrock_from_every_start():
    x0 = torch.tensor([[-1.2, 1.0], [0.0, 0.0], [2.0, 2.0], [-0.5, 1.5], [1.0, 1.0]], dtype=F64)
    x, iters = batched_lbfgs(_rosenbrock, x0, tolerance_grad=1e-10, tolerance_change=0.0)
    assert (x - 1).abs().max() < ROSEN_TOL, x
    assert iters[-1] == 0 and (iters[:-1] > 0).all()  # (1, 1) is the optimum: no step taken there


def test_batched_lbfgs_respects_max_iter():
    x0 = torch.tensor([[-1.2, 1.0], [2.0, 2.0]], dtype=F64)
    _, iters = batched_lbfgs(_rosenbrock, x0, max_iter=3)
    assert iters.tolist() == [3, 3]


# --- CCS loss, gradient, restarts -------------------------------------------------------------------------


@pytest.mark.parametrize("weight_decay", [0.0, 0.01, 0.5])
def test_ccs_value_and_grad_equals_autograd(weight_decay):
    gen = torch.Generator().manual_seed(3)
    n, d, restarts = 30, 7, 5
    z_true, z_false = torch.randn(n, d, generator=gen, dtype=F64), torch.randn(n, d, generator=gen, dtype=F64)
    params = torch.randn(restarts, d + 1, generator=gen, dtype=F64)
    p = torch.sigmoid(params[:, :-1] @ torch.cat([z_true, z_false]).T + params[:, -1:])
    assert ((p[:, :n] - p[:, n:]).abs() > 1e-6).all()  # no ties of p_true and p_false: min() is differentiable

    value, grad = ccs_value_and_grad(params, torch.cat([z_true, z_false]), weight_decay)
    leaf = params.clone().requires_grad_(True)
    ref = ccs_loss(leaf[:, :-1], leaf[:, -1], z_true, z_false) + weight_decay / 2 * leaf[:, :-1].square().sum(1)
    (ref_grad,) = torch.autograd.grad(ref.sum(), leaf)  # restarts are independent: the sum's gradient is per row
    assert (value - ref.detach()).abs().max() < GRAD_TOL
    assert (grad - ref_grad).abs().max() < GRAD_TOL


def test_vectorized_restarts_equal_sequential_restarts():
    x_true, x_false, _, _ = _pairs(5, n=200)
    z_true, z_false = BurnsNorm.fit(x_true, x_false)(x_true, x_false)
    vec = ccs_restarts(z_true, z_false, n_restarts=6, seed=2, vectorized=True)
    seq = ccs_restarts(z_true, z_false, n_restarts=6, seed=2, vectorized=False)
    assert vec.theta.dtype == F64
    assert (vec.loss - seq.loss).abs().max() < RESTART_LOSS_TOL
    for r in range(6):
        assert _cos(vec.theta[r], seq.theta[r]) > RESTART_COS
    assert vec.best == seq.best
    # the reported loss is the unregularized one, evaluated at the returned probes
    assert torch.allclose(vec.loss, ccs_loss(vec.theta, vec.bias, z_true, z_false), rtol=0, atol=1e-15)


def test_fit_ccs_folds_the_chosen_restart_into_one_contrast_readout():
    """Scores = a * (logit(z_true) - logit(z_false)) + b for the lowest-loss restart: the class means of the
    Burns normalization cancel into the bias, and the scale is one scalar."""
    x_true, x_false, y, _ = _pairs(6, n=200)
    rep = fit_ccs(x_true, x_false, y, site="s", n_restarts=5, seed=4)
    norm = BurnsNorm.fit(x_true, x_false)
    z_true, z_false = (z.float() for z in norm(x_true, x_false))
    fit = ccs_restarts(z_true, z_false, n_restarts=5, seed=4)
    assert rep.provenance["chosen_restart"] == fit.best == int(np.argmin(rep.provenance["restart_losses"]))
    theta = fit.theta[fit.best].double()
    logit_gap = (norm(x_true, x_false)[0] - norm(x_true, x_false)[1]) @ theta
    corr = np.corrcoef(rep(x_true, x_false).numpy(), logit_gap.numpy())[0, 1]
    assert 1 - abs(corr) < FOLD_TOL


def test_ccs_restarts_rejects_no_restarts():
    z = torch.randn(8, 3, dtype=F64)
    with pytest.raises(ValueError, match="n_restarts must be >= 1, got 0"):
        ccs_restarts(z, -z, n_restarts=0)


# --- every pair method on the planted problem ------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_each_method_recovers_the_planted_truth_direction(method):
    x_true, x_false, y, _ = _pairs(1)
    rep = METHODS[method](x_true, x_false, y, site="blocks.0.hook_resid_pre")
    assert rep.reads == "contrast" and rep.method == method
    # signed: Platt fixed the sign on the training labels, so no |cos| and no max(auc, 1 - auc)
    assert _cos(rep.w, _geometry()["t"]) > PLANTED_COS
    test_true, test_false, test_y, _ = _pairs(2)
    assert auroc(rep(test_true, test_false), test_y) > AUROC_MIN


def test_crc_and_vinc_equal_their_definitions_in_numpy():
    """CRC: the top right singular vector of the erased, centred differences; VINC: the top eigenvector of the
    erased objective, with the variance term (var_weight > 0) — recomputed row by row in numpy float64."""
    x_true, x_false, y, _ = _pairs(5, n=300)
    erase = pseudo_label_erasure(*(t.double() for t in (x_true, x_false))).numpy()
    xt, xf = x_true.double().numpy(), x_false.double().numpy()
    erased = (xt - xf) @ erase
    crc_axis = erase @ np.linalg.svd(erased - erased.mean(0), full_matrices=False)[2][0]
    ct, cf = xt - xt.mean(0), xf - xf.mean(0)
    objective = 0.3 * (ct.T @ ct + cf.T @ cf) / (2 * len(xt)) - 0.5 * (cf.T @ ct + ct.T @ cf) / (2 * len(xt))
    vinc_axis = erase @ np.linalg.eigh(erase.T @ objective @ erase)[1][:, -1]
    for rep, axis in (
        (fit_crc(x_true, x_false, y, site="s"), crc_axis),
        (fit_vinc(x_true, x_false, y, site="s", var_weight=0.3), vinc_axis),
    ):
        assert abs(_cos(rep.w, torch.from_numpy(axis))) > 1 - FP64_COS_TOL, rep.method


@pytest.mark.parametrize("method", METHODS)
def test_the_sign_comes_from_the_training_labels_only(method):
    fit = METHODS[method]
    x_true, x_false, y, _ = _pairs(3, n=200)
    test_true, test_false, test_y, _ = _pairs(4, n=200)
    rep, flipped = fit(x_true, x_false, y, site="s"), fit(x_true, x_false, ~y, site="s")
    scores, flipped_scores = rep(test_true, test_false), flipped(test_true, test_false)
    assert (scores + flipped_scores).abs().max() < FLIP_TOL * scores.abs().max()
    assert auroc(flipped_scores, test_y) == pytest.approx(1 - auroc(scores, test_y), abs=1e-12)
    # labels enter only through Platt scaling: other labels give the same axis
    shuffled = torch.as_tensor(np.random.default_rng(0).permutation(y.numpy()))
    assert abs(_cos(fit(x_true, x_false, shuffled, site="s").w, rep.w)) > 1 - 1e-9
    # and no evaluation data can enter: the fit sees the training pairs, their labels and hyperparameters
    params = inspect.signature(fit).parameters
    assert list(params)[:3] == ["x_true", "x_false", "y"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in list(params.values())[3:])
    assert set(params) <= {
        "x_true",
        "x_false",
        "y",
        "site",
        "provenance",
        "n_restarts",
        "seed",
        "weight_decay",
        "var_weight",
        "neg_cov_weight",
        "threads",  # torch's thread count for the call: compute, not data
    }


@pytest.mark.parametrize("method", METHODS)
def test_a_negation_consistent_distractor_captures_the_unsupervised_methods(method):
    """Farquhar et al., Thm 1 in action: a coin s (independent of truth) that flips with the appended answer
    and is larger than the truth feature is as consistent as truth and more confident, and it is the top
    principal component of the differences; so CCS, CRC and VINC report the coin. Supervised logistic
    regression on the same differences still finds truth. This documents a known failure of the methods."""
    x_true, x_false, y, _ = _pairs(7, distractor=3.0)
    test_true, test_false, test_y, test_coin = _pairs(8, distractor=3.0)
    scores = METHODS[method](x_true, x_false, y, site="s")(test_true, test_false)
    assert abs(auroc(scores, test_coin) - 0.5) > DISTRACTOR_GAP
    assert auroc(scores, test_y) < TRUTH_LOST  # Platt cannot rescue truth from a coin readout
    supervised = fit_logistic(x_true - x_false, y, site="s")
    assert auroc(supervised(test_true - test_false), test_y) > AUROC_MIN


@pytest.mark.parametrize("method", ["crc", "vinc"])
def test_crc_and_vinc_lose_truth_when_labels_are_imbalanced_and_halves_share_no_answer_offset(method):
    """A method property, documented: with 70% true statements, the pseudo-label class means differ by
    2 (2 pi - 1) E[k] t, i.e. along truth. When nothing else separates the halves (no answer-token
    offset, e.g. features already centred per half), erasing the pseudo-label erases most of truth, and
    CRC/VINC drop from AUROC 1.0 towards chance. With an answer-token offset (as real appended tokens
    give) the gap lies mostly along it and truth survives. CCS, which centres each half instead of
    erasing, is unaffected."""

    def truth_auroc(fit, answer_offset: bool) -> float:
        x_true, x_false, y, _ = _pairs(10, answer_offset=answer_offset, truth_fraction=0.7)
        test_true, test_false, test_y, _ = _pairs(11, answer_offset=answer_offset, truth_fraction=0.7)
        return auroc(fit(x_true, x_false, y, site="s")(test_true, test_false), test_y)

    assert truth_auroc(METHODS[method], answer_offset=False) < IMBALANCED_LOST
    assert truth_auroc(METHODS[method], answer_offset=True) > AUROC_MIN
    assert truth_auroc(fit_ccs, answer_offset=False) > AUROC_MIN


# --- shared pieces: Burns normalization, pseudo-label erasure, input checks -----------------------------


def test_burns_norm_matches_a_numpy_recomputation():
    x_true, x_false, _, _ = _pairs(12, n=100)
    a, b = x_true.numpy(), x_false.numpy()
    mean_t, mean_f = a.mean(0), b.mean(0)
    scale = np.concatenate([np.sqrt(((a - mean_t) ** 2).mean(0)), np.sqrt(((b - mean_f) ** 2).mean(0))]).mean()
    norm = BurnsNorm.fit(x_true, x_false)
    assert norm.scale == pytest.approx(scale, rel=BURNS_TOL, abs=0)
    np.testing.assert_allclose(norm.mean_true.numpy(), mean_t, rtol=0, atol=BURNS_TOL)
    np.testing.assert_allclose(norm.mean_false.numpy(), mean_f, rtol=0, atol=BURNS_TOL)
    z_true, z_false = norm(x_true, x_false)
    assert z_true.mean(0).abs().max() < BURNS_TOL and z_false.mean(0).abs().max() < BURNS_TOL  # each class centred
    # frozen: new pairs are normalized with the training statistics, not their own
    new_true, new_false, _, _ = _pairs(13, n=50)
    got_true, got_false = norm(new_true, new_false)
    np.testing.assert_allclose(got_true.numpy(), (new_true.numpy() - mean_t) / scale, rtol=0, atol=BURNS_TOL)
    np.testing.assert_allclose(got_false.numpy(), (new_false.numpy() - mean_f) / scale, rtol=0, atol=BURNS_TOL)


def test_pseudo_label_erasure_equalizes_class_means_and_is_the_binary_leace_closed_form():
    x_true, x_false, _, _ = _pairs(14, n=300)
    erase = pseudo_label_erasure(x_true, x_false)
    assert ((x_true @ erase).mean(0) - (x_false @ erase).mean(0)).abs().max() < ERASE_MEAN_TOL
    assert (x_true - x_false).mean(0).norm() > 1.0  # there was a gap to erase (the answer offset, norm 3)

    stacked = torch.cat([x_false, x_true])
    delta = x_true.mean(0) - x_false.mean(0)
    centred = stacked - stacked.mean(0)
    within = torch.cat([x_false - x_false.mean(0), x_true - x_true.mean(0)])
    covariances = {  # r(x) = x - delta [delta^T S^-1 (x - mu)] / [delta^T S^-1 delta]
        "population 1/n": centred.T @ centred / len(stacked),
        "sample 1/(n-1) (concept-erasure's, shrinkage off)": centred.T @ centred / (len(stacked) - 1),
        "pooled within-class": within.T @ within / len(stacked),
    }
    # The closed form is invariant to scaling S (it appears in numerator and denominator), so both
    # normalizations match; and total = within + pi (1 - pi) delta delta^T, whose inverse maps delta to a
    # multiple of within^-1 delta (Sherman-Morrison), so the within-class covariance matches as well.
    for name, sigma in covariances.items():
        readout = torch.linalg.solve(sigma, delta)
        expected = torch.eye(D, dtype=F64) - torch.outer(readout, delta) / (delta @ readout)  # row convention
        assert (erase - expected).abs().max() < CLOSED_FORM_TOL, name


def test_pseudo_label_erasure_erases_a_weak_pseudo_label():
    rng = np.random.default_rng(15)
    x_true, x_false = (torch.as_tensor(rng.normal(size=(400, 8))) for _ in range(2))
    x_true = x_true - x_true.mean(0) + 0.03 * torch.eye(8, dtype=F64)[0]  # a small, exact gap along axis 0
    x_false = x_false - x_false.mean(0)
    erase = pseudo_label_erasure(x_true, x_false)
    assert ((x_true @ erase).mean(0) - (x_false @ erase).mean(0)).abs().max() < ERASE_MEAN_TOL


def _valid_pairs(n: int = 8):
    x_true, x_false, y, _ = _pairs(16, n=n)
    return x_true, x_false, y


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "case, match",
    [
        ("shapes", r"pair halves differ in shape, \(8, 16\) vs \(8, 15\)"),
        ("missing_true", "contrast-pair method: it needs x_true and x_false"),
        ("missing_false", "contrast-pair method: it needs x_true and x_false"),
        ("one_class", "needs both classes in the training labels"),
        ("nan_true", "contain NaN or inf"),
        ("nan_false", "contain NaN or inf"),
        ("few_pairs", f"needs at least {MIN_PAIRS} contrast pairs, got {MIN_PAIRS - 1}"),
        ("label_count", r"must be \[n, d_model\] with n labels"),
    ],
)
def test_bad_pairs_raise_a_clear_error(method, case, match):
    x_true, x_false, y = _valid_pairs()
    if case == "shapes":
        x_false = x_false[:, :-1]
    elif case == "missing_true":
        x_true = None
    elif case == "missing_false":
        x_false = None
    elif case == "one_class":
        y = torch.ones_like(y)
    elif case == "nan_true":
        x_true = x_true.clone()
        x_true[2, 3] = float("nan")
    elif case == "nan_false":
        x_false = x_false.clone()
        x_false[5, 0] = float("nan")
    elif case == "few_pairs":
        x_true, x_false, y = x_true[: MIN_PAIRS - 1], x_false[: MIN_PAIRS - 1], torch.tensor([True, False, True])
    elif case == "label_count":
        y = y[:-1]
    with pytest.raises(ValueError, match=match):
        METHODS[method](x_true, x_false, y, site="s")
    if method == "ccs":  # the shared checker names the method it guards
        with pytest.raises(ValueError, match=match):
            check_pairs(x_true, x_false, y, "s", "CCS")


def test_method_specific_hyperparameter_errors():
    x_true, x_false, y = _valid_pairs()
    for weight in (-0.1, 1.5):
        with pytest.raises(ValueError, match=f"neg_cov_weight must lie in \\[0, 1\\], got {weight}"):
            fit_vinc(x_true, x_false, y, site="s", neg_cov_weight=weight)
    with pytest.raises(ValueError, match="n_restarts must be >= 1, got 0"):
        fit_ccs(x_true, x_false, y, site="s", n_restarts=0)


def test_vinc_refuses_an_all_zero_objective():
    x_true, x_false, y, _ = _pairs(17, n=100)
    with pytest.raises(ValueError, match="objective"):
        fit_vinc(x_true, x_false, y, site="s", var_weight=0.0, neg_cov_weight=0.0)


# --- the contrast Reporter ---------------------------------------------------------------------------------


def test_contrast_reporter_call_conventions():
    gen = torch.Generator().manual_seed(18)
    w, x_true, x_false = (torch.randn(*shape, generator=gen, dtype=F64) for shape in ((D,), (5, D), (5, D)))
    rep = Reporter(w, 0.25, w.clone(), "ccs", "blocks.0.hook_resid_pre", {}, "contrast")
    assert torch.allclose(rep(x_true, x_false), (x_true - x_false) @ w + 0.25, rtol=0, atol=1e-14)
    assert torch.allclose(rep(x_true.float(), x_false.float()), rep(x_true, x_false), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="reads 'contrast': pass both halves of each contrast pair"):
        rep(x_true)
    statement = Reporter(w, 0.25, w.clone(), "logistic", "blocks.0.hook_resid_pre")
    assert statement.reads == "statement"
    with pytest.raises(ValueError, match="reads 'statement': pass statement activations only"):
        statement(x_true, x_false)
    with pytest.raises(ValueError, match=f"d_model={D} .* width {D + 1}"):
        rep(x_true, torch.randn(5, D + 1, dtype=F64))  # the false half is checked too
    with pytest.raises(ValueError, match="reads must be one of"):
        Reporter(w, 0.0, w, "ccs", "s", {}, "pairs")


def test_contrast_reporter_save_load_round_trip(tmp_path):
    x_true, x_false, y, _ = _pairs(19, n=100)
    rep = fit_crc(x_true, x_false, y, site="blocks.1.hook_resid_post", provenance={"seed": 3})
    loaded = Reporter.load(rep.save(tmp_path / "crc"))
    assert loaded.reads == "contrast" and loaded.method == "crc" and loaded.provenance == rep.provenance
    assert torch.equal(loaded(x_true, x_false), rep(x_true, x_false))
    with pytest.raises(ValueError, match="pass both halves"):
        loaded(x_true)
    # a reporter saved before `reads` existed loads as a statement reporter
    meta_path = tmp_path / "crc" / "reporter.json"
    meta = json.loads(meta_path.read_text())
    for key in ("reads", "files", "tensors", "content_sha256"):  # format 1: no checksums, no dtype record
        del meta[key]
    meta_path.write_text(json.dumps({**meta, "format_version": 1}))
    assert Reporter.load(tmp_path / "crc").reads == "statement"
