"""Maps between models with no exact growth relation, fitted on paired activations of the same inputs.

Two models that share a tokenizer (two sizes of one family, or a grown model after further training)
read the same statements; their residuals at chosen sites pair row by row. An affine map
``x' ≈ G x + c`` fitted on those pairs stands in for the growth map: least squares in general,
orthogonal Procrustes at equal width (a rotation, so distances and angles are kept). The relative
residual says how much of the target the map cannot explain; report it beside every transported result.
"""

import torch
from jaxtyping import Float
from torch import Tensor

from elk_lens._checks import check_number
from elk_lens.growth.map import GrowthMap

__all__ = ["fit_growth_map"]

METHODS = ("lstsq", "procrustes")


def fit_growth_map(
    source: Float[Tensor, "batch d_model"],
    target: Float[Tensor, "batch d_model_new"],
    *,
    source_site: str,
    target_site: str,
    source_model: str,
    target_model: str,
    method: str = "lstsq",
    ridge: float = 0.0,
) -> GrowthMap:
    """Fit ``target ≈ source @ Gᵀ + c`` (centred, in float64) and return it as a non-exact `GrowthMap`
    from ``source_site`` to ``target_site``.

    ``method="lstsq"``: ridge-regularized least squares (``ridge`` times the mean eigenvalue of the
    source covariance; 0 for plain least squares). ``"procrustes"``: the orthogonal G closest to the
    cross-covariance (equal widths only). ``info["residual"]`` is ``‖A'_c − A_c Gᵀ‖_F / ‖A'_c‖_F`` on
    the fitted rows; measure held-out quality by scoring reporters on other rows.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    check_number("ridge", ridge, low=0)  # a negative ridge can make the normal equations singular or indefinite
    for name, acts in (("source", source), ("target", target)):
        if not isinstance(acts, Tensor) or not acts.is_floating_point():
            raise TypeError(
                f"{name} must be a floating tensor [batch, d_model]; got {getattr(acts, 'dtype', type(acts).__name__)}"
            )
    if source.ndim != 2 or target.ndim != 2 or len(source) != len(target):
        raise ValueError(f"need paired [batch, d] activations; got {tuple(source.shape)} and {tuple(target.shape)}")
    for name, acts in (("source", source), ("target", target)):
        if not torch.isfinite(acts).all():
            raise ValueError(f"{name} activations contain NaN or inf")
    d, d_new = source.shape[1], target.shape[1]
    if d_new < d:
        raise ValueError(f"a growth map goes to a model at least as wide: {d} -> {d_new}")
    if method == "procrustes" and d != d_new:
        raise ValueError(f"procrustes needs equal widths, got {d} and {d_new}; use method='lstsq'")
    if len(source) <= d and method == "lstsq" and ridge == 0:
        raise ValueError(f"{len(source)} pairs cannot determine a {d}-wide least-squares map; add rows or a ridge")
    a, b = source.double(), target.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    a_c, b_c = a - mu_a, b - mu_b
    if method == "procrustes":
        u, _, vh = torch.linalg.svd(a_c.T @ b_c)
        G = (u @ vh).T
    else:
        gram = a_c.T @ a_c
        lam = ridge * float(torch.diagonal(gram).mean())
        G = torch.linalg.solve(gram + lam * torch.eye(d, dtype=gram.dtype), a_c.T @ b_c).T
    residual = float(torch.linalg.norm(b_c - a_c @ G.T) / torch.linalg.norm(b_c))
    return GrowthMap(
        G,
        (),
        (),
        source_model,
        target_model,
        exact=False,
        ops=(f"fit_growth_map({source_site} -> {target_site}, {method})",),
        offset=mu_b - G @ mu_a,
        sites={source_site: target_site},
        info={"residual": residual, "method": method, "ridge": ridge, "rows": len(a)},
    )
