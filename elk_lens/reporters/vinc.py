"""VINC (elk ``EigenReporter``): the top eigenvector of a variance/invariance/negative-covariance objective.

``A = var_weight * Sigma_inter - (1 - neg_cov_weight) * Sigma_intra - neg_cov_weight * X`` where
``Sigma_inter`` is the covariance of each class's residuals, ``Sigma_intra`` the covariance across
templates (zero here: one template per set), and ``X`` the symmetrized cross-covariance between the two
halves of each pair. A truth direction makes the halves anti-correlated (``x_true`` and ``x_false``
sit on opposite sides), so it maximizes ``-X``. ``A`` is restricted to what is left once the
pseudo-label is LEACE-erased, and Platt scaling on training labels fixes sign and scale.
"""

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from elk_lens._checks import check_number
from elk_lens.reporters.base import Reporter
from elk_lens.reporters.pairs import check_pairs, pseudo_label_erasure
from elk_lens.reporters.platt import platt_reporter

__all__ = ["fit_vinc"]


def fit_vinc(
    x_true: Float[Tensor, "batch d_model"] | None,
    x_false: Float[Tensor, "batch d_model"] | None,
    y: Bool[Tensor, " batch"],
    *,
    site: str,
    var_weight: float = 0.0,
    neg_cov_weight: float = 0.5,
    provenance: dict | None = None,
) -> Reporter:
    """VINC with elk's final defaults (``var_weight=0``, ``neg_cov_weight=0.5``).

    ``var_weight >= 0``: a negative weight would reward directions along which the classes do *not* vary.
    """
    check_number("var_weight", var_weight, low=0)
    check_number("neg_cov_weight", neg_cov_weight)
    if not 0 <= neg_cov_weight <= 1:
        raise ValueError(f"neg_cov_weight must lie in [0, 1], got {neg_cov_weight}")
    if var_weight == 0 and neg_cov_weight == 0:
        raise ValueError("var_weight and neg_cov_weight are both 0: with one template the VINC objective is zero")
    x_true, x_false, y = check_pairs(x_true, x_false, y, site, "VINC")
    n = x_true.shape[0]
    c_true, c_false = x_true - x_true.mean(0), x_false - x_false.mean(0)
    cross = c_false.T @ c_true / n
    objective = -neg_cov_weight * (cross + cross.T) / 2  # Sigma_intra = 0 with one template
    if var_weight:  # two [n, d] products skipped at elk's default var_weight = 0
        objective = objective + var_weight * (c_true.T @ c_true + c_false.T @ c_false) / (2 * n)
    erase = pseudo_label_erasure(x_true, x_false)
    _, vectors = torch.linalg.eigh(erase.T @ objective @ erase)
    direction = erase @ vectors[:, -1]
    info = {"var_weight": var_weight, "neg_cov_weight": neg_cov_weight}
    return platt_reporter(
        direction,
        x_true - x_false,
        y,
        method="vinc",
        site=site,
        provenance={**info, **(provenance or {})},
        reads="contrast",
    )
