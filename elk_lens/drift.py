"""Drift metrics: how far concept directions, subspaces, probes and representations move across checkpoints.

Pure tensor math in float64 (docs/methods/drift_growth_circuits.md §1): signed cosines of directions,
principal angles between concept subspaces, probe-transfer matrices, linear CKA and orthogonal Procrustes
between representations, and a resample noise floor: only drift above it counts (§1.8).

Cosines and principal angles compare vectors in one residual basis, so they are valid only between
checkpoints that share one (same initialisation, or after transporting the directions, §5.6). CKA and
Procrustes compare the activations of the SAME inputs (rows paired) under two representations.
"""

import math
from collections.abc import Callable, Sequence

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from elk_lens._checks import check_labels, check_number
from elk_lens.metrics import auroc_columns

__all__ = [
    "above_floor",
    "cosine",
    "cosine_series",
    "grassmann_distance",
    "linear_cka",
    "noise_floor",
    "principal_angles",
    "procrustes_distance",
    "subspace_overlap",
    "transfer_gap",
    "transfer_matrix",
]

Rows = Tensor | tuple[Tensor, ...]  # what noise_floor splits: one tensor, or several sharing the row axis

Basis = Float[Tensor, "d_model k"] | Float[Tensor, " d_model"]  # k directions as columns, or one direction

_SIN_BRANCH_COS2 = 0.5  # angles up to pi/4 from the sines: arccos near cos = 1 keeps only half the digits


def _as_float64(x: Tensor, name: str) -> Tensor:
    x = torch.as_tensor(x).to(torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def cosine(a: Float[Tensor, " d_model"], b: Float[Tensor, " d_model"]) -> float:
    """Signed cosine ``a . b / (|a| |b|)`` in float64.

    Signed on purpose: a reporter's sign is fixed on its training labels (Platt scaling), so a flip is
    real drift, not an artefact to fold away with ``abs``.

    Raises:
        ValueError: for shapes that are not one and the same 1-D shape, or a zero vector (no direction).
    """
    a, b = _as_float64(a, "a"), _as_float64(b, "b")
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"cosine needs two vectors of one shape (d_model,); got {tuple(a.shape)} and {tuple(b.shape)}")
    na, nb = torch.linalg.vector_norm(a), torch.linalg.vector_norm(b)
    if na == 0 or nb == 0:
        raise ValueError(f"cosine of a zero vector is undefined (|a| = {float(na)}, |b| = {float(nb)})")
    return float((a @ b) / (na * nb))


def cosine_series(vectors: Float[Tensor, "n_checkpoints d_model"]) -> dict[str, Float[Tensor, " n_checkpoints"]]:
    """Signed cosines of each checkpoint's direction to the first and to the previous checkpoint.

    Args:
        vectors: One direction per checkpoint (e.g. ``torch.stack([r.v for r in reporters])``), in order.

    Returns:
        ``to_first[t] = cos(v_t, v_0)`` (so ``to_first[0] = 1``) and ``to_previous[t] = cos(v_t, v_{t-1})``.
        ``to_previous[0]`` is NaN, not 1: checkpoint 0 has no predecessor, and a 1 would read as "no
        drift" in a plot or a mean (use ``nanmean``).
    """
    v = _as_float64(vectors, "vectors")
    if v.ndim != 2 or v.shape[0] == 0:
        raise ValueError(f"vectors must be [n_checkpoints, d_model] with n_checkpoints >= 1; got {tuple(v.shape)}")
    norms = torch.linalg.vector_norm(v, dim=1)
    if (norms == 0).any():
        raise ValueError(f"zero direction at checkpoint(s) {(norms == 0).nonzero().flatten().tolist()}")
    unit = v / norms[:, None]
    to_previous = torch.full((v.shape[0],), math.nan, dtype=torch.float64)
    to_previous[1:] = (unit[1:] * unit[:-1]).sum(1)
    return {"to_first": unit @ unit[0], "to_previous": to_previous}


def _orthonormal_bases(U: Tensor, V: Tensor) -> tuple[Tensor, Tensor]:
    """QR bases in float64 of two [d_model, k] bases (a 1-D input is one direction), after shape checks."""
    U, V = _as_float64(U, "U"), _as_float64(V, "V")
    U, V = (x[:, None] if x.ndim == 1 else x for x in (U, V))
    if U.ndim != 2 or U.shape != V.shape:
        raise ValueError(
            f"principal angles need two bases of one shape [d_model, k]; got {tuple(U.shape)} and {tuple(V.shape)}"
        )
    d, k = U.shape
    if not 1 <= k <= d:
        raise ValueError(f"a basis needs 1 <= k <= d_model columns; got k={k} for d_model={d}")
    for name, x in (("U", U), ("V", V)):
        rank = int(torch.linalg.matrix_rank(x))
        if rank < k:
            raise ValueError(f"basis {name} has rank {rank} < k={k}: its columns do not span a {k}-dim subspace")
    return torch.linalg.qr(U).Q, torch.linalg.qr(V).Q


def principal_angles(U: Basis, V: Basis) -> Float[Tensor, " k"]:
    """Principal angles (radians, ascending) between the column spans of ``U`` and ``V``.

    The bases need not be orthonormal (QR in float64 first). ``cos theta_i = sigma_i(Q_U^T Q_V)``; angles up
    to pi/4 are taken from the sines ``sigma(Q_V - Q_U Q_U^T Q_V)`` instead (Bjorck & Golub 1973), because
    arccos of a cosine near 1 keeps only half the digits (a 1e-8 angle would read as 1.5e-8 or 0). Both
    are clamped to [-1, 1]. A 1-D input is one direction. ``scipy.linalg.subspace_angles`` (1.17) uses the
    same two formulas but pairs its sine mask with the wrong end of the angles: it returns up to 4.5e-8
    for angles that are exactly 0 (tests/test_drift.py).

    Raises:
        ValueError: different shapes, ``k > d_model``, or a basis of rank below ``k``.
    """
    Qu, Qv = _orthonormal_bases(U, V)
    cross = Qu.T @ Qv
    cos = torch.linalg.svdvals(cross).clamp(-1.0, 1.0)  # descending: pairs with ascending angles
    sin = torch.linalg.svdvals(Qv - Qu @ cross).clamp(-1.0, 1.0).flip(0)  # ascending, same pairing
    return torch.where(cos**2 >= _SIN_BRANCH_COS2, torch.arcsin(sin), torch.arccos(cos))


def subspace_overlap(U: Basis, V: Basis) -> float:
    """``|Q_U^T Q_V|_F^2 / k`` in [0, 1]: the mean squared cosine of the principal angles (1 = same span)."""
    Qu, Qv = _orthonormal_bases(U, V)
    return float(torch.linalg.matrix_norm(Qu.T @ Qv) ** 2 / Qu.shape[1])


def grassmann_distance(U: Basis, V: Basis) -> float:
    """``sqrt(sum_i theta_i^2)``: the geodesic distance on the Grassmannian, in [0, sqrt(k) pi/2]."""
    return float(torch.linalg.vector_norm(principal_angles(U, V)))


def _centred_pair(X: Tensor, Y: Tensor, what: str) -> tuple[Tensor, Tensor]:
    """Column-centred float64 copies of two [batch, d] representations of the same rows."""
    X, Y = _as_float64(X, "X"), _as_float64(Y, "Y")
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"{what} compares two representations of the same rows, [batch, d_a] and [batch, d_b]; "
            f"got {tuple(X.shape)} and {tuple(Y.shape)}"
        )
    for name, x in (("X", X), ("Y", Y)):
        if (x == x[:1]).all():  # exact test on the raw rows: centring leaves rounding dust, not zeros
            raise ValueError(f"{what} is undefined for a constant representation ({name}: every row is the same)")
    return X - X.mean(0), Y - Y.mean(0)


def linear_cka(X: Float[Tensor, "batch d_a"], Y: Float[Tensor, "batch d_b"]) -> float:
    """Linear CKA (Kornblith et al. 2019, arXiv 1905.00414): ``|Y^T X|_F^2 / (|X^T X|_F |Y^T Y|_F)``, centred.

    Invariant to orthogonal maps and isotropic scaling, NOT to general invertible linear maps (a random
    one gave 0.816 on the same activations, §1.8), and sensitive to outlier dimensions such as BOS: report
    it next to probe transfer, never alone. With fewer rows than features the n x n Gram form
    ``<XX^T, YY^T>_F / (|XX^T|_F |YY^T|_F)`` is used; it is the same number, computed cheaper.

    Raises:
        ValueError: different numbers of rows (rows must be the same inputs), or a constant representation.
    """
    X, Y = _centred_pair(X, Y, "linear CKA")
    if X.shape[0] < max(X.shape[1], Y.shape[1]):
        K, L = X @ X.T, Y @ Y.T
        return float((K * L).sum() / (torch.linalg.matrix_norm(K) * torch.linalg.matrix_norm(L)))
    num = torch.linalg.matrix_norm(Y.T @ X) ** 2
    return float(num / (torch.linalg.matrix_norm(X.T @ X) * torch.linalg.matrix_norm(Y.T @ Y)))


def procrustes_distance(X: Float[Tensor, "batch d_a"], Y: Float[Tensor, "batch d_b"]) -> float:
    """SQUARED orthogonal Procrustes distance ``d^2 = 2 - 2 |X^T Y|_*`` (Ding, Denain, Steinhardt 2021).

    Both are centred and scaled to unit Frobenius norm, so ``d^2`` lies in [0, 2]: 0 when one is a
    rotation (or reflection, or rescaling) of the other. It is the squared distance, clamped at 0 (rounding
    can push ``2 - 2 |.|_*`` to -1e-16); take ``sqrt`` for the metric itself. Different widths are
    zero-padded to equal width; padding adds only zero rows or columns to ``X^T Y``, which leave its
    nuclear norm unchanged, so the rectangular ``X^T Y`` is used as is.

    Raises:
        ValueError: different numbers of rows, or a constant representation.
    """
    X, Y = _centred_pair(X, Y, "Procrustes distance")
    X, Y = X / torch.linalg.matrix_norm(X), Y / torch.linalg.matrix_norm(Y)
    nuclear = torch.linalg.matrix_norm(X.T @ Y, ord="nuc")
    return max(float(2 - 2 * nuclear), 0.0)


def transfer_matrix(
    reporters: Sequence[Callable[[Tensor], Tensor]],
    activations: Sequence[Float[Tensor, "batch d_model"]],
    labels: Bool[Tensor, " batch"],
) -> Float[Tensor, "n_checkpoints n_checkpoints"]:
    """``M[s, s'] =`` AUROC of the reporter fitted at checkpoint ``s`` scored on checkpoint ``s'``'s activations.

    The probe set is fixed (§1): every checkpoint's activations hold the same rows, in the order of
    ``labels``. The diagonal is each checkpoint's own reporter; :func:`transfer_gap` gives the cost of
    reusing an old one. Statement reporters only (``r(x)``); contrast reporters need both halves of a pair.

    Raises:
        ValueError: unequal numbers of reporters and checkpoints, a contrast reporter, a row count that
            differs from ``labels``, or a reporter whose width differs from a checkpoint's (transport it
            first, §5.6), naming both widths and the checkpoint.
    """
    labels = check_labels("labels", torch.as_tensor(labels).reshape(-1))
    if len(reporters) != len(activations) or not reporters:
        raise ValueError(
            f"need one reporter per checkpoint; got {len(reporters)} reporters, {len(activations)} checkpoints"
        )
    for i, r in enumerate(reporters):
        if getattr(r, "reads", "statement") != "statement":
            raise ValueError(f"reporter {i} reads {r.reads!r}; transfer_matrix scores statement reporters only")
    for j, x in enumerate(activations):
        if x.ndim != 2 or x.shape[0] != labels.shape[0]:
            raise ValueError(
                f"checkpoint {j}: activations {tuple(x.shape)} are not [batch, d_model] with {labels.shape[0]} rows"
            )
    rows = []
    for i, r in enumerate(reporters):
        w = getattr(r, "w", None)
        for j, x in enumerate(activations):
            if w is not None and w.shape[-1] != x.shape[-1]:
                raise ValueError(
                    f"reporter {i} reads d_model={w.shape[-1]} but checkpoint {j}'s activations have width "
                    f"{x.shape[-1]}; transport the reporter to that basis first"
                )
        scores = torch.stack([torch.as_tensor(r(x)).to(torch.float64).reshape(-1) for x in activations], dim=1)
        rows.append(auroc_columns(scores, labels))
    return torch.stack(rows)


def transfer_gap(M: Float[Tensor, "n_checkpoints n_checkpoints"]) -> Float[Tensor, "n_checkpoints n_checkpoints"]:
    """``M[s, s'] - M[s', s']``: how much the reporter from ``s`` loses on ``s'`` against one re-fitted there."""
    M = torch.as_tensor(M)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"transfer_gap needs a square transfer matrix; got shape {tuple(M.shape)}")
    return M - M.diagonal()[None, :]


def noise_floor(
    metric: Callable[[Rows, Rows], float], x: Rows, *, n_resamples: int = 100, seed: int = 0
) -> dict[str, float]:
    """The metric between two DISJOINT random halves of one checkpoint's rows: what "no drift" looks like.

    Any direction, subspace or probe fitted on a finite probe set moves between resamples of it, so a
    cosine of 0.97 between checkpoints means nothing if two halves of ONE checkpoint also give 0.97.
    Only drift beyond this floor counts (§1.8); test it with :func:`above_floor`.

    ``x`` is the rows: a tensor, or a tuple of tensors with the same first axis (e.g. ``(acts, labels)``),
    split alike; each call gets two halves of ``n // 2`` rows (equal sizes; an odd row out is dropped).
    The metric should compare what is *estimated* from each half, e.g. a refitted direction::

        floor = noise_floor(lambda a, b: cosine(fit_mean_diff(*a, site=s).v, fit_mean_diff(*b, site=s).v),
                            (acts, labels))

    Paired-row metrics (CKA, Procrustes) are NOT meaningful between halves: the halves hold different
    inputs, and CKA between them is ~0 on i.i.d. rows, not ~1. For those pass ``x = (A_t, A_t2)`` and
    compare the halves' values, e.g. ``lambda a, b: linear_cka(*a) - linear_cka(*b)``: its spread is the
    resample noise of ``linear_cka(A_t, A_t2)``.

    Returns:
        ``mean``, ``std`` (unbiased), and the 5% and 95% quantiles ``q05`` / ``q95`` over resamples.

    Raises:
        ValueError: fewer than 4 rows, fewer than 2 resamples, tensors with different row counts, or a
            metric that returns NaN or inf.
    """
    if not callable(metric):
        raise TypeError(f"metric must be a function of two halves; got {type(metric).__name__}")
    check_number("n_resamples", n_resamples, kind=int, low=2)
    check_number("seed", seed, kind=int, low=0)
    parts = x if isinstance(x, tuple) else (x,)
    if not parts or not all(isinstance(p, Tensor) and p.ndim >= 1 for p in parts):
        raise TypeError(f"x must be a tensor or a tuple of tensors sharing the row axis; got {type(x).__name__}")
    n = parts[0].shape[0]
    if any(p.shape[0] != n for p in parts):
        raise ValueError(f"the tensors in x must share the first (row) axis; got {[tuple(p.shape) for p in parts]}")
    if n < 4:
        raise ValueError(f"noise_floor needs >= 4 rows (two halves of >= 2); got {n} rows")
    gen = torch.Generator().manual_seed(seed)
    half = n // 2
    values = []
    for k in range(n_resamples):
        perm = torch.randperm(n, generator=gen)
        pick_a = tuple(p[perm[:half]] for p in parts)
        pick_b = tuple(p[perm[half : 2 * half]] for p in parts)
        value = float(metric(*((pick_a, pick_b) if isinstance(x, tuple) else (pick_a[0], pick_b[0]))))
        if not math.isfinite(value):
            raise ValueError(f"metric returned {value} on resample {k}")
        values.append(value)
    v = torch.tensor(values, dtype=torch.float64)
    return {
        "mean": float(v.mean()),
        "std": float(v.std()),
        "q05": float(v.quantile(0.05)),
        "q95": float(v.quantile(0.95)),
    }


def above_floor(value: float, floor: dict[str, float], *, higher_is_drift: bool) -> bool:
    """Whether ``value`` shows drift beyond a :func:`noise_floor`.

    For a distance (Grassmann distance, 1 - overlap) ``higher_is_drift=True``: drift is a value above the
    floor's 95% quantile. For a similarity (cosine, subspace overlap, CKA) ``higher_is_drift=False``:
    drift is a value BELOW the floor's 5% quantile, since resampling alone already lowers a similarity
    from 1 to the floor. (CKA's floor comes from paired rows, not from two halves: see :func:`noise_floor`.)
    """
    missing = {"q05", "q95"} - set(floor) if isinstance(floor, dict) else {"q05", "q95"}
    if missing:
        raise ValueError(f"floor must be a noise_floor result (with 'q05' and 'q95'); it lacks {sorted(missing)}")
    return value > floor["q95"] if higher_is_drift else value < floor["q05"]
