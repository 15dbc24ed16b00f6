"""Gaussian anomaly detector (docs/methods/elk_methods.md §7) against SciPy's log-density, and a planted anomaly that
only the correlation between features reveals."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.metrics import roc_auc_score

from elk_lens.quirky import QuirkyScores, quirky_arithmetic, subset_mask
from elk_lens.quirky.anomaly import GaussianDetector, anomaly_auroc
from elk_lens.quirky.tables import anomaly_table

LOGPDF_TOL = 1e-9  # float64 Cholesky (torch) vs float64 LU/eigh (SciPy) of the same well-conditioned matrix
CAUGHT = 0.95  # AUROC the detector must reach on the planted anomaly (measured 0.976-0.995 over 10 seeds)
PLANT_NOISE = 0.02  # off-diagonal noise of the planted pairs; at 0.1 an anomalous row near z = 0 is too often
# indistinguishable from a trusted one and the full Gaussian drops to 0.89-0.95
CHANCE_BAND = 0.1  # |AUROC - 0.5| for the diagonal Gaussian, which sees only the (identical) marginals


def _correlated(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) + 2 * np.eye(d)
    return rng.normal(size=(n, d)) @ mix.T + rng.normal(size=d) * 3


def test_log_density_equals_scipy_with_the_sample_mean_and_unbiased_covariance():
    trusted, x = _correlated(200, 4, 0), _correlated(30, 4, 1)
    mean, cov = trusted.mean(0), np.cov(trusted.T, ddof=1)  # ddof=1: the unbiased estimate, as torch.cov
    assert np.allclose(cov, torch.cov(torch.as_tensor(trusted).T).numpy(), rtol=1e-12, atol=0)
    det = GaussianDetector(torch.as_tensor(trusted))
    ours = det(torch.as_tensor(x))
    want = multivariate_normal(mean, cov).logpdf(x)
    assert ours.dtype == torch.float64
    assert np.abs(ours.numpy() - want).max() < LOGPDF_TOL, f"drift {np.abs(ours.numpy() - want).max():.2e}"
    # float32 input is upcast before fitting and scoring: the same rows give the same fit
    det32 = GaussianDetector(torch.as_tensor(trusted, dtype=torch.float32))
    want32 = multivariate_normal(
        trusted.astype(np.float32).astype(float).mean(0), np.cov(trusted.astype(np.float32).astype(float).T)
    ).logpdf(x.astype(np.float32).astype(float))
    assert np.abs(det32(torch.as_tensor(x, dtype=torch.float32)).numpy() - want32).max() < LOGPDF_TOL


def test_subtract_diag_is_the_difference_of_two_log_densities():
    trusted, x = _correlated(200, 3, 2), _correlated(25, 3, 3)
    mean, cov = trusted.mean(0), np.cov(trusted.T)
    want = multivariate_normal(mean, cov).logpdf(x) - multivariate_normal(mean, np.diag(np.diag(cov))).logpdf(x)
    ours = GaussianDetector(torch.as_tensor(trusted), subtract_diag=True)(torch.as_tensor(x))
    assert np.abs(ours.numpy() - want).max() < LOGPDF_TOL


def _planted(n: int, rng: np.random.Generator, sign: float) -> np.ndarray:
    """x1 = z + e1, x2 = sign * z + e2: trusted rows have x1 ~ x2, anomalous ones x1 ~ -x2. Each feature
    is N(0, 1 + PLANT_NOISE**2) either way (z is symmetric), so the marginals are identical and only the
    sign of the correlation differs."""
    z = rng.normal(size=n)
    return np.stack([z + PLANT_NOISE * rng.normal(size=n), sign * z + PLANT_NOISE * rng.normal(size=n)], 1)


def test_a_planted_anomaly_is_caught_only_through_the_correlation():
    rng = np.random.default_rng(4)
    trusted, normal, anomalous = (torch.as_tensor(_planted(500, rng, s)) for s in (1.0, 1.0, -1.0))
    assert (normal.std(0) / anomalous.std(0) - 1).abs().max() < 0.1, "the marginals must match"
    full = GaussianDetector(trusted)
    caught = anomaly_auroc(full(normal), full(anomalous))
    assert caught > CAUGHT
    with_diag = GaussianDetector(trusted, subtract_diag=True)
    assert anomaly_auroc(with_diag(normal), with_diag(anomalous)) > CAUGHT
    # the same trusted rows through a diagonal Gaussian (SciPy, independent of the detector): chance
    mean, var = trusted.mean(0).numpy(), trusted.var(0).numpy()
    diag = multivariate_normal(mean, np.diag(var))
    blind = anomaly_auroc(torch.as_tensor(diag.logpdf(normal.numpy())), torch.as_tensor(diag.logpdf(anomalous.numpy())))
    assert abs(blind - 0.5) < CHANCE_BAND, f"diagonal Gaussian AUROC {blind:.3f}: the marginals leak the anomaly"


def test_anomaly_auroc_labels_normal_rows_positive():
    assert anomaly_auroc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0  # normal scores higher
    assert anomaly_auroc(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0])) == 0.0
    rng = np.random.default_rng(5)
    normal, anomalous = rng.normal(size=40) + 0.5, rng.normal(size=25)
    want = roc_auc_score(np.r_[np.ones(40), np.zeros(25)], np.r_[normal, anomalous])
    assert abs(anomaly_auroc(torch.as_tensor(normal), torch.as_tensor(anomalous)) - want) < 1e-12


@pytest.mark.parametrize(
    "trusted, message",
    [
        (torch.randn(3, 3, generator=torch.Generator().manual_seed(0)), "more trusted rows than features"),
        (torch.randn(2, 5, generator=torch.Generator().manual_seed(0)), "more trusted rows than features"),
        (torch.randn(10, generator=torch.Generator().manual_seed(0)), "more trusted rows than features"),
    ],
    ids=["rows == features", "rows < features", "1-d"],
)
def test_too_few_rows_raise(trusted, message):
    with pytest.raises(ValueError, match=message):
        GaussianDetector(trusted)


def test_nan_and_singular_covariance_raise():
    x = torch.as_tensor(_correlated(50, 3, 6))
    for bad_value in (float("nan"), float("inf")):
        bad = x.clone()
        bad[7, 1] = bad_value
        with pytest.raises(ValueError, match="NaN or inf"):
            GaussianDetector(bad)
    constant = x.clone()
    constant[:, 2] = 1.5
    with pytest.raises(ValueError, match="singular covariance"):
        GaussianDetector(constant)
    duplicated = torch.cat([x, x[:, :1]], 1)
    with pytest.raises(ValueError, match="singular covariance"):
        GaussianDetector(duplicated)


def test_the_anomaly_table_says_na_when_the_layers_outnumber_the_trusted_rows():
    """A deep model on a small test split: no more AE rows than layers leaves the covariance singular; the
    table says so instead of stopping the analysis."""
    test = quirky_arithmetic(40, split="test", seed=0)
    n_ae = int(subset_mask(test, "AE").sum())
    sites = [f"s{i}" for i in range(n_ae + 2)]  # the embedding site is dropped: n_ae + 1 features
    log_odds = {"AE/logistic": torch.randn(len(test), len(sites), generator=torch.Generator().manual_seed(0))}
    rows = anomaly_table(QuirkyScores(test, sites, log_odds, torch.zeros(len(test))))
    assert [r["score"] for r in rows] == ["log N", "log N - log N(diag)"]
    assert all(math.isnan(r["auroc"]) for r in rows)
    assert rows[0]["trusted rows"] == f"n/a: {n_ae} trusted (AE test) rows for {n_ae + 1} layers; raise data.test_rows"
