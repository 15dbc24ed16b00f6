"""L-BFGS over a batch of independent problems, each with its own history, step and stopping point.

CCS restarts are independent problems of the same shape. Summing their losses into one L-BFGS run
couples them through a shared line search and curvature history (measured: it needs more iterations
than running them one by one). Here every quantity L-BFGS keeps — the (s, y) pairs, the two-loop
coefficients, the step length, convergence — is per problem, so the batched run follows, row by row,
the same algorithm a loop over single problems follows; only the arithmetic is batched.

The line search is backtracking with the Armijo condition (strong-Wolfe searches branch per problem
and do not batch); curvature pairs with ``s . y <= 0`` are skipped, which keeps the inverse-Hessian
estimate positive definite.
"""

from collections.abc import Callable

import torch
from jaxtyping import Float
from torch import Tensor

from elk_lens._checks import check_number

__all__ = ["batched_lbfgs"]

_ARMIJO_C1 = 1e-4
_MAX_BACKTRACKS = 30


def _two_loop(g: Tensor, s_hist: list[Tensor], y_hist: list[Tensor], rho_hist: list[Tensor]) -> Tensor:
    """``-H g`` per row by the L-BFGS two-loop recursion (rho = 0 marks a skipped pair for that row)."""
    q = g.clone()
    alphas = []
    for s, y, rho in zip(reversed(s_hist), reversed(y_hist), reversed(rho_hist), strict=True):
        alpha = rho * (s * q).sum(1)
        q -= alpha[:, None] * y
        alphas.append(alpha)
    if s_hist:
        s, y, rho = s_hist[-1], y_hist[-1], rho_hist[-1]
        gamma = torch.where(rho > 0, (s * y).sum(1) / (y * y).sum(1).clamp_min(1e-30), torch.ones_like(rho))
        q *= gamma[:, None]
    for s, y, rho, alpha in zip(s_hist, y_hist, rho_hist, reversed(alphas), strict=True):
        beta = rho * (y * q).sum(1)
        q += (alpha - beta)[:, None] * s
    return -q


def batched_lbfgs(
    value_and_grad: Callable[
        [Float[Tensor, "problem p"]], tuple[Float[Tensor, " problem"], Float[Tensor, "problem p"]]
    ],
    x0: Float[Tensor, "problem p"],
    *,
    max_iter: int = 1000,
    history_size: int = 10,
    tolerance_grad: float = 1e-6,
    tolerance_change: float = 1e-9,
) -> tuple[Float[Tensor, "problem p"], Float[Tensor, " problem"]]:
    """Minimize ``f`` row by row, given ``value_and_grad(x) = (f(x), df/dx)``: one function applied to
    every row independently (``f(x)[i]`` depends on ``x[i]`` only), accepting any number of rows,
    because the line search evaluates only the rows still searching.

    Returns the minimizers and the iterations each row took. A row stops when its gradient's max
    entry is below ``tolerance_grad``, its loss changes by less than ``tolerance_change``, or no
    backtracking step decreases it.
    """
    if not isinstance(x0, Tensor) or x0.ndim != 2 or not x0.is_floating_point():
        raise TypeError(
            f"x0 must be a floating tensor [problem, p]; got {type(x0).__name__} "
            f"{tuple(getattr(x0, 'shape', ()))} {getattr(x0, 'dtype', '')}"
        )
    check_number("max_iter", max_iter, kind=int, low=1)
    check_number("history_size", history_size, kind=int, low=1)
    check_number("tolerance_grad", tolerance_grad, low=0)
    check_number("tolerance_change", tolerance_change, low=0)
    x = x0.detach().clone()
    value, grad = value_and_grad(x)
    active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    iters = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    s_hist: list[Tensor] = []
    y_hist: list[Tensor] = []
    rho_hist: list[Tensor] = []
    active &= grad.abs().amax(1) > tolerance_grad
    for it in range(max_iter):
        if not active.any():
            break
        direction = _two_loop(grad, s_hist, y_hist, rho_hist)
        slope = (grad * direction).sum(1)
        not_descent = slope >= 0
        direction[not_descent] = -grad[not_descent]  # a stale curvature estimate: fall back to the gradient
        slope = (grad * direction).sum(1)
        step = torch.ones_like(value) if it else (1 / grad.abs().sum(1)).clamp(max=1.0)  # torch's first step
        pending = active.clone()
        new_x, new_value, new_grad = x.clone(), value.clone(), grad.clone()
        for _ in range(_MAX_BACKTRACKS):
            rows = pending.nonzero().squeeze(1)  # evaluate only the rows still searching
            trial = x[rows] + step[rows, None] * direction[rows]
            t_value, t_grad = value_and_grad(trial)
            ok = t_value <= value[rows] + _ARMIJO_C1 * step[rows] * slope[rows]
            done = rows[ok]
            new_x[done], new_value[done], new_grad[done] = trial[ok], t_value[ok], t_grad[ok]
            pending[done] = False
            if not pending.any():
                break
            step = torch.where(pending, step / 2, step)
        stalled = pending  # no decrease found: this row is at its minimum to working precision
        moved = active & ~stalled
        s, y = new_x - x, new_grad - grad
        sy = (s * y).sum(1)
        rho = torch.where(moved & (sy > 1e-10), 1 / sy.clamp_min(1e-10), torch.zeros_like(sy))
        s_hist.append(s * (rho > 0)[:, None])
        y_hist.append(y * (rho > 0)[:, None])
        rho_hist.append(rho)
        if len(s_hist) > history_size:
            s_hist.pop(0), y_hist.pop(0), rho_hist.pop(0)
        change = (value - new_value).abs()
        x = torch.where(moved[:, None], new_x, x)
        value = torch.where(moved, new_value, value)
        grad = torch.where(moved[:, None], new_grad, grad)
        iters += moved.long()
        active &= ~stalled & (change > tolerance_change) & (grad.abs().amax(1) > tolerance_grad)
    return x.detach(), iters
