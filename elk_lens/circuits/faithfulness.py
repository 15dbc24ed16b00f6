"""Faithfulness of a circuit and the smallest circuit that reaches a target
(docs/methods/drift_growth_circuits.md §2.3).

``F(C) = M_diff(circuit C) / M_diff(full model)``, with ``M_diff = mean over pairs of M(clean) -
M(corrupt)``: how much of the reporter's clean-vs-corrupt gap survives when only the components in C
are left to compute. Components outside C are ablated in both halves of every pair:

- ``"twin"``: set to their output on the pair's corrupted twin. The corrupted half is then the
  corrupted run itself, so ``F(empty) = 0`` and ``F(all) = 1``.
- ``"mean"``: set to their mean output over the whole corrupted set (per position, over real tokens).
  Both halves then share every ablated value, so ``F(empty) = 0`` here too.

Components in C still recompute from whatever the ablated components wrote (node-level ablation).
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from elk_lens._checks import check_number
from elk_lens.circuits._engine import Batch, Plan, patched_scores, record, work_dtype
from elk_lens.circuits._inputs import Texts, batches, check_names, check_reporter, check_sizes, pair_tokens
from elk_lens.circuits.components import BIASES, Component, _components, resolve_components
from elk_lens.circuits.ranking import check_finite
from elk_lens.reporters.base import Reporter
from elk_lens.sites import Site

__all__ = ["Ablation", "Circuit", "faithfulness", "faithfulness_curve", "smallest_circuit"]

Ablation = Literal["twin", "mean"]
ABLATIONS: tuple[str, ...] = get_args(Ablation)


@dataclass(frozen=True)
class Circuit:
    """The smallest prefix of ``order`` whose faithfulness reaches ``target``.

    Attributes:
        components: The circuit, in the order components were added.
        size: ``len(components)``.
        curve: ``curve[k]`` = F of the first k components of ``order`` (k = 0..len(order)).
        order: Every upstream component, by decreasing |score|.
        target: The faithfulness target.
        ablation: ``"twin"`` or ``"mean"``.
        m_diff: ``M_diff`` of the full model (mean log-odds gap between clean and corrupt).
    """

    components: tuple[str, ...]
    size: int
    curve: Float[Tensor, " n_plus_1"]
    order: tuple[str, ...]
    target: float
    ablation: str
    m_diff: float


def _check_ablation(ablation: str) -> None:
    if ablation not in ABLATIONS:
        raise ValueError(f"unknown ablation {ablation!r}; valid: {ABLATIONS}")


@torch.no_grad()
def _mean_acts(
    model: TransformerBridge, reporter: Reporter, site: Site, tokens, every: list[Component], batch_size: int, dtype
) -> dict[str, Tensor]:
    """Per-position mean of each component hook's activation over the real tokens of ``tokens``."""
    sums: dict[str, Tensor] = {}
    count = tokens.mask.sum(0).clamp_min(1)
    for rows in batches(len(tokens), batch_size):
        batch = Batch.of(tokens, rows)
        rec = record(model, reporter, site, batch, every, dtype)
        for name, act in rec.acts.items():
            m = batch.mask.to(act.device, act.dtype).view(*batch.mask.shape, *([1] * (act.ndim - 2)))
            sums[name] = sums.get(name, 0) + (act * m).sum(0)
    return {name: s / count.to(s.device, s.dtype).view(-1, *([1] * (s.ndim - 1))) for name, s in sums.items()}


def _m_diffs(
    model: TransformerBridge,
    reporter: Reporter,
    clean: Texts,
    corrupt: Texts,
    circuits: Sequence[set[str]],
    ablation: str,
    batch_size: int,
    max_rows: int | None,
    allow_other_model: bool,
) -> tuple[Float[Tensor, " n_circuits"], float]:
    """``M_diff`` of each circuit, and of the full model."""
    _check_ablation(ablation)
    check_sizes(batch_size=batch_size, max_rows=max_rows)
    site = check_reporter(model, reporter, allow_other_model=allow_other_model)
    every = _components(model, site)
    for circuit in circuits:
        resolve_components(model, site, sorted(circuit))  # raises on unknown names
    clean_tok, corrupt_tok = pair_tokens(model, clean, corrupt, site)
    dtype = work_dtype(model, reporter)
    mean = _mean_acts(model, reporter, site, corrupt_tok, every, batch_size, dtype) if ablation == "mean" else None
    total = torch.zeros(len(circuits), dtype=dtype)
    full = torch.zeros((), dtype=dtype)
    for rows in batches(len(clean_tok), batch_size):
        clean_b, corrupt_b = Batch.of(clean_tok, rows), Batch.of(corrupt_tok, rows)
        base = record(model, reporter, site, clean_b, every, dtype)
        twin = record(model, reporter, site, corrupt_b, every, dtype)
        full += (base.score - twin.score).sum()
        if mean is None:
            plans: list[Plan] = [{c: c.take(twin.acts[c.hook]) for c in every if c.name not in C} for C in circuits]
            m_clean = patched_scores(model, reporter, site, clean_b, plans, dtype, max_rows=max_rows)
            m_corrupt = twin.score  # the corrupted half with its own outputs patched in is the corrupted run
        else:
            plans = [{c: c.take(mean[c.hook][None])[0] for c in every if c.name not in C} for C in circuits]
            m_clean = patched_scores(model, reporter, site, clean_b, plans, dtype, max_rows=max_rows)
            m_corrupt = patched_scores(model, reporter, site, corrupt_b, plans, dtype, max_rows=max_rows)
        total += (m_clean - m_corrupt).sum(1)
    n = len(clean_tok)
    return total / n, float(full / n)


def _ratio(m_circuit: Tensor, m_full: float) -> Tensor:
    if abs(m_full) < 1e-12:
        raise ValueError(
            "clean and corrupted statements give the same mean score (M_diff = 0), so faithfulness is "
            "undefined; use contrast pairs the reporter tells apart"
        )
    return m_circuit / m_full


def faithfulness(
    model: TransformerBridge,
    reporter: Reporter,
    clean: Texts,
    corrupt: Texts,
    circuit: Iterable[str],
    *,
    ablation: Ablation = "twin",
    batch_size: int = 1024,
    max_rows: int | None = None,
    allow_other_model: bool = False,
) -> float:
    """``F(circuit)``: the share of the full model's mean clean-vs-corrupt gap the circuit keeps.

    ``circuit`` names components from ``upstream_components(model, reporter.site)``; every other
    upstream component is ablated (``ablation="twin"`` or ``"mean"``, see the module docstring).
    """
    circuit = set(check_names("circuit", circuit))
    m, full = _m_diffs(model, reporter, clean, corrupt, [circuit], ablation, batch_size, max_rows, allow_other_model)
    return float(_ratio(m, full)[0])


def faithfulness_curve(
    model: TransformerBridge,
    reporter: Reporter,
    clean: Texts,
    corrupt: Texts,
    order: Sequence[str],
    *,
    ablation: Ablation = "twin",
    batch_size: int = 1024,
    max_rows: int | None = None,
    allow_other_model: bool = False,
) -> Float[Tensor, " n_plus_1"]:
    """``F`` of the first k components of ``order``, for k = 0..len(order)."""
    order = check_names("order", order)
    if len(set(order)) != len(order):
        raise ValueError(f"order repeats components: {list(order)}")
    circuits = [set(order[:k]) for k in range(len(order) + 1)]
    m, full = _m_diffs(model, reporter, clean, corrupt, circuits, ablation, batch_size, max_rows, allow_other_model)
    return _ratio(m, full)


def _by_magnitude(scores: Mapping[str, Tensor | float], names: list[str]) -> list[str]:
    """Component names by decreasing |mean score|; unscored components last, in forward order."""
    unknown = [k for k in scores if k != BIASES and k not in names]
    if unknown:
        raise ValueError(f"scores name unknown component(s) {unknown}; valid: {names}")
    magnitude = {
        name: abs(float(torch.as_tensor(scores[name], dtype=torch.float64).mean())) if name in scores else -1.0
        for name in names
    }
    return sorted(names, key=lambda name: -magnitude[name])  # stable: ties keep forward order


def smallest_circuit(
    scores: Mapping[str, Tensor | float],
    model: TransformerBridge,
    reporter: Reporter,
    clean: Texts,
    corrupt: Texts,
    *,
    target: float = 0.8,
    ablation: Ablation = "twin",
    batch_size: int = 1024,
    max_rows: int | None = None,
    allow_other_model: bool = False,
) -> Circuit:
    """Add components in order of |score| (per-pair scores are averaged first) until ``F >= target``.

    A linear scan over every prefix: at ~20 components one stacked pass scores the whole curve, and
    the curve itself is worth reporting (its area is MIB's CPR, docs/methods/drift_growth_circuits.md §2.3).
    ``"biases"`` in ``scores`` is ignored (a constant, not an ablatable component).
    """
    check_number("target", target)
    if not 0 < target <= 1:
        raise ValueError(f"target must be in (0, 1], got {target}")
    check_finite(scores)
    site = check_reporter(model, reporter, allow_other_model=allow_other_model)
    order = _by_magnitude(scores, [c.name for c in _components(model, site)])
    circuits = [set(order[:k]) for k in range(len(order) + 1)]
    m, m_full = _m_diffs(model, reporter, clean, corrupt, circuits, ablation, batch_size, max_rows, allow_other_model)
    curve = _ratio(m, m_full)
    reached = (curve >= target).nonzero()
    size = int(reached[0]) if len(reached) else len(order)  # F(all) = 1 >= target, up to rounding
    return Circuit(tuple(order[:size]), size, curve, tuple(order), target, ablation, m_full)
