"""Mass-mean reporters: the class-mean difference (mean-diff) and its whitened form (LDA).

Marks & Tegmark (arXiv 2310.06824): theta = mu_true - mu_false. Read out directly it generalizes out of
distribution; whitened by the pooled within-class covariance (``Sigma^-1 theta``, the "IID" form) it
equals LDA. Either way the direction fixes only an axis: the scale and bias of the log-odds, and so the
sign, come from a 1-D logistic fit (Platt scaling) on the training rows.
"""

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from elk_lens._checks import check_training_data
from elk_lens.reporters.base import Reporter
from elk_lens.reporters.platt import platt_reporter

__all__ = ["fit_lda", "fit_mean_diff"]

_PINV_ATOL = 1e-3  # as in geometry-of-truth's IID probe (docs/methods/elk_methods.md §3.5)


def fit_mean_diff(
    x: Float[Tensor, "batch d_model"], y: Bool[Tensor, " batch"], *, site: str, provenance: dict | None = None
) -> Reporter:
    """Read out along the class-mean difference itself (the out-of-distribution form)."""
    x64, y = check_training_data(x, y, site)
    theta = x64[y].mean(0) - x64[~y].mean(0)
    return platt_reporter(theta, x64, y, method="mean_diff", site=site, provenance=provenance)


def fit_lda(
    x: Float[Tensor, "batch d_model"], y: Bool[Tensor, " batch"], *, site: str, provenance: dict | None = None
) -> Reporter:
    """Read out along ``pinv(Sigma_within) theta`` (the IID form, equal to two-class LDA)."""
    x64, y = check_training_data(x, y, site)
    mu_true, mu_false = x64[y].mean(0), x64[~y].mean(0)
    centred = torch.where(y[:, None], x64 - mu_true, x64 - mu_false)
    sigma = centred.T @ centred / x64.shape[0]
    direction = torch.linalg.pinv(sigma, hermitian=True, atol=_PINV_ATOL) @ (mu_true - mu_false)
    return platt_reporter(direction, x64, y, method="lda", site=site, provenance=provenance)
