"""Logistic-regression reporter against scikit-learn."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from elk_lens.reporters import fit_lda, fit_logistic, fit_mean_diff
from elk_lens.reporters.logistic import logistic_regression

COEF_TOL = 1e-5  # both optimizers stop at gradient tolerances, not at the exact optimum
SCORE_TOL = 1e-4


def _problem(seed: int, n: int = 400, d: int = 12):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, d) + rng.normal(size=d)
    y = (x @ w + rng.normal(size=n) * 2) > np.median(x @ w)
    return x, y


@pytest.mark.parametrize("C", [0.05, 1.0])
def test_logistic_regression_matches_sklearn(C):
    x, y = _problem(0)
    ref = LogisticRegression(C=C, tol=1e-12, max_iter=10000).fit(x, y)
    w, b = logistic_regression(torch.as_tensor(x), torch.as_tensor(y), C=C)
    np.testing.assert_allclose(w.numpy(), ref.coef_[0], atol=COEF_TOL, rtol=COEF_TOL)
    assert abs(b - ref.intercept_[0]) < COEF_TOL


def test_logistic_regression_with_fewer_rows_than_width_matches_sklearn():
    """n < d (a truth set's train split at a residual layer): separable, so the optimum rests on the penalty
    alone; Newton's ridge-free Cholesky must still reach scikit-learn's optimum."""
    x, y = _problem(2, n=60, d=150)
    ref = LogisticRegression(C=1.0, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(x, y)
    w, b = logistic_regression(torch.as_tensor(x), torch.as_tensor(y))
    np.testing.assert_allclose(x @ w.numpy() + b, ref.decision_function(x), atol=SCORE_TOL, rtol=SCORE_TOL)


def test_logistic_regression_on_separable_data_with_almost_no_penalty_stays_finite():
    """TTPD and Platt scaling ask for C = 1e6 (scikit-learn's penalty=None): on separable rows the logits
    saturate and the bias loses its curvature; the ridge in the solve keeps every step finite."""
    x = torch.tensor([[-2.0], [-1.0], [1.0], [2.0]], dtype=torch.float64)
    y = torch.tensor([False, False, True, True])
    w, b = logistic_regression(x, y, C=1e6)
    assert torch.isfinite(w).all() and np.isfinite(b) and float(w[0]) > 0


def test_reporter_reads_the_raw_residual():
    """Standardization is folded into (w, b): scores on raw x equal sklearn's on standardized x."""
    x, y = _problem(1)
    mean, std = x.mean(0), x.std(0, ddof=1)
    ref = LogisticRegression(C=1.0, tol=1e-12, max_iter=10000).fit((x - mean) / std, y)
    rep = fit_logistic(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y), site="blocks.0.hook_resid_pre")
    ours = rep(torch.as_tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(ours, ref.decision_function((x - mean) / std), atol=SCORE_TOL, rtol=SCORE_TOL)
    expected_v = x[y].mean(0) - x[~y].mean(0)
    np.testing.assert_allclose(rep.v.numpy(), expected_v, rtol=1e-6)


def test_reporter_errors():
    x = torch.randn(10, 4)
    with pytest.raises(ValueError, match="needs both classes"):
        fit_logistic(x, torch.ones(10, dtype=torch.bool), site="s")
    bad = x.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        fit_logistic(bad, torch.arange(10) % 2 == 0, site="s")
    rep = fit_logistic(x, torch.arange(10) % 2 == 0, site="blocks.1.hook_resid_pre")
    with pytest.raises(ValueError, match="d_model=4 .* width 5"):
        rep(torch.randn(3, 5))


def test_save_load_round_trip_and_model_checks(tmp_path):
    import elk_lens as el
    from elk_lens.reporters import Reporter

    model = el.load_model("zoo:quirky-arith")
    data = el.quirky_arithmetic(300, split="val")
    acts = el.capture(model, data, ["blocks.3.hook_resid_pre"]).at(0)
    rep = fit_logistic(acts, data.truth, site="blocks.3.hook_resid_pre", provenance={"model": el.fingerprint(model)})
    loaded = Reporter.load(rep.save(tmp_path / "rep"))
    el.check_compatible(loaded, model)
    assert torch.equal(loaded(acts), rep(acts)) and torch.equal(loaded.v, rep.v) and loaded.site == rep.site
    other = el.load_model("zoo:quirky-arith-base")
    with pytest.raises(ValueError, match="was fitted on model .* pass allow_other_model=True"):
        el.check_compatible(loaded, other)
    el.check_compatible(loaded, other, allow_other_model=True)
    unrecorded = Reporter(rep.w, rep.b, rep.v, rep.method, rep.site)  # no provenance: cannot be checked
    with pytest.raises(ValueError, match=r"records no model fingerprint .* pass allow_other_model=True"):
        el.check_compatible(unrecorded, model)
    narrow = Reporter(rep.w[:64], rep.b, rep.v[:64], rep.method, rep.site, rep.provenance)
    with pytest.raises(ValueError, match="reads d_model=64 but the model has d_model=128"):
        el.check_compatible(Reporter.load(narrow.save(tmp_path / "narrow")), model, allow_other_model=True)
    with pytest.raises(TypeError, match="reporter must be a Reporter"):
        el.check_compatible(rep.w, model)
    with pytest.raises(FileNotFoundError, match="holds no saved reporter"):
        Reporter.load(tmp_path / "missing")


COSINE_TOL = 1e-6  # LDA direction vs scikit-learn's: both closed forms in float64


def _cos(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float(a @ b / (a.norm() * b.norm()))


def test_lda_matches_sklearn_and_mean_diff_reads_the_mean_difference():
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    from elk_lens.metrics import auroc
    from elk_lens.reporters import fit_lda, fit_mean_diff

    x, y = _problem(4, n=2000, d=8)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    ref = LinearDiscriminantAnalysis(solver="lsqr").fit(x, y)
    lda = fit_lda(xt, yt, site="s")
    assert _cos(lda.w, ref.coef_[0]) > 1 - COSINE_TOL
    md = fit_mean_diff(xt, yt, site="s")
    theta = x[y].mean(0) - x[~y].mean(0)
    assert _cos(md.w, theta) > 1 - COSINE_TOL and torch.allclose(md.v, torch.as_tensor(theta))
    for rep in (lda, md):  # Platt scaling: the sign and bias come from the training rows
        scores = rep(xt)
        assert auroc(scores, yt) > 0.5
        assert abs(float(torch.sigmoid(scores).mean()) - float(yt.double().mean())) < 0.01  # calibrated intercept


def test_random_direction_baseline_fixes_signs_on_train_only():
    from elk_lens.reporters import random_direction_baseline

    rng = np.random.default_rng(6)
    x = torch.as_tensor(rng.normal(size=(1000, 16)))
    y = torch.as_tensor(rng.random(1000) < 0.5)
    noise = random_direction_baseline(x[:500], y[:500], x[500:], y[500:], n_directions=500, seed=0)
    assert abs(noise["mean"] - 0.5) < 0.02 and noise["q0.05"] < 0.5 < noise["q0.95"]  # no signal: chance
    x_sig = x + 2.0 * y[:, None].double() * torch.as_tensor(rng.normal(size=16))
    signal = random_direction_baseline(x_sig[:500], y[:500], x_sig[500:], y[500:], n_directions=500, seed=0)
    assert signal["mean"] > 0.6  # a planted direction: most random readouts see some of it, right-signed
    assert random_direction_baseline(x[:500], y[:500], x[500:], y[500:], n_directions=500, seed=0) == noise
    # the sign is not chosen on the evaluation rows: flipping their labels mirrors the distribution
    flipped = random_direction_baseline(x_sig[:500], y[:500], x_sig[500:], ~y[500:], n_directions=500, seed=0)
    assert flipped["mean"] == pytest.approx(1 - signal["mean"]) and flipped["mean"] < 0.4
    assert flipped["q0.99"] == pytest.approx(1 - signal["q0.01"]) and flipped["q0.5"] == pytest.approx(
        1 - signal["q0.5"]
    )


@pytest.mark.parametrize("fit", [fit_logistic, fit_mean_diff, fit_lda])
def test_too_few_examples_of_a_class_is_a_clear_error(fit):
    x = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(10, dtype=torch.bool)
    y[0] = True  # one true example: no within-class spread to estimate
    with pytest.raises(ValueError, match="at least 2 training examples of each class; got 1 true and 9 false"):
        fit(x, y, site="blocks.0.hook_resid_pre")


@pytest.mark.parametrize("C", [0, -1.0, float("nan"), float("inf")])
def test_non_positive_or_non_finite_C_is_refused(C):
    """C = 0 divides the penalty by zero; C < 0 rewards large weights: both fitted nonsense before."""
    x = torch.randn(20, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.arange(20) % 2 == 0
    with pytest.raises(ValueError, match="C must"):
        fit_logistic(x, y, site="s", C=C)


def test_zero_one_float_labels_fit_like_bools():
    x = torch.randn(30, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.arange(30) % 3 == 0
    for fit in (fit_logistic, fit_mean_diff, fit_lda):
        a, b = fit(x, y, site="s"), fit(x, y.double(), site="s")
        assert torch.equal(a.w, b.w) and a.b == b.b
