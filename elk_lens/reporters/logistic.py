"""Logistic-regression reporter: L2-penalized, fitted by L-BFGS in float64 on standardized features."""

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from elk_lens._checks import check_number, check_training_data
from elk_lens.reporters.base import Reporter

__all__ = ["fit_logistic", "logistic_regression"]


def logistic_regression(
    x: Float[Tensor, "batch d"], y: Bool[Tensor, " batch"], *, C: float = 1.0, max_iter: int = 500
) -> tuple[Float[Tensor, " d"], float]:
    """Minimize ``0.5 |w|^2 + C * sum_i logloss_i`` (scikit-learn's objective; bias unpenalized).

    Returns ``(w, b)`` in float64. Deterministic: L-BFGS from zero with strong-Wolfe line search.
    ``C`` must be positive: ``C = 0`` divides the penalty by zero, a negative ``C`` rewards large weights.
    """
    check_number("C", C, low=0, low_open=True)
    check_number("max_iter", max_iter, kind=int, low=1)
    x = x.to(torch.float64)
    y = y.to(torch.float64)
    n, d = x.shape
    params = torch.zeros(d + 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [params], lr=1, max_iter=max_iter, tolerance_grad=1e-10, tolerance_change=1e-14,
        history_size=20, line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure() -> Tensor:
        opt.zero_grad()
        logits = x @ params[:d] + params[d]
        # the objective divided by n*C, so tolerances do not depend on the sample size
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y) + params[:d].square().sum() / (2 * C * n)
        loss.backward()
        return loss

    opt.step(closure)
    return params[:d].detach(), float(params[d].detach())


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
