"""Drift metrics against closed forms, numpy/scipy/sklearn float64 oracles, and a planted rotation trajectory."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from sklearn.metrics import roc_auc_score

from elk_lens.drift import (
    above_floor,
    cosine,
    cosine_series,
    grassmann_distance,
    linear_cka,
    noise_floor,
    principal_angles,
    procrustes_distance,
    subspace_overlap,
    transfer_gap,
    transfer_matrix,
)
from elk_lens.metrics import auroc
from elk_lens.reporters import Reporter, fit_mean_diff

TRAJ_TOL = 1e-6  # the bound for the planted trajectory (measured drift ~1e-15)
SCIPY_TOL = 1e-10  # principal angles vs scipy.linalg.subspace_angles
ZERO_ANGLE_TOL = 1e-14  # angles that are exactly 0 (measured ~4e-16)
CKA_ORACLE_TOL = 1e-12  # same formula recomputed in numpy float64
HSIC_TOL = 1e-10  # HSIC-with-linear-kernels definition: a different order of operations
INVARIANCE_TOL = 1e-12  # CKA = 1 under orthogonal maps and scaling
PROCRUSTES_TOL = 1e-10  # d^2 of a rotated copy
AUROC_TOL = 1e-12  # as tests/test_metrics.py

D, N, THETA, STEPS, SEPARATION = 16, 400, 0.35, 8, 1.5
SITE = "blocks.0.hook_resid_post"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=torch.float64)


def _orthogonal(d: int, seed: int) -> torch.Tensor:
    return torch.linalg.qr(_randn(d, d, seed=seed)).Q


def _plane_rotation(u: torch.Tensor, w: torch.Tensor, phi: float) -> torch.Tensor:
    """Rotation by ``phi`` in the plane of orthonormal ``u, w``; identity on its complement."""
    eye = torch.eye(u.shape[0], dtype=torch.float64)
    return (
        eye
        + (math.cos(phi) - 1) * (torch.outer(u, u) + torch.outer(w, w))
        + math.sin(phi) * (torch.outer(w, u) - torch.outer(u, w))
    )


def _planted(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A_0 with the class-mean difference exactly ``2 * SEPARATION * u``, and an orthonormal ``w`` beside ``u``."""
    y = torch.arange(N) % 2 == 0
    noise = _randn(N, D, seed=seed)
    noise[y] -= noise[y].mean(0)  # within-class centred: the class means are exactly the planted ones
    noise[~y] -= noise[~y].mean(0)
    u = _randn(D, seed=seed + 1)
    u /= u.norm()
    w = _randn(D, seed=seed + 2)
    w -= (w @ u) * u
    w /= w.norm()
    A0 = noise + torch.where(y[:, None], SEPARATION, -SEPARATION) * u
    return A0, y, u, w


@pytest.fixture(scope="module")
def trajectory():
    """A_t = A_0 R(THETA * t) for t < STEPS, and the mean-diff reporter fitted at every step."""
    A0, y, u, w = _planted()
    acts = [A0 @ _plane_rotation(u, w, THETA * t) for t in range(STEPS)]
    reporters = [fit_mean_diff(a, y, site=SITE) for a in acts]
    return acts, y, reporters


# ---------------------------------------------------------------- cosine and principal angles on the trajectory


def test_trajectory_cosines_follow_the_rotation(trajectory):
    acts, y, reporters = trajectory
    expected = torch.tensor([math.cos(THETA * t) for t in range(STEPS)], dtype=torch.float64)
    for name in ("v", "w"):  # the concept vector and the (Platt-scaled) readout covector
        series = cosine_series(torch.stack([getattr(r, name) for r in reporters]))
        drift = (series["to_first"] - expected).abs().max()
        assert drift < TRAJ_TOL, f"{name}: cos to first off by {drift:.2e}"
        assert math.isnan(series["to_previous"][0])
        drift_prev = (series["to_previous"][1:] - math.cos(THETA)).abs().max()
        assert drift_prev < TRAJ_TOL, f"{name}: cos to previous off by {drift_prev:.2e}"
        for t in range(STEPS):
            assert abs(cosine(getattr(reporters[t], name), getattr(reporters[0], name)) - expected[t]) < TRAJ_TOL
    assert series["to_first"][-1] < 0  # THETA * 7 > pi / 2: signed, the readout has flipped


def test_trajectory_principal_angles_equal_the_rotation(trajectory):
    _, _, reporters = trajectory
    for t in range(STEPS):
        angle = principal_angles(reporters[0].v, reporters[t].v)
        phi = THETA * t
        expected = min(phi, math.pi - phi)  # a 1-D subspace has no sign
        assert angle.shape == (1,)
        assert abs(float(angle[0]) - expected) < TRAJ_TOL, f"t={t}: {float(angle[0])} vs {expected}"
        assert abs(grassmann_distance(reporters[0].v, reporters[t].v) - expected) < TRAJ_TOL
        assert abs(subspace_overlap(reporters[0].v, reporters[t].v) - math.cos(phi) ** 2) < TRAJ_TOL


def test_tiny_angles_keep_their_digits():
    """arccos(cos 1e-9) is 0 in float64; the sine branch recovers the angle."""
    u, w = torch.eye(4, dtype=torch.float64)[:2]
    for eps in (1e-9, 1e-5, 0.5, 1.2):
        got = float(principal_angles(u, math.cos(eps) * u + math.sin(eps) * w)[0])
        assert abs(got - eps) < 1e-15 + 1e-14 * eps, f"eps={eps}: got {got}"


@pytest.mark.parametrize("d,k", [(10, 1), (10, 3), (50, 4), (12, 6)])
@pytest.mark.parametrize("seed", range(3))
def test_principal_angles_match_scipy(d, k, seed):
    U, V = _randn(d, k, seed=seed), _randn(d, k, seed=seed + 100)
    ours = principal_angles(U, V)
    ref = np.sort(scipy.linalg.subspace_angles(U.numpy(), V.numpy()))
    err = np.abs(ours.numpy() - ref).max()
    assert err < SCIPY_TOL, f"max |ours - scipy| = {err:.2e}"
    assert torch.all(ours.diff() >= 0), "angles must be ascending"
    assert abs(subspace_overlap(U, V) - float((ours.cos() ** 2).mean())) < SCIPY_TOL
    assert abs(grassmann_distance(U, V) - float(np.sqrt((ref**2).sum()))) < SCIPY_TOL


@pytest.mark.parametrize("d,k", [(8, 5), (6, 6)])
@pytest.mark.parametrize("seed", range(3))
def test_principal_angles_of_intersecting_subspaces(d, k, seed):
    """Two k-dim subspaces of R^d share >= 2k - d dimensions: that many angles are exactly 0.

    Here scipy 1.17 gives up to 4.5e-8 for those zeros (it takes them from arccos: its sine mask is
    aligned with the descending cosines, its angles with ascending ones), so it is the oracle only for
    the other angles.
    """
    U, V = _randn(d, k, seed=seed), _randn(d, k, seed=seed + 100)
    ours = principal_angles(U, V)
    shared = 2 * k - d
    assert ours[:shared].abs().max() < ZERO_ANGLE_TOL, ours[:shared]
    ref = np.sort(scipy.linalg.subspace_angles(U.numpy(), V.numpy()))
    if shared < k:
        assert np.abs(ours.numpy()[shared:] - ref[shared:]).max() < SCIPY_TOL


def test_principal_angles_ignore_the_choice_of_basis():
    U = _randn(12, 3, seed=0)
    same_span = U @ _randn(3, 3, seed=1)  # another (non-orthonormal) basis of the same span
    assert principal_angles(U, same_span).abs().max() < SCIPY_TOL
    assert abs(subspace_overlap(U, same_span) - 1) < SCIPY_TOL


def test_principal_angles_errors():
    with pytest.raises(ValueError, match=r"one shape \[d_model, k\]; got \(10, 2\) and \(10, 3\)"):
        principal_angles(_randn(10, 2, seed=0), _randn(10, 3, seed=1))
    with pytest.raises(ValueError, match="k=4 for d_model=3"):
        principal_angles(_randn(3, 4, seed=0), _randn(3, 4, seed=1))
    rank1 = torch.ones(5, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="basis U has rank 1 < k=2"):
        subspace_overlap(rank1, _randn(5, 2, seed=0))


def test_cosine_errors():
    with pytest.raises(ValueError, match="zero vector"):
        cosine(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match=r"got \(3,\) and \(4,\)"):
        cosine(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match=r"zero direction at checkpoint\(s\) \[1\]"):
        cosine_series(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    assert cosine(torch.tensor([1.0, 0.0]), torch.tensor([-2.0, 0.0])) == -1.0  # signed


# ---------------------------------------------------------------- linear CKA


def _cka_numpy(X: np.ndarray, Y: np.ndarray) -> float:
    X, Y = X - X.mean(0), Y - Y.mean(0)
    return np.linalg.norm(Y.T @ X) ** 2 / (np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y))


def _cka_hsic(X: np.ndarray, Y: np.ndarray) -> float:
    """Kornblith et al. eq. 1-3: HSIC(K, L) = tr(K H L H) / (n-1)^2 with linear kernels on the raw rows."""
    n = X.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = X @ X.T, Y @ Y.T

    def hsic(A, B):
        return np.trace(A @ H @ B @ H) / (n - 1) ** 2

    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


@pytest.mark.parametrize("n,d_a,d_b", [(200, 12, 7), (20, 50, 30)])  # feature form, then the n < d Gram form
def test_cka_matches_numpy_and_hsic(n, d_a, d_b):
    X = _randn(n, d_a, seed=0) + 3.0  # an offset, so centring matters
    Y = X[:, :d_b] @ _randn(d_b, d_b, seed=1) + 0.5 * _randn(n, d_b, seed=2)
    ours = linear_cka(X, Y)
    err_np, err_hsic = abs(ours - _cka_numpy(X.numpy(), Y.numpy())), abs(ours - _cka_hsic(X.numpy(), Y.numpy()))
    assert err_np < CKA_ORACLE_TOL, f"vs numpy: {err_np:.2e}"
    assert err_hsic < HSIC_TOL, f"vs HSIC: {err_hsic:.2e}"
    assert 0 < ours < 1


@pytest.mark.parametrize("n,d", [(200, 12), (20, 50)])
def test_cka_invariances(n, d):
    X = _randn(n, d, seed=0)
    assert abs(linear_cka(X, X) - 1) < INVARIANCE_TOL
    assert abs(linear_cka(X, X @ _orthogonal(d, seed=1)) - 1) < INVARIANCE_TOL
    assert abs(linear_cka(X, -3.7 * X) - 1) < INVARIANCE_TOL
    assert abs(linear_cka(X, X + 5.0) - 1) < INVARIANCE_TOL  # translation: centred away
    invertible = _randn(d, d, seed=2)  # random Gaussian: invertible, not orthogonal
    assert linear_cka(X, X @ invertible) < 0.99


def test_cka_errors():
    with pytest.raises(ValueError, match=r"same rows.*got \(10, 3\) and \(9, 3\)"):
        linear_cka(_randn(10, 3, seed=0), _randn(9, 3, seed=1))
    with pytest.raises(ValueError, match="constant representation \\(Y"):
        linear_cka(_randn(10, 3, seed=0), torch.full((10, 3), 0.1, dtype=torch.float64))


# ---------------------------------------------------------------- Procrustes


def _procrustes_numpy(X: np.ndarray, Y: np.ndarray) -> float:
    X, Y = X - X.mean(0), Y - Y.mean(0)
    X, Y = X / np.linalg.norm(X), Y / np.linalg.norm(Y)
    width = max(X.shape[1], Y.shape[1])
    X, Y = (np.pad(Z, ((0, 0), (0, width - Z.shape[1]))) for Z in (X, Y))  # explicit zero-padding
    return 2 - 2 * np.linalg.svd(X.T @ Y, compute_uv=False).sum()


def test_procrustes_closed_forms():
    X = _randn(100, 8, seed=0) + 1.0
    rotated = X @ _orthogonal(8, seed=1)
    assert procrustes_distance(X, rotated) < PROCRUSTES_TOL
    assert procrustes_distance(X, X) < PROCRUSTES_TOL
    assert procrustes_distance(X, 4.0 * rotated - 2.0) < PROCRUSTES_TOL  # scale and shift normalised away
    padded = torch.cat([X, torch.zeros(100, 5, dtype=torch.float64)], dim=1)
    assert procrustes_distance(X, padded) < PROCRUSTES_TOL
    independent = _randn(100, 8, seed=2)
    d2 = procrustes_distance(X, independent)
    assert d2 > 0.5, d2
    assert d2 == pytest.approx(procrustes_distance(independent, X), abs=1e-14)
    assert d2 <= 2


@pytest.mark.parametrize("d_a,d_b", [(5, 8), (8, 8), (12, 3)])
def test_procrustes_matches_padded_numpy(d_a, d_b):
    X, Y = _randn(60, d_a, seed=0), _randn(60, d_b, seed=1)
    Y[:, : min(d_a, d_b)] += X[:, : min(d_a, d_b)]
    err = abs(procrustes_distance(X, Y) - _procrustes_numpy(X.numpy(), Y.numpy()))
    assert err < 1e-12, f"vs numpy with explicit padding: {err:.2e}"


def test_procrustes_errors():
    with pytest.raises(ValueError, match="Procrustes distance is undefined for a constant"):
        procrustes_distance(torch.ones(6, 2), _randn(6, 2, seed=0))


# ---------------------------------------------------------------- transfer matrices


def test_transfer_matrix_on_the_trajectory(trajectory):
    acts, y, reporters = trajectory
    M = transfer_matrix(reporters, acts, y)
    assert M.shape == (STEPS, STEPS)
    for i in range(STEPS):
        assert abs(M[i, i] - auroc(reporters[i](acts[i]), y)) < AUROC_TOL
        for j in range(STEPS):
            ref = roc_auc_score(y.numpy(), reporters[i](acts[j]).numpy())
            assert abs(M[i, j] - ref) < AUROC_TOL
    gap = transfer_gap(M)
    assert torch.all(gap.diagonal() == 0)
    assert torch.allclose(gap, M - M.diagonal()[None, :], atol=0)
    assert M[-1, -1] > 0.9 and M[0, -1] < 0.5  # the rotation past pi/2 flips the old reporter
    assert gap[0, -1] < -0.5


def test_transfer_matrix_constant_row_on_identical_activations(trajectory):
    acts, y, reporters = trajectory
    M = transfer_matrix(reporters[:4], [acts[0]] * 4, y)
    assert torch.all(M[:, :1] == M), M


def test_transfer_matrix_errors(trajectory):
    acts, y, reporters = trajectory
    wider = acts[:2] + [torch.cat([acts[2], acts[2][:, :2]], dim=1)]
    with pytest.raises(ValueError, match="reporter 0 reads d_model=16 but checkpoint 2's activations have width 18"):
        transfer_matrix(reporters[:3], wider, y)
    contrast = Reporter(reporters[0].w, 0.0, reporters[0].v, "ccs", SITE, reads="contrast")
    with pytest.raises(ValueError, match="reporter 1 reads 'contrast'"):
        transfer_matrix([reporters[0], contrast], acts[:2], y)
    with pytest.raises(ValueError, match="2 reporters, 3 checkpoints"):
        transfer_matrix(reporters[:2], acts[:3], y)
    with pytest.raises(ValueError, match=f"checkpoint 1: activations \\(10, 16\\) are not .* {N} rows"):
        transfer_matrix(reporters[:2], [acts[0], acts[1][:10]], y)
    with pytest.raises(ValueError, match="square"):
        transfer_gap(torch.zeros(2, 3))
    two = y.long() * 2  # labels outside {0, 1} are refused, never cast to True
    with pytest.raises(ValueError, match=r"labels must be bool or 0/1; got 2 at index \d+"):
        transfer_matrix(reporters[:2], acts[:2], two)


# ---------------------------------------------------------------- noise floor


def _mean_diff(rows: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = rows
    return x[y].mean(0) - x[~y].mean(0)


def _direction_floor_metric(a, b) -> float:
    return cosine(_mean_diff(a), _mean_diff(b))


def test_noise_floor_is_deterministic_per_seed():
    A0, y, _, _ = _planted()
    first = noise_floor(_direction_floor_metric, (A0, y), n_resamples=50, seed=3)
    assert first == noise_floor(_direction_floor_metric, (A0, y), n_resamples=50, seed=3)
    assert first != noise_floor(_direction_floor_metric, (A0, y), n_resamples=50, seed=4)
    assert set(first) == {"mean", "std", "q05", "q95"}
    assert first["q05"] <= first["mean"] <= first["q95"] and first["std"] > 0


def test_noise_floor_halves_are_disjoint_and_split_alike():
    n = 11
    seen = []

    def record(a, b) -> float:
        seen.append((a, b))
        return 0.0

    noise_floor(record, (torch.arange(n), 10 * torch.arange(n)), n_resamples=20, seed=0)
    assert len(seen) == 20
    for (ia, ta), (ib, tb) in seen:
        assert len(ia) == len(ib) == n // 2
        assert not set(ia.tolist()) & set(ib.tolist()), "halves overlap"
        assert torch.equal(ta, 10 * ia) and torch.equal(tb, 10 * ib), "tuple members split differently"
    assert len({tuple(a.tolist()) for (a, _), _ in seen}) > 1, "every resample drew the same half"


def test_direction_drift_counts_only_above_the_floor():
    """The refit-on-halves cosine floor of A_0: a small rotation hides in it, a large one does not."""
    A0, y, u, w = _planted()
    floor = noise_floor(_direction_floor_metric, (A0, y), n_resamples=100, seed=0)
    assert 0.9 < floor["q05"] < 1, floor
    v0 = _mean_diff((A0, y))
    # measured: q05 = 0.9405, so a THETA = 0.35 rad step (cos 0.9394) sits right at the floor; not asserted
    for phi, drift in ((0.01, False), (0.1, False), (3 * THETA, True)):
        cos = cosine(v0, _mean_diff((A0 @ _plane_rotation(u, w, phi), y)))
        assert above_floor(cos, floor, higher_is_drift=False) is drift, (phi, cos, floor)


def test_cka_between_unpaired_halves_is_not_a_floor():
    """What noise_floor's docstring warns: CKA needs paired rows; between two halves it is ~0, not ~1."""
    X = _randn(400, 2, seed=0) @ _randn(2, 16, seed=1) + 0.05 * _randn(400, 16, seed=2)  # rank-2 structure
    unpaired = noise_floor(linear_cka, X, n_resamples=50, seed=0)
    assert unpaired["q95"] < 0.1, unpaired
    Q = _orthogonal(16, seed=3)
    paired = noise_floor(lambda a, b: linear_cka(*a) - linear_cka(*b), (X, X @ Q), n_resamples=20, seed=0)
    assert max(abs(paired["q05"]), abs(paired["q95"])) < INVARIANCE_TOL
    mixed = noise_floor(lambda a, b: linear_cka(*a) - linear_cka(*b), (X, X @ _randn(16, 16, seed=4)), seed=0)
    assert mixed["std"] > 0


def test_above_floor_directions_and_noise_floor_errors():
    floor = {"mean": 0.95, "std": 0.01, "q05": 0.93, "q95": 0.97}
    assert above_floor(0.9, floor, higher_is_drift=False) and not above_floor(0.94, floor, higher_is_drift=False)
    assert above_floor(0.98, floor, higher_is_drift=True) and not above_floor(0.96, floor, higher_is_drift=True)
    with pytest.raises(ValueError, match="got 3 rows"):
        noise_floor(lambda a, b: 0.0, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="share the first"):
        noise_floor(lambda a, b: 0.0, (torch.zeros(6, 2), torch.zeros(5)))
    with pytest.raises(ValueError, match="metric returned nan on resample 0"):
        noise_floor(lambda a, b: math.nan, torch.zeros(6, 2))
    with pytest.raises(ValueError, match=r"n_resamples must lie in \[2, inf\); got 1"):
        noise_floor(lambda a, b: 0.0, torch.zeros(6, 2), n_resamples=1)
    with pytest.raises(TypeError, match="n_resamples must be an int; got 10.0"):
        noise_floor(lambda a, b: 0.0, torch.zeros(6, 2), n_resamples=10.0)
    with pytest.raises(TypeError, match="x must be a tensor or a tuple of tensors"):
        noise_floor(lambda a, b: 0.0, [[0.0, 1.0]] * 6)
    with pytest.raises(ValueError, match=r"floor must be a noise_floor result .* lacks \['q05'\]"):
        above_floor(0.9, {"q95": 0.97}, higher_is_drift=False)
