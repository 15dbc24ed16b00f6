"""Platt scaling: turn a direction into calibrated log-odds, with scale, bias and sign fitted on train.

Every direction-finding method (mean-diff, LDA, CCS, CRC, VINC) fixes only an axis. A 1-D logistic
fit on the training rows' projections supplies the scale, the bias and the sign (elk's PlattMixin;
docs/methods/elk_methods.md §3.0). Evaluation labels never enter: no ``max(acc, 1 - acc)``.
"""

from jaxtyping import Bool, Float
from torch import Tensor

from elk_lens.reporters.base import Reporter
from elk_lens.reporters.logistic import logistic_regression

__all__ = ["platt_reporter"]

_PLATT_C = 1e6  # effectively unpenalized: one scale and one bias, fitted on the training rows


def platt_reporter(
    direction: Float[Tensor, " d_model"],
    x: Float[Tensor, "batch d_model"],
    y: Bool[Tensor, " batch"],
    *,
    method: str,
    site: str,
    provenance: dict | None = None,
    reads: str = "statement",
) -> Reporter:
    """Reporter with readout ``a * direction`` and bias ``b`` from a 1-D logistic fit on ``(x, y)``.

    ``x`` is what the reporter reads: statement residuals, or pair differences ``x_true - x_false``
    for a contrast reporter. The concept vector ``v`` is the class-mean difference of ``x``.
    """
    scale, bias = logistic_regression((x @ direction)[:, None], y, C=_PLATT_C)
    theta = x[y].mean(0) - x[~y].mean(0)
    return Reporter(scale[0] * direction, bias, theta, method, site, dict(provenance or {}), reads)
