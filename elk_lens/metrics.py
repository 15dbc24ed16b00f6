"""Evaluation metrics for reporters: AUROC with ties (Mann-Whitney U)."""

import torch
from jaxtyping import Bool, Float
from torch import Tensor

__all__ = ["auroc"]


def auroc(scores: Float[Tensor, " batch"], labels: Bool[Tensor, " batch"]) -> float:
    """Area under the ROC curve; ties count one half (equals scikit-learn's ``roc_auc_score``).

    Computed as the Mann-Whitney U statistic over mid-ranks, in float64.

    Raises:
        ValueError: if only one class is present (AUROC is undefined).
    """
    scores = torch.as_tensor(scores, dtype=torch.float64).reshape(-1)
    labels = torch.as_tensor(labels).reshape(-1).bool()
    if scores.shape != labels.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} differ in shape")
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs both classes; got {n_pos} positive and {n_neg} negative labels")
    if not torch.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")
    sorted_scores, order = scores.sort()
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).to(torch.float64)
    mid_rank = ends - (counts.to(torch.float64) - 1) / 2  # 1-based mid-rank of each tie group
    ranks = torch.empty_like(scores)
    ranks[order] = mid_rank[inverse]
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))
