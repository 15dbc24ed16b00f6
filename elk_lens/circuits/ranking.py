"""Comparing two score dicts: Spearman rank correlation over components, and per-pair means.

Circuit methods are judged by whether they *rank* components as the exact-patching oracle does
(docs/methods/drift_growth_circuits.md §6); the magnitudes of first-order estimates are allowed to be off.
"""

from collections.abc import Mapping

import torch
from jaxtyping import Float
from torch import Tensor

from elk_lens.circuits.components import BIASES

__all__ = ["check_finite", "mean_scores", "rank", "spearman"]


def check_finite(scores: Mapping[str, Tensor | float]) -> None:
    """Every score finite: a NaN sorts and ranks arbitrarily, so a ranking built on it would be silently wrong."""
    if not isinstance(scores, Mapping):
        raise TypeError(f"scores must be a dict {{component name: score}}; got {type(scores).__name__}")
    for name, value in scores.items():
        if not torch.isfinite(torch.as_tensor(value, dtype=torch.float64)).all():
            raise ValueError(f"scores[{name!r}] contain NaN or inf")


def mean_scores(scores: Mapping[str, Tensor | float]) -> dict[str, float]:
    """``{name: mean over pairs}``: one number per component, for tables and rankings."""
    return {name: float(torch.as_tensor(value, dtype=torch.float64).mean()) for name, value in scores.items()}


def rank(x: Float[Tensor, " n"]) -> Float[Tensor, " n"]:
    """Ranks 1..n, ties given their average rank (as ``scipy.stats.rankdata``).

    >>> rank(torch.tensor([10.0, 30.0, 20.0, 30.0])).tolist()
    [1.0, 3.5, 2.0, 3.5]
    """
    x = torch.as_tensor(x, dtype=torch.float64)
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(1, len(x) + 1, dtype=torch.float64)
    for value in x.unique():  # average over ties (few components: a loop is fine)
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: Mapping[str, Tensor | float], b: Mapping[str, Tensor | float]) -> float:
    """Spearman correlation of two score dicts over their shared components (per-pair scores averaged).

    ``"biases"`` is left out: it is a constant term, not a component either method can rank.
    """
    check_finite(a)
    check_finite(b)
    names = [n for n in a if n in b and n != BIASES]
    if len(names) < 2:
        raise ValueError(f"need >= 2 components in common to correlate ranks, got {names}")
    mean_a, mean_b = mean_scores({n: a[n] for n in names}), mean_scores({n: b[n] for n in names})
    ra = rank(torch.tensor([mean_a[n] for n in names]))
    rb = rank(torch.tensor([mean_b[n] for n in names]))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = float(ra.norm() * rb.norm())
    if denominator == 0:
        raise ValueError("one of the score dicts is constant over components; its ranking is undefined")
    return float(ra @ rb) / denominator
