"""Transfer metrics from the quirky-models protocol (Mallen et al., arXiv 2312.01037; docs/methods/elk_methods.md §6):
the earliest informative layer and the performance gap recovered, with bootstrap intervals. They live
outside ``elk_lens.quirky`` because the truth-dataset generalization study reads the same layer choice.

Both are computed from per-site AUROCs; the layer is chosen on in-distribution data only, never by
looking at the transfer target.
"""

import math

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from elk_lens._checks import check_labels, check_number
from elk_lens.metrics import auroc_columns

__all__ = ["EIL_THRESHOLD", "earliest_informative_layer", "pgr", "pgr_interval"]

EIL_THRESHOLD = 0.95  # elk-generalization's viz.earliest_informative_layer


def earliest_informative_layer(in_distribution_auroc: list[float], *, threshold: float = EIL_THRESHOLD) -> int:
    """Index of the first site whose AUROC - 0.5 reaches ``threshold`` of the best site's.

    ``in_distribution_auroc`` must come from the reporter's own training distribution (e.g. AE -> AE),
    so the choice never sees the transfer target. If no site beats chance, the middle site (as EG).
    """
    check_number("threshold", threshold, low=0, high=1)
    values = [v for v in in_distribution_auroc if not math.isnan(v)]
    if not values:
        raise ValueError("earliest_informative_layer needs at least one defined AUROC")
    best = max(values)
    if best < 0.5:
        return len(in_distribution_auroc) // 2
    for i, v in enumerate(in_distribution_auroc):
        if not math.isnan(v) and v - 0.5 >= threshold * (best - 0.5):
            return i
    raise AssertionError("unreachable: the best site always qualifies")


def pgr(transfer: float, floor: float, ceiling: float) -> float:
    """Performance gap recovered: ``(transfer - floor) / (ceiling - floor)``."""
    for name, value in (("transfer", transfer), ("floor", floor), ("ceiling", ceiling)):
        check_number(name, value)
    if ceiling == floor:
        return float("nan")
    return (transfer - floor) / (ceiling - floor)


def pgr_interval(
    transfer: tuple[Float[Tensor, " n_transfer"], Bool[Tensor, " n_transfer"]],
    floor: tuple[Float[Tensor, " n_floor"], Bool[Tensor, " n_floor"]],
    ceiling: tuple[Float[Tensor, " n_ceiling"], Bool[Tensor, " n_ceiling"]],
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """PGR and its percentile-bootstrap interval; each AUROC's rows are resampled independently.

    Each argument is ``(scores, labels)`` of one AUROC. The PGR of each resample is the ratio of that
    resample's AUROCs (a ratio of averages within a resample, as the paper's tables).
    """
    check_number("n_resamples", n_resamples, kind=int, low=1)
    check_number("level", level, low=0, high=1, low_open=True, high_open=True)
    check_number("seed", seed, kind=int)
    inputs = []
    for name, (scores, labels) in zip(("transfer", "floor", "ceiling"), (transfer, floor, ceiling), strict=True):
        scores = torch.as_tensor(scores, dtype=torch.float64)
        inputs.append((scores, check_labels(f"{name} labels", labels, n=len(scores))))
    gen = torch.Generator().manual_seed(seed)
    point, boot = [], []
    for scores, labels in inputs:
        point.append(float(auroc_columns(scores[:, None], labels)[0]))
        idx = torch.randint(0, len(scores), (len(scores), n_resamples), generator=gen)
        boot.append(auroc_columns(scores[idx], labels[idx], nan_if_one_class=True))
    ratio = (boot[0] - boot[1]) / (boot[2] - boot[1])
    ratio = ratio[ratio.isfinite()]
    alpha = (1 - level) / 2
    return {
        "pgr": pgr(*point),
        "low": float(ratio.quantile(alpha)),
        "high": float(ratio.quantile(1 - alpha)),
        "transfer_auroc": point[0],
        "floor_auroc": point[1],
        "ceiling_auroc": point[2],
    }
