"""Logistic-regression reporter: L2-penalized, fitted in float64 on standardized features by Newton-Cholesky
(L-BFGS-B where there are fewer rows than features)."""

import numpy as np
import torch
from jaxtyping import Bool, Float
from scipy.optimize import minimize
from scipy.special import expit
from torch import Tensor

from elk_lens._checks import check_number, check_training_data
from elk_lens.reporters.base import Reporter

__all__ = ["fit_logistic", "logistic_regression"]

_LBFGS_MAX_ITER = 15_000  # the wide problems' L-BFGS: far above the few hundred steps they take


def logistic_regression(
    x: Float[Tensor, "batch d"], y: Bool[Tensor, " batch"], *, C: float = 1.0, max_iter: int = 100, tol: float = 1e-10
) -> tuple[Float[Tensor, " d"], float]:
    """Minimize ``0.5 |w|^2 + C * sum_i logloss_i`` (scikit-learn's objective; bias unpenalized).

    Returns ``(w, b)`` in float64. Solved by Newton's method with a Cholesky solve of the Hessian and a
    backtracking (Armijo) line search — scikit-learn's ``newton-cholesky`` solver. The objective is strictly
    convex, so Newton converges from zero to the unique optimum, quadratically near it: 10-30 steps where
    L-BFGS took hundreds (each step costs one ``n d^2`` Hessian, cheap at residual widths; see
    ``benchmarks/logistic_fit.py``). Stops when the largest gradient entry of the objective divided by
    ``n C`` is at most ``tol``. With fewer rows than features (n < d + 1) it runs scipy's L-BFGS-B to the same
    tolerance instead (``_lbfgs``). ``C`` must be positive: ``C = 0`` divides the penalty by zero, a negative
    ``C`` rewards large weights.
    """
    check_number("C", C, low=0, low_open=True)
    check_number("max_iter", max_iter, kind=int, low=1)
    check_number("tol", tol, low=0, low_open=True)
    n, d = x.shape
    xb = torch.cat([x.to(torch.float64), torch.ones(n, 1, dtype=torch.float64)], dim=1)
    y = y.to(torch.float64)
    penalty = torch.full((d + 1,), 1.0 / (C * n), dtype=torch.float64)
    penalty[d] = 0.0  # the bias is not penalized
    if n < d + 1:  # wide: the Hessian's rank is at most n, and each Newton step a (d+1)^3 solve
        params = _lbfgs(xb, y, penalty, tol)
        return params[:d], float(params[d])

    def objective(params: Tensor) -> tuple[float, Tensor]:
        # divided by n*C, so tolerances do not depend on the sample size
        logits = xb @ params
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y) + 0.5 * (penalty * params.square()).sum()
        return float(loss), logits

    params = torch.zeros(d + 1, dtype=torch.float64)
    loss, logits = objective(params)
    for _ in range(max_iter):
        prob = torch.sigmoid(logits)
        grad = xb.T @ (prob - y) / n + penalty * params
        if float(grad.abs().max()) <= tol:
            break
        hessian = (xb * (prob * (1 - prob) / n)[:, None]).T @ xb + torch.diag(penalty)
        step = _solve_positive(hessian, grad)
        decrease = float(grad @ step)  # > 0: the Newton step is a descent direction
        t = 1.0
        while True:
            candidate = params - t * step
            new_loss, new_logits = objective(candidate)
            if new_loss <= loss - 1e-4 * t * decrease or t < 1e-12:
                break
            t /= 2
        if new_loss > loss:  # no decrease left at machine precision: this is the optimum
            break
        params, loss, logits = candidate, new_loss, new_logits
    return params[:d], float(params[d])


def _lbfgs(xb: Tensor, y: Tensor, penalty: Tensor, tol: float) -> Tensor:
    """The same objective by scipy's L-BFGS-B (scikit-learn's ``lbfgs``), to the same gradient tolerance:
    with fewer rows than features a Newton step's Cholesky costs more than the whole L-BFGS run (480 × 576:
    0.20 s against 0.03 s; ``benchmarks/logistic_fit.py``)."""
    x, t, lam = xb.numpy(), y.numpy(), penalty.numpy()
    n = len(t)

    def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ params
        loss = float(np.mean(np.logaddexp(0, z) - t * z)) + 0.5 * float(lam @ params**2)
        return loss, x.T @ (expit(z) - t) / n + lam * params

    options = {"gtol": tol, "ftol": 0.0, "maxiter": _LBFGS_MAX_ITER}
    result = minimize(objective, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B", options=options)
    return torch.from_numpy(result.x)


def _solve_positive(matrix: Float[Tensor, "k k"], rhs: Float[Tensor, " k"]) -> Float[Tensor, " k"]:
    """``matrix^-1 rhs`` by Cholesky; when the bias row has lost its curvature (every logit saturated on
    separable data with a near-zero penalty) a ridge grown from 1e-12 of the mean diagonal restores it."""
    jitter = 0.0
    scale = float(matrix.diagonal().mean()) or 1.0
    eye = torch.eye(matrix.shape[0], dtype=matrix.dtype)
    while True:
        factor, info = torch.linalg.cholesky_ex(matrix + jitter * eye)
        if int(info) == 0:
            return torch.cholesky_solve(rhs[:, None], factor)[:, 0]
        if jitter > scale:
            raise ValueError(
                f"the logistic Hessian is not positive definite even with a ridge of {jitter:.3g} (NaN in x?)"
            )
        jitter = max(jitter * 100, scale * 1e-12)


def fit_logistic(
    x: Float[Tensor, "batch d_model"], y: Bool[Tensor, " batch"], *, site: str, C: float = 1.0, provenance=None
) -> Reporter:
    """Fit on features standardized with training statistics, then fold the scaling into ``(w, b)``.

    Standardizing makes the L2 penalty treat every residual direction alike; folding it back
    means the reporter reads the raw residual and carries no separate normalizer.
    """
    x64, y = check_training_data(x, y, site)
    mean, std = x64.mean(0), x64.std(0).clamp_min(1e-8)
    w_std, b_std = logistic_regression((x64 - mean) / std, y, C=C)
    w = w_std / std
    b = b_std - float(mean @ w)
    v = x64[y].mean(0) - x64[~y].mean(0)
    return Reporter(w, b, v, "logistic", site, {"C": C, **(provenance or {})})
