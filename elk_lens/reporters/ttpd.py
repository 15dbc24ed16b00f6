"""TTPD (Training of Truth and Polarity Direction; Bürger, Hamprecht, Nadler, arXiv 2407.12831).

The paper's generative model is ``a = mu_group + tau * t_G + tau * p * t_P + noise``, with truth ``tau`` and
polarity ``p`` (affirmative vs negated) both +-1. A probe fitted on affirmative statements alone learns
``t_G + t_P``, which points the wrong way on negated statements whenever ``|t_P| > |t_G|``. TTPD
separates the general truth direction ``t_G`` (shared by both polarities) from the polarity-dependent
``t_P`` by OLS on group-centred activations, then classifies with a 2-D logistic regression on
``(a . t_G, a . d_P)``, where ``d_P`` is a learned polarity direction. Both features are linear in
``a``, so the whole classifier folds into one affine `Reporter` on the raw residual.

Follows TIU ``probes.py`` (docs/methods/elk_methods.md §3.7), except that TIU's sqrt(token count)
rescaling of the ``t_G`` feature is not applied: features here are per statement, at one position.
"""

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from elk_lens._checks import check_training_data
from elk_lens.reporters.base import Reporter
from elk_lens.reporters.logistic import fit_logistic

__all__ = ["fit_ttpd", "ttpd_directions"]

_UNPENALIZED_C = 1e6  # TIU uses LogisticRegression(penalty=None) for both d_P and the final 2-D fit
_MIN_PER_CELL = 2


def _prepare(x, y, polarity, groups, site: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Validated float64 activations, bool truth, bool polarity and group indices 0..k-1, or a clear error."""
    x64, y = check_training_data(x, y, site)
    n = x64.shape[0]
    if polarity is None:
        raise ValueError("TTPD needs a polarity column (affirmative vs negated statements); got polarity=None")
    polarity = torch.as_tensor(polarity)
    if polarity.shape != (n,):
        raise ValueError(f"polarity must have one entry per row ({n}); got shape {tuple(polarity.shape)}")
    if polarity.dtype != torch.bool and not ((polarity == 0) | (polarity == 1)).all():
        # -1 would silently cast to True (affirmative): refuse instead of guessing the +-1 convention
        raise ValueError(
            f"polarity must be bool (True = affirmative, False = negated); got values {polarity.unique().tolist()}"
        )
    polarity = polarity.bool()
    if polarity.all() or not polarity.any():
        kind = "affirmative" if bool(polarity[0]) else "negated"
        raise ValueError(f"TTPD needs both affirmative and negated statements; got only {kind} ones")
    if groups is None:
        groups = torch.zeros(n, dtype=torch.long)
    groups = torch.as_tensor(groups)
    if groups.is_floating_point() or groups.is_complex():  # 0.5 and 0.50001 would be two datasets
        raise TypeError(f"groups must hold integer dataset ids; got dtype {groups.dtype}")
    if groups.shape != (n,):
        raise ValueError(f"groups must have one dataset id per row ({n}); got shape {tuple(groups.shape)}")
    ids, group_index = torch.unique(groups, return_inverse=True)
    _check_cells(y, polarity, group_index, ids)
    return x64, y, polarity, group_index


def _check_cells(y: Tensor, polarity: Tensor, group_index: Tensor, ids: Tensor) -> None:
    """Every polarity that occurs in a group needs true and false rows there, at least two of each.

    A group's mean is its centre only if it holds both truth values; TIU pairs each topic's affirmative
    and negated datasets as separate groups, so a group may hold one polarity only (the empty cells of
    the other polarity are not a defect).
    """
    for g, group_id in enumerate(ids.tolist()):
        in_group = group_index == g
        for pol in polarity[in_group].unique().tolist():
            for truth in (True, False):
                count = int((in_group & (polarity == pol) & (y == truth)).sum())
                if count < _MIN_PER_CELL:
                    raise ValueError(
                        f"TTPD needs at least {_MIN_PER_CELL} rows in each (group, truth, polarity) cell; "
                        f"cell (group={group_id}, truth={truth}, polarity={'affirmative' if pol else 'negated'}) "
                        f"has {count}"
                    )


def _directions(x64: Tensor, y: Tensor, polarity: Tensor, group_index: Tensor) -> tuple[Tensor, Tensor]:
    """OLS of the group-centred activations on the design ``[tau, tau * p]``."""
    centred = x64.clone()
    for g in range(int(group_index.max()) + 1):
        rows = group_index == g
        centred[rows] -= x64[rows].mean(0)
    tau = y.to(torch.float64) * 2 - 1
    p = polarity.to(torch.float64) * 2 - 1
    design = torch.stack([tau, tau * p], dim=1)
    # (X^T X)^-1 X^T A~ by the 2 x 2 normal equations, not torch.linalg.lstsq: its default CPU driver (gelsy)
    # gives different last bits from call to call on the same input (3 results in 15 calls measured), which
    # the unpenalized fits downstream magnify into a visible difference (docs/results/benchmarks.md)
    solution = torch.linalg.solve(design.T @ design, design.T @ centred)  # [2, d_model]
    return solution[0], solution[1]


def ttpd_directions(
    x: Float[Tensor, "batch d_model"],
    y: Bool[Tensor, " batch"],
    polarity: Bool[Tensor, " batch"],
    groups: Int[Tensor, " batch"] | None = None,
    *,
    site: str = "(unnamed site)",
) -> tuple[Float[Tensor, " d_model"], Float[Tensor, " d_model"]]:
    """The general truth direction ``t_G`` and the polarity-sensitive truth direction ``t_P``, in float64.

    Each group (dataset) is centred by its own training mean first, so dataset identity does not leak
    into the directions. Affirmative statements separate along ``t_G + t_P``, negated ones along
    ``t_G - t_P``.

    Args:
        x: Raw activations, shape (batch, d_model).
        y: Truth labels.
        polarity: True for affirmative statements, False for negated ones.
        groups: Dataset id per row (ints); default: one group.
        site: Hook name, used in error messages.
    """
    return _directions(*_prepare(x, y, polarity, groups, site))


def fit_ttpd(
    x: Float[Tensor, "batch d_model"],
    y: Bool[Tensor, " batch"],
    polarity: Bool[Tensor, " batch"],
    *,
    site: str,
    groups: Int[Tensor, " batch"] | None = None,
    provenance: dict | None = None,
) -> Reporter:
    """Fit TTPD and fold it into one `Reporter`: ``w = c1 * t_G + c2 * d_P``, ``b = c0``.

    ``d_P`` comes from an (effectively) unpenalized logistic regression of polarity on the raw
    activations; ``(c1, c2, c0)`` from one of truth on ``(a . t_G, a . d_P)``. Both read uncentred
    activations, so the reporter needs no normalizer at test time. ``v`` is ``t_G``.

    Args:
        x: Raw activations at ``site``, shape (batch, d_model).
        y: Truth labels.
        polarity: True for affirmative statements, False for negated ones.
        site: Hook name the activations come from.
        groups: Dataset id per row (ints), centred separately for the directions; default: one group.
        provenance: Merged into the reporter's provenance.
    """
    x64, y, polarity, group_index = _prepare(x, y, polarity, groups, site)
    t_g, t_p = _directions(x64, y, polarity, group_index)
    d_p = fit_logistic(x64, polarity, site=site, C=_UNPENALIZED_C).w
    features = torch.stack([x64 @ t_g, x64 @ d_p], dim=1)
    truth = fit_logistic(features, y, site=f"{site} (TTPD features)", C=_UNPENALIZED_C)
    c1, c2 = truth.w.tolist()
    info = {
        "C": _UNPENALIZED_C,
        "n_groups": int(group_index.max()) + 1,
        "t_G_norm": float(t_g.norm()),
        "t_P_norm": float(t_p.norm()),
        "cos_tG_tP": _cos(t_g, t_p),
        "cos_tG_dP": _cos(t_g, d_p),
        "coef_tG": c1,
        "coef_dP": c2,
    }
    return Reporter(c1 * t_g + c2 * d_p, truth.b, t_g, "ttpd", site, {**info, **(provenance or {})})


def _cos(a: Tensor, b: Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()).clamp_min(1e-300))
