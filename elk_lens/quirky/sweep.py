"""Layer sweeps on the quirky-arithmetic protocol: fit on one split, score AUROC on others.

Everything fitted (the probe, the sign of a surface heuristic) sees training rows only; evaluation
rows are only ever scored.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from elk_lens.activations import Activations
from elk_lens.data.statements import StatementSet
from elk_lens.metrics import auroc
from elk_lens.reporters import Reporter, fit_logistic

__all__ = [
    "SweepRow",
    "heuristic_rows",
    "probe_layer_sweep",
    "score_row",
]


def _safe_auroc(scores: Tensor, labels: Tensor) -> float:
    labels = labels.bool()
    if labels.all() or not labels.any():
        return float("nan")  # one class only: undefined, reported as such
    return auroc(scores, labels)


@dataclass
class SweepRow:
    """One scored thing (a layer's probe, the model's output, a heuristic) on every evaluation subset."""

    name: str
    auroc: dict[str, float]
    reporter: Reporter | None = None


def probe_layer_sweep(
    train_acts: Activations,
    train_labels: Tensor,
    eval_acts: Activations,
    eval_labels: Tensor,
    eval_masks: dict[str, Tensor],
    *,
    C: float = 1.0,
    provenance: dict | None = None,
) -> list[SweepRow]:
    """Fit a logistic-regression probe per site on the training rows; AUROC on every eval subset."""
    rows = []
    for i, site in enumerate(train_acts.sites):
        reporter = fit_logistic(train_acts.at(i), train_labels, site=site.name, C=C, provenance=provenance)
        scores = reporter(eval_acts.at(i).to(torch.float64))
        rows.append(
            SweepRow(site.name, {k: _safe_auroc(scores[m], eval_labels[m]) for k, m in eval_masks.items()}, reporter)
        )
    return rows


def score_row(name: str, scores: Tensor, labels: Tensor, masks: dict[str, Tensor]) -> SweepRow:
    """AUROC of fixed scores (the model's output log-odds) on every subset."""
    return SweepRow(name, {k: _safe_auroc(scores[m], labels[m]) for k, m in masks.items()})


def heuristic_rows(
    train: StatementSet,
    eval_set: StatementSet,
    eval_labels: Tensor,
    masks: dict[str, Tensor],
    surface: Callable[[StatementSet], dict[str, Tensor]],
) -> list[SweepRow]:
    """The ``surface`` heuristics (a task's, ``elk_lens.quirky.tasks``), each with its sign fitted on the
    training rows (never on evaluation rows)."""
    train_scores = surface(train)
    out = []
    for name, scores in surface(eval_set).items():
        sign = 1.0 if _safe_auroc(train_scores[name], train.truth) >= 0.5 else -1.0
        out.append(score_row(name, sign * scores, eval_labels, masks))
    return out
