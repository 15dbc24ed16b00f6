"""LEACE: the package's eraser equals the closed form for a binary concept and guards linearly."""

import numpy as np
import torch

from elk_lens.erasure import fit_leace
from elk_lens.metrics import auroc
from elk_lens.reporters import fit_logistic

CLOSED_FORM_TOL = 1e-8  # float64 on both sides


def _data(seed=0, n=3000, d=6):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    mix = rng.normal(size=(d, d))
    x = rng.normal(size=(n, d)) @ mix + np.outer(y, rng.normal(size=d) * 2)
    return torch.as_tensor(x), torch.as_tensor(y)


def test_leace_equals_the_closed_form_for_a_binary_concept():
    x, y = _data()
    eraser = fit_leace(x, y)
    mu = x.mean(0)
    xc = x - mu
    sigma = xc.T @ xc / (x.shape[0] - 1)
    evals, evecs = torch.linalg.eigh(sigma)
    w = evecs @ torch.diag(evals.rsqrt()) @ evecs.T  # Sigma^-1/2
    w_inv = evecs @ torch.diag(evals.sqrt()) @ evecs.T
    z = y.double()
    sigma_xz = xc.T @ (z - z.mean()) / (x.shape[0] - 1)  # one column for a binary concept
    u = w @ sigma_xz
    proj = torch.outer(u, u) / (u @ u)
    expected = x - (w_inv @ proj @ w @ xc.T).T
    assert (eraser(x) - expected).abs().max() < CLOSED_FORM_TOL


def test_a_probe_refitted_after_erasure_falls_to_chance():
    x, y = _data(1)
    before = auroc(fit_logistic(x[:2000], y[:2000], site="s")(x[2000:]), y[2000:])
    eraser = fit_leace(x[:2000], y[:2000])  # fitted on train rows only
    erased = eraser(x)
    after = auroc(fit_logistic(erased[:2000], y[:2000], site="s")(erased[2000:]), y[2000:])
    assert before > 0.9 and abs(after - 0.5) < 0.05, (before, after)
    class_means = erased[:2000][y[:2000]].mean(0) - erased[:2000][~y[:2000]].mean(0)
    assert class_means.abs().max() < 1e-8  # no linear trace left on the rows it was fitted on
