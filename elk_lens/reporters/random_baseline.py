"""The random-direction floor: how well do random readouts of the same residual do?

Following elk-generalization's ``random_baseline``: draw directions from N(0, I), fix each one's sign
on the training rows (never on evaluation rows), and report the distribution of evaluation AUROCs.
A reporter is only interesting where it beats the upper quantiles of this distribution.
"""

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from elk_lens._checks import check_labels, check_number, check_training_data
from elk_lens.metrics import auroc_columns

__all__ = ["random_direction_baseline"]

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def random_direction_baseline(
    train_x: Float[Tensor, "batch d_model"],
    train_y: Bool[Tensor, " batch"],
    eval_x: Float[Tensor, "n_eval d_model"],
    eval_y: Bool[Tensor, " n_eval"],
    *,
    n_directions: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Mean and quantiles of evaluation AUROC over sign-fixed random directions."""
    check_number("n_directions", n_directions, kind=int, low=1)
    check_number("seed", seed, kind=int)
    train_x, train_y = check_training_data(train_x, train_y, "random baseline (train)")
    eval_x = torch.as_tensor(eval_x, dtype=torch.float64)
    if eval_x.ndim != 2 or eval_x.shape[1] != train_x.shape[1]:
        raise ValueError(f"eval_x must be [n_eval, {train_x.shape[1]}] (the train width); got {tuple(eval_x.shape)}")
    eval_y = check_labels("eval_y", eval_y, n=eval_x.shape[0])
    z = torch.randn(train_x.shape[1], n_directions, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    sign = torch.where(auroc_columns(train_x @ z, train_y) >= 0.5, 1.0, -1.0).to(torch.float64)
    aurocs = auroc_columns(eval_x @ (z * sign), eval_y)
    return {"mean": float(aurocs.mean()), **{f"q{q:g}": float(aurocs.quantile(q)) for q in QUANTILES}}
