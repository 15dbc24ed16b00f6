"""Evaluation metrics for reporters: AUROC with ties, accuracy, calibrated accuracy, ECE, bootstrap CIs."""

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from elk_lens._checks import check_choice, check_labels, check_number

__all__ = ["accuracy", "auroc", "auroc_columns", "bootstrap_ci", "calibrated_accuracy", "ece"]

ECE_POWERS = (1, 2)  # ECE_1 and ECE_2, the two Roelofs et al. report


def _binary(labels: object) -> Tensor:
    """Bool labels of any shape; a label other than 0/1 (2, -1, 0.5, NaN) is refused, never cast to True."""
    labels = torch.as_tensor(labels)
    return check_labels("labels", labels.reshape(-1)).reshape(labels.shape)


def _finite(scores: Tensor) -> None:
    if not torch.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")


def _same_shape(scores: Tensor, labels: Tensor) -> None:
    if scores.shape != labels.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} differ in shape")


def auroc(scores: Float[Tensor, " batch"], labels: Bool[Tensor, " batch"]) -> float:
    """Area under the ROC curve; ties count one half (equals scikit-learn's ``roc_auc_score``).

    Computed as the Mann-Whitney U statistic over mid-ranks, in float64.

    Raises:
        ValueError: if only one class is present (AUROC is undefined).
    """
    scores = torch.as_tensor(scores, dtype=torch.float64).reshape(-1)
    labels = _binary(labels).reshape(-1)
    _same_shape(scores, labels)
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs both classes; got {n_pos} positive and {n_neg} negative labels")
    _finite(scores)
    sorted_scores, order = scores.sort()
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).to(torch.float64)
    mid_rank = ends - (counts.to(torch.float64) - 1) / 2  # 1-based mid-rank of each tie group
    ranks = torch.empty_like(scores)
    ranks[order] = mid_rank[inverse]
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def accuracy(scores: Float[Tensor, " batch"], labels: Bool[Tensor, " batch"]) -> float:
    """Fraction right when predicting true iff the log-odds score is > 0."""
    scores, labels = torch.as_tensor(scores).reshape(-1), _binary(labels).reshape(-1)
    _same_shape(scores, labels)
    _finite(scores)  # NaN > 0 is False: a NaN score would count as a confident "false"
    return float(((scores > 0) == labels).double().mean())


def calibrated_accuracy(scores: Float[Tensor, " batch"], labels: Bool[Tensor, " batch"]) -> float:
    """Accuracy with the threshold at the ``1 - pi`` quantile of the scores, pi = the label prior.

    Exactly a fraction pi of the rows is then predicted true (the reference elk code used the
    ``pi`` quantile, which is right only for balanced labels; docs/methods/elk_methods.md §4.3).
    Note the threshold uses the evaluation labels' prior: report it as a ceiling, not a deployable rule.
    """
    scores = torch.as_tensor(scores, dtype=torch.float64).reshape(-1)
    labels = _binary(labels).reshape(-1)
    _same_shape(scores, labels)
    _finite(scores)
    threshold = torch.quantile(scores, 1 - labels.double().mean())
    return float(((scores > threshold) == labels).double().mean())


def ece(probs: Float[Tensor, " batch"], labels: Bool[Tensor, " batch"], *, p: int = 2) -> tuple[float, int]:
    """Expected calibration error by the monotonic sweep (Roelofs et al. 2020, arXiv 2012.08668).

    Equal-mass bins; the largest bin count whose bin frequencies still increase strictly (and stay
    inside (0, 1)) is used. Returns ``(ECE_p, bins)``; ``p`` is 1 or 2.
    """
    check_choice("p", p, ECE_POWERS)
    probs = torch.as_tensor(probs, dtype=torch.float64).reshape(-1)
    labels = _binary(labels).reshape(-1).double()
    inside = (probs >= 0) & (probs <= 1)  # False for NaN, which fails both comparisons
    if probs.numel() == 0 or not inside.all():
        raise ValueError(
            f"ece needs a non-empty tensor of probabilities in [0, 1], without NaN; got "
            f"{probs.numel()} values, e.g. {probs[~inside][:3].tolist()} outside [0, 1]"
        )
    _same_shape(probs, labels)
    order = probs.argsort()
    probs, labels = probs[order], labels[order]
    best = 1
    for b in range(2, probs.numel() + 1):
        freqs = torch.stack([chunk.mean() for chunk in labels.tensor_split(b)])
        if (freqs.diff() <= 0).any() or ((freqs == 0) | (freqs == 1)).any():
            break
        best = b
    gaps = [
        (y.numel() / probs.numel()) * (y.mean() - q.mean()).abs() ** p
        for y, q in zip(labels.tensor_split(best), probs.tensor_split(best), strict=True)
    ]
    return float(torch.stack(gaps).sum() ** (1 / p)), best


def bootstrap_ci(
    metric,
    scores: Float[Tensor, "batch ..."],
    labels: Bool[Tensor, "batch ..."],
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``metric(scores, labels)``.

    Rows are resampled with replacement; when the inputs have a second axis (templates/variants of
    one example) every variant of a drawn row comes along and the metric sees the flattened selection
    (the cluster bootstrap). The resample indices are drawn in one call; for ``metric=auroc`` all
    resamples are scored in one batched computation (``auroc_columns``), other metrics loop.
    """
    if not callable(metric):
        raise TypeError(f"metric must be a function metric(scores, labels) -> float; got {metric!r}")
    check_number("n_resamples", n_resamples, kind=int, low=1)
    check_number("level", level, low=0, high=1, low_open=True, high_open=True)
    check_number("seed", seed, kind=int)
    scores, labels = torch.as_tensor(scores), _binary(labels)
    _same_shape(scores, labels)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, scores.shape[0], (n_resamples, scores.shape[0]), generator=gen)
    if metric is auroc:  # every resample in one batched AUROC
        picked_s = scores[idx].reshape(n_resamples, -1).T
        picked_y = labels[idx].reshape(n_resamples, -1).T
        v = auroc_columns(picked_s, picked_y, nan_if_one_class=True)
        values = v[~v.isnan()].tolist()  # a resample with one class has no AUROC; skipped, not substituted
    else:
        values = []
        for rows in idx:
            s, y = scores[rows].reshape(-1), labels[rows].reshape(-1)
            if y.all() or not y.any():
                continue
            values.append(metric(s, y))
    if len(values) < n_resamples // 2:
        raise ValueError(f"only {len(values)} of {n_resamples} resamples had both classes; too few rows")
    v = torch.tensor(values, dtype=torch.float64)
    alpha = (1 - level) / 2
    return float(v.quantile(alpha)), float(v.quantile(1 - alpha))


def auroc_columns(
    scores: Float[Tensor, "batch k"], labels: Bool[Tensor, "batch ..."], *, nan_if_one_class: bool = False
) -> Float[Tensor, " k"]:
    """AUROC of every column of ``scores`` at once (ties count one half), as :func:`auroc` per column.

    ``labels`` is one label per row, or one per row and column (e.g. bootstrap resamples). A column
    whose labels hold one class raises, or with ``nan_if_one_class`` gets NaN (never a substitute value).
    """
    scores = torch.as_tensor(scores, dtype=torch.float64)
    labels = _binary(labels)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [batch, k] (one column per scorer); got shape {tuple(scores.shape)}")
    n, k = scores.shape
    if labels.shape not in ((n,), (n, k)):
        raise ValueError(f"labels of shape {tuple(labels.shape)} for scores of shape {(n, k)}")
    labels = labels.reshape(n, -1).expand(n, k)
    _finite(scores)
    n_pos = labels.sum(0).to(torch.float64)
    one_class = (n_pos == 0) | (n_pos == n)
    if one_class.any() and not nan_if_one_class:
        raise ValueError(f"AUROC needs both classes; {int(one_class.sum())} column(s) have one class only")
    sorted_vals, order = scores.sort(0)
    starts = torch.ones_like(sorted_vals, dtype=torch.bool)
    starts[1:] = sorted_vals[1:] != sorted_vals[:-1]
    group = (starts.long().cumsum(0) - 1) + torch.arange(k) * n  # tie group, unique across columns
    ordinal = torch.arange(1, n + 1, dtype=torch.float64)[:, None].expand(n, k)
    sums = torch.zeros(n * k, dtype=torch.float64).scatter_add_(0, group.reshape(-1), ordinal.reshape(-1))
    counts = torch.zeros(n * k, dtype=torch.float64).scatter_add_(
        0, group.reshape(-1), torch.ones(n * k, dtype=torch.float64)
    )
    mid_rank = (sums / counts.clamp_min(1))[group]
    ranks = torch.empty_like(scores).scatter_(0, order, mid_rank)
    u = (ranks * labels).sum(0) - n_pos * (n_pos + 1) / 2
    return torch.where(one_class, torch.nan, u / (n_pos * (n - n_pos)).clamp_min(1))
