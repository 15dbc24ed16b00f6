"""Contrast-Consistent Search (Burns et al., arXiv 2212.03827), with elk's optimizer and restarts.

A linear probe ``p(x) = sigmoid(theta . z + c)`` on Burns-normalized pair halves ``z`` is trained,
without labels, to be consistent (``p(x_true) ~ 1 - p(x_false)``) and confident. The loss has many
optima — any binary feature of the question that flips with the appended answer is one (Farquhar et
al., arXiv 2312.10029) — so the restarts matter, and which feature was found must be checked, never
assumed. Labels enter only through Platt scaling on the training rows (sign, scale, bias).

Restarts run as one batched L-BFGS (``batched_lbfgs``): each restart keeps its own history, step
and stopping point, so the batch computes what a loop over restarts computes, in one pass per step.
"""

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from elk_lens._checks import check_number
from elk_lens._threads import torch_threads
from elk_lens.reporters.base import Reporter
from elk_lens.reporters.batched_lbfgs import batched_lbfgs
from elk_lens.reporters.pairs import BurnsNorm, check_pairs
from elk_lens.reporters.platt import platt_reporter

__all__ = ["CCSRestarts", "SMALL_SEARCH", "ccs_loss", "ccs_restarts", "ccs_value_and_grad", "fit_ccs"]

# Pairs x width up to which the restarts run on one torch thread unless told otherwise. Measured on 2 cores
# (benchmarks/threads_bench.py): at 2,048 x 128 and 2,048 x 576 a second thread gained 6% and 20% on a quiet
# machine and lost 3.6x and 2.9x beside one busy process. Above this size it is not measured: torch's setting.
SMALL_SEARCH = 2**21


@dataclass(frozen=True)
class CCSRestarts:
    """Every restart's probe on normalized inputs and its final unregularized CCS loss."""

    theta: Float[Tensor, "restart d_model"]
    bias: Float[Tensor, " restart"]
    loss: Float[Tensor, " restart"]

    @property
    def best(self) -> int:
        return int(self.loss.argmin())


def ccs_loss(
    theta: Float[Tensor, "restart d_model"],
    bias: Float[Tensor, " restart"],
    z_true: Float[Tensor, "batch d_model"],
    z_false: Float[Tensor, "batch d_model"],
) -> Float[Tensor, " restart"]:
    """Consistency + confidence (elk ``consistency_squared + confidence_squared``), per restart."""
    p_true = torch.sigmoid(z_true @ theta.T + bias)
    p_false = torch.sigmoid(z_false @ theta.T + bias)
    consistency = (p_false - (1 - p_true)).square().mean(0)
    confidence = torch.minimum(p_true, p_false).square().mean(0)
    return consistency + confidence


def ccs_value_and_grad(
    params: Float[Tensor, "restart d_model_plus_1"], stacked: Float[Tensor, "two_batch d_model"], weight_decay: float
) -> tuple[Float[Tensor, " restart"], Float[Tensor, "restart d_model_plus_1"]]:
    """Regularized CCS loss and its gradient in closed form, for ``params = [theta | bias]`` per restart.

    ``stacked`` is ``[z_true; z_false]``. Written out by hand (tested against autograd) because the
    restarts' cost is two thin matrix products per step, which autograd's bookkeeping would double.
    """
    n = stacked.shape[0] // 2
    theta, bias = params[:, :-1], params[:, -1]
    p = torch.sigmoid(theta @ stacked.T + bias[:, None])  # [restart, 2n]
    p_true, p_false = p[:, :n], p[:, n:]
    gap = p_true + p_false - 1
    low = torch.minimum(p_true, p_false)
    value = gap.square().mean(1) + low.square().mean(1) + weight_decay / 2 * theta.square().sum(1)
    true_is_low = p_true <= p_false
    d_p = (2 / n) * torch.cat([gap + torch.where(true_is_low, low, 0), gap + torch.where(true_is_low, 0, low)], 1)
    d_logit = d_p * p * (1 - p)
    grad = torch.cat([d_logit @ stacked + weight_decay * theta, d_logit.sum(1, keepdim=True)], 1)
    return value, grad


def _check_search(n_restarts: object, seed: object, weight_decay: object) -> None:
    """The restart search's settings, refused before any work: a negative weight decay rewards large probes."""
    check_number("n_restarts", n_restarts, kind=int)
    if n_restarts < 1:
        raise ValueError(f"n_restarts must be >= 1, got {n_restarts}")
    check_number("seed", seed, kind=int)
    check_number("weight_decay", weight_decay, low=0)


def ccs_restarts(
    z_true: Float[Tensor, "batch d_model"],
    z_false: Float[Tensor, "batch d_model"],
    *,
    n_restarts: int = 10,
    seed: int = 0,
    weight_decay: float = 0.01,
    max_iter: int = 1000,
    vectorized: bool = True,
) -> CCSRestarts:
    """Train ``n_restarts`` CCS probes from seeded random inits on normalized pair halves.

    ``vectorized=False`` runs the same inits one after another (for the benchmark and as an oracle).
    """
    _check_search(n_restarts, seed, weight_decay)
    check_number("max_iter", max_iter, kind=int, low=1)
    d = z_true.shape[1]
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.cat([torch.randn(n_restarts, d, generator=gen) / d**0.5, torch.zeros(n_restarts, 1)], 1)
    x0 = x0.to(z_true)  # the inits are drawn on the CPU (same seed, same inits on any device)

    stacked = torch.cat([z_true, z_false])

    def value_and_grad(x: Tensor) -> tuple[Tensor, Tensor]:
        return ccs_value_and_grad(x, stacked, weight_decay)

    if vectorized:
        x, _ = batched_lbfgs(value_and_grad, x0, max_iter=max_iter)
    else:
        x = torch.cat([batched_lbfgs(value_and_grad, x0[r : r + 1], max_iter=max_iter)[0] for r in range(n_restarts)])
    theta, bias = x[:, :d], x[:, d]
    with torch.no_grad():
        loss = ccs_loss(theta, bias, z_true, z_false)
    return CCSRestarts(theta, bias, loss)


def fit_ccs(
    x_true: Float[Tensor, "batch d_model"] | None,
    x_false: Float[Tensor, "batch d_model"] | None,
    y: Bool[Tensor, " batch"],
    *,
    site: str,
    n_restarts: int = 10,
    seed: int = 0,
    weight_decay: float = 0.01,
    provenance: dict | None = None,
    threads: int | None = None,
) -> Reporter:
    """CCS on training pairs: Burns normalization, restarts, the lowest unregularized loss wins.

    ``threads``: torch's intra-op threads for the search, set for this call only; None: one thread for
    small searches (pairs x width <= ``SMALL_SEARCH``, where more threads lose far more under load than
    they gain on an idle machine), else the caller's setting.

    The probe's pair score ``logit(x_true) - logit(x_false) = theta . (x_true - x_false) / scale`` (the
    class means cancel into the bias), which Platt scaling on ``(x_true - x_false, y)`` calibrates.
    """
    _check_search(n_restarts, seed, weight_decay)
    if threads is not None:
        check_number("threads", threads, kind=int, low=1)
    x_true, x_false, y = check_pairs(x_true, x_false, y, site, "CCS")
    norm = BurnsNorm.fit(x_true, x_false)
    # float32 for the search (activations are captured in float32; the restarts' losses agree with a
    # float64 search to ~1e-5) makes it 3x faster; the fold and Platt fit below stay in float64.
    z_true, z_false = (z.float() for z in norm(x_true, x_false))
    if threads is None and z_true.numel() <= SMALL_SEARCH:
        threads = 1
    with torch_threads(threads):
        fit = ccs_restarts(z_true, z_false, n_restarts=n_restarts, seed=seed, weight_decay=weight_decay)
    best = fit.best
    info = {
        "n_restarts": n_restarts,
        "seed": seed,
        "weight_decay": weight_decay,
        "norm": "burns",
        "restart_losses": [round(float(v), 6) for v in fit.loss],
        "chosen_restart": best,
    }
    return platt_reporter(
        fit.theta[best].double() / norm.scale,
        x_true - x_false,
        y,
        method="ccs",
        site=site,
        provenance={**info, **(provenance or {})},
        reads="contrast",
    )
