"""LEACE concept erasure (Belrose et al., arXiv 2306.03819) through the ``concept-erasure`` package.

Fitted on training rows only and then frozen: the eraser removes every linear trace of the concept
from those rows' distribution, so a probe re-fitted after erasure should fall to chance.
"""

import torch
from concept_erasure import LeaceEraser
from jaxtyping import Bool, Float
from torch import Tensor

from elk_lens._checks import check_number, check_training_data

__all__ = ["fit_leace"]


def fit_leace(
    x: Float[Tensor, "batch d_model"],
    y: Bool[Tensor, " batch"],
    *,
    site: str = "activations",
    constrain_cov_trace: bool = False,
    shrinkage: bool = False,
    svd_tol: float = 1e-12,
) -> LeaceEraser:
    """A frozen LEACE eraser for the binary concept ``y`` (float64; apply with ``eraser(x)``).

    With both options off (our defaults) this is the paper's closed form on the sample covariance.
    The package's defaults turn both on: ``constrain_cov_trace`` blends toward an orthogonal
    projection whenever the closed form would raise the covariance trace (stabler under repeated
    erasure), and ``shrinkage`` shrinks the covariance estimate (helps when rows are few for the width).
    ``svd_tol`` is the singular value of the whitened cross-covariance below which a concept direction is
    left alone; the package's 0.01 would leave a weak but real binary concept unerased, so ours is tiny.
    """
    check_number("svd_tol", svd_tol, low=0)
    for name, flag in (("constrain_cov_trace", constrain_cov_trace), ("shrinkage", shrinkage)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False; got {flag!r}")
    x64, y = check_training_data(x, y, site)
    z = y.to(torch.float64)[:, None]
    return LeaceEraser.fit(x64, z, constrain_cov_trace=constrain_cov_trace, shrinkage=shrinkage, svd_tol=svd_tol)
