"""How a circuit moves between checkpoints: set and score overlaps, edit distance, a smoothed change rate.

Circuits are sets of component names (``"embed"``, ``"L{layer}H{head}"``, ``"L{layer}MLP"``) with a
score per component; definitions follow circuits-over-time (docs/methods/drift_growth_circuits.md §3). Across
a growth step, names move through the `GrowthMap`'s layer and head maps first (:func:`relabel`), so a
head that kept its job keeps its name. A change counts only above the noise floor: the same measure
between circuits found on two disjoint halves of the data at one checkpoint.
"""

from collections.abc import Mapping, Sequence

from elk_lens.circuits.components import Component
from elk_lens.growth import GrowthMap

__all__ = ["circuit_series", "edit_distance", "ewma_change", "jaccard", "relabel", "weighted_jaccard"]


def jaccard(a: set[str], b: set[str]) -> float:
    """|A ∩ B| / |A ∪ B|; two empty circuits are identical (1)."""
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def weighted_jaccard(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Σ min(|s_a|, |s_b|) / Σ max(|s_a|, |s_b|) over the union of components (absent = 0)."""
    keys = sorted(set(a) | set(b))  # a set iterates in hash-seed order; the sums last bits would vary per run
    top = sum(max(abs(a.get(k, 0.0)), abs(b.get(k, 0.0))) for k in keys)
    low = sum(min(abs(a.get(k, 0.0)), abs(b.get(k, 0.0))) for k in keys)
    return 1.0 if top == 0 else low / top


def edit_distance(a: set[str], b: set[str]) -> int:
    """Graph edit distance on node sets: components added plus components removed."""
    return len(b - a) + len(a - b)


def ewma_change(similarities: Sequence[float], alpha: float = 0.5) -> list[float]:
    """``c_t = α (1 − J_t) + (1 − α) c_{t−1}`` from ``c_0 = 0``: a change rate that forgets slowly."""
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must lie in (0, 1], got {alpha}")
    out, c = [], 0.0
    for j in similarities:
        c = alpha * (1 - j) + (1 - alpha) * c
        out.append(c)
    return out


def relabel(names: Mapping[str, float] | set[str], growth: GrowthMap):
    """Component names of the source model as the grown model calls them (layers and heads mapped)."""

    def one(name: str) -> str:
        c = Component.from_name(name)
        if c.is_embed:
            return name
        if c.layer >= len(growth.layers):
            raise ValueError(f"{name}: the source model has layers 0..{len(growth.layers) - 1}")
        if c.head is None:
            return f"L{growth.layers[c.layer]}MLP"
        if c.head >= len(growth.heads):
            raise ValueError(f"{name}: the source model has heads 0..{len(growth.heads) - 1}")
        return f"L{growth.layers[c.layer]}H{growth.heads[c.head]}"

    if not growth.layers:
        raise ValueError("this growth map has no layer map (a map fitted at some sites only): components cannot move")
    if isinstance(names, Mapping):
        return {one(k): v for k, v in names.items()}
    return {one(k) for k in names}


def circuit_series(circuits: Sequence[set[str]], scores: Sequence[Mapping[str, float]], alpha: float = 0.5) -> dict:
    """Per checkpoint: Jaccard, weighted Jaccard and edit distance to the previous circuit and to the
    first, the EWMA change rate of the consecutive weighted Jaccard, and the circuit size.

    ``scores[t]`` holds the in-circuit components' scores at checkpoint ``t`` (others count as 0).
    """
    if len(circuits) != len(scores) or not circuits:
        raise ValueError(f"need one score table per circuit, got {len(circuits)} circuits, {len(scores)} tables")
    within = [{k: v for k, v in s.items() if k in c} for c, s in zip(circuits, scores, strict=True)]
    prev = [circuits[0], *circuits[:-1]]
    prev_w = [within[0], *within[:-1]]
    consecutive_w = [weighted_jaccard(p, s) for p, s in zip(prev_w, within, strict=True)]
    return {
        "size": [len(c) for c in circuits],
        "jaccard_prev": [jaccard(p, c) for p, c in zip(prev, circuits, strict=True)],
        "jaccard_first": [jaccard(circuits[0], c) for c in circuits],
        "weighted_jaccard_prev": consecutive_w,
        "weighted_jaccard_first": [weighted_jaccard(within[0], s) for s in within],
        "edit_distance_prev": [edit_distance(p, c) for p, c in zip(prev, circuits, strict=True)],
        "edit_distance_first": [edit_distance(circuits[0], c) for c in circuits],
        "ewma_change": ewma_change(consecutive_w, alpha),
    }
