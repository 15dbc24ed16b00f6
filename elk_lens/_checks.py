"""Input checks shared by every fitter (reporters, erasers): one clear error per kind of bad input."""

import torch
from torch import Tensor

__all__ = ["MIN_PER_CLASS", "check_training_data"]

MIN_PER_CLASS = 2  # a class mean and a within-class spread need two rows


def check_training_data(x: Tensor, y: Tensor, site: str) -> tuple[Tensor, Tensor]:
    """Float64 activations and bool labels, or a clear error (one class, NaN/inf, shape mismatch)."""
    y = torch.as_tensor(y).bool()
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(
            f"activations at {site} must be [n, d_model] with n labels; got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if y.all() or not y.any():
        raise ValueError(f"fitting a reporter needs both classes in the training labels; got all {bool(y[0])}")
    n_true, n_false = int(y.sum()), int((~y).sum())
    if min(n_true, n_false) < MIN_PER_CLASS:
        raise ValueError(
            f"fitting a reporter needs at least {MIN_PER_CLASS} training examples of each class; got {n_true} true "
            f"and {n_false} false at {site}"
        )
    if not torch.isfinite(x).all():
        raise ValueError(f"activations at {site} contain NaN or inf")
    return x.to(torch.float64), y
