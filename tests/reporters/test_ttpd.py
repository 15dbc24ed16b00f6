"""TTPD against closed forms, scikit-learn, and the generalization to negations that motivates it."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from elk_lens.metrics import auroc
from elk_lens.reporters.logistic import fit_logistic
from elk_lens.reporters.ttpd import fit_ttpd, ttpd_directions

OLS_TOL = 1e-10  # lstsq vs the normal equations, both float64 on well-conditioned 2-column designs
RECOVERY_COS = 0.99
REPEAT_TOL = 1e-12  # one float64 computation repeated: rounding only
SCORE_TOL = 1e-4  # two L-BFGS fits (ours at C=1e6, sklearn unpenalized) stop at gradient tolerances
D = 16


def _cos(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _orthogonal_directions(rng, *norms):
    """Orthogonal directions of the given norms (Gram-Schmidt via QR)."""
    q, _ = np.linalg.qr(rng.normal(size=(D, len(norms))))
    return [q[:, i] * norm for i, norm in enumerate(norms)]


def _sample(rng, mu, t_g, t_p, truth, pol, noise, extra=None):
    """a = mu + tau t_G + tau p t_P (+ p * extra) + noise, the TTPD generative model."""
    tau, p = truth * 2.0 - 1, pol * 2.0 - 1
    a = mu + tau[:, None] * t_g + (tau * p)[:, None] * t_p + rng.normal(size=(len(truth), D)) * noise
    if extra is not None:
        a += p[:, None] * extra
    return a


def _mixed_groups(seed: int, n: int = 2000, noise: float = 0.1, n_groups: int = 3, extra_norm: float = 0.0):
    """Rows with random truth and polarity inside each of ``n_groups`` datasets with distinct means."""
    rng = np.random.default_rng(seed)
    t_g, t_p, extra = _orthogonal_directions(rng, 1.0, 1.5, extra_norm)
    mus = rng.normal(size=(n_groups, D)) * 3
    groups = rng.integers(n_groups, size=n)
    truth, pol = rng.random(n) < 0.5, rng.random(n) < 0.5
    x = _sample(rng, mus[groups], t_g, t_p, truth, pol, noise, extra)
    return x, truth, pol, groups, t_g, t_p


def _numpy_ols(x, truth, pol, groups):
    centred = x.copy()
    for g in np.unique(groups):
        centred[groups == g] -= x[groups == g].mean(0)
    tau = truth * 2.0 - 1
    design = np.stack([tau, tau * (pol * 2.0 - 1)], axis=1)
    return np.linalg.inv(design.T @ design) @ design.T @ centred, centred


def test_directions_recover_the_generative_model_and_equal_closed_form_ols():
    x, truth, pol, groups, t_g_true, t_p_true = _mixed_groups(0)
    t_g, t_p = ttpd_directions(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(truth), pol, groups)
    assert t_g.dtype == torch.float64
    assert _cos(t_g, t_g_true) > RECOVERY_COS and _cos(t_p, t_p_true) > RECOVERY_COS, (
        f"cos(t_G)={_cos(t_g, t_g_true):.4f}, cos(t_P)={_cos(t_p, t_p_true):.4f}"
    )
    # the OLS itself, on the same float32-rounded inputs the function saw
    x32 = torch.as_tensor(x, dtype=torch.float32).double().numpy()
    expected, _ = _numpy_ols(x32, truth, pol, groups)
    drift = max(np.abs(t_g.numpy() - expected[0]).max(), np.abs(t_p.numpy() - expected[1]).max())
    assert drift < OLS_TOL, f"OLS drift {drift:.2e}"


def test_balanced_t_g_is_half_the_centred_mean_difference():
    """With every (group, truth, polarity) cell the same size, X^T X = n I and t_G = (mu_true - mu_false) / 2."""
    rng = np.random.default_rng(1)
    t_g, t_p = _orthogonal_directions(rng, 1.0, 2.0)
    per_cell, n_groups = 50, 3
    cells = [(g, tr, po) for g in range(n_groups) for tr in (False, True) for po in (False, True)]
    groups, truth, pol = (np.repeat(np.array(col), per_cell) for col in zip(*cells, strict=True))
    mus = rng.normal(size=(n_groups, D)) * 3
    x = _sample(rng, mus[groups], t_g, t_p, truth, pol, noise=0.5)
    got_g, got_p = ttpd_directions(torch.as_tensor(x), torch.as_tensor(truth), torch.as_tensor(pol), groups)
    _, centred = _numpy_ols(x, truth, pol, groups)
    half_diff = (centred[truth].mean(0) - centred[~truth].mean(0)) / 2
    agree = truth == pol  # tau * p = +1
    half_diff_p = (centred[agree].mean(0) - centred[~agree].mean(0)) / 2
    drift = max(np.abs(got_g.numpy() - half_diff).max(), np.abs(got_p.numpy() - half_diff_p).max())
    assert drift < OLS_TOL, f"balanced closed form drift {drift:.2e}"


def test_reporter_folds_the_2d_logistic_regression_exactly():
    """Scores on raw x equal sklearn's 2-D unpenalized fit on (a . t_G, a . d_P), with d_P from sklearn too."""
    # noisy, with polarity as a weak mean shift: neither truth nor polarity is separable, so the
    # unpenalized optima exist and both optimizers reach them
    x, truth, pol, groups, _, _ = _mixed_groups(2, noise=1.0, extra_norm=0.3)
    xt = torch.as_tensor(x)
    rep = fit_ttpd(xt, torch.as_tensor(truth), torch.as_tensor(pol), groups=groups, site="blocks.2.hook_resid_post")
    t_g, _ = ttpd_directions(xt, torch.as_tensor(truth), torch.as_tensor(pol), groups)
    d_p = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10000).fit(x, pol).coef_[0]
    features = np.stack([x @ t_g.numpy(), x @ d_p], axis=1)
    ref = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10000).fit(features, truth)
    ours, theirs = rep(xt).numpy(), ref.decision_function(features)
    drift = np.abs(ours - theirs).max() / np.abs(theirs).max()
    assert drift < SCORE_TOL, f"score drift {drift:.2e} (relative to max |score|)"
    coef = np.array([rep.provenance["coef_tG"], rep.provenance["coef_dP"]])
    np.testing.assert_allclose(coef, ref.coef_[0], rtol=SCORE_TOL)
    assert abs(rep.b - ref.intercept_[0]) < SCORE_TOL
    # v is t_G, though not bitwise: the same lstsq run twice differs by rounding when BLAS picks another
    # thread split under load (seen once in ~40 runs while other jobs ran)
    torch.testing.assert_close(rep.v, t_g, rtol=0, atol=REPEAT_TOL)
    assert rep.method == "ttpd" and rep.site == "blocks.2.hook_resid_post"


def test_generalizes_to_negations_where_affirmative_logistic_regression_fails():
    """|t_P| > |t_G|: an affirmative-only probe learns t_G + t_P, which is anti-aligned with truth on negations."""
    rng = np.random.default_rng(3)
    t_g, t_p = _orthogonal_directions(rng, 1.0, 2.5)
    n_topics, per_group = 3, 400  # per topic, an affirmative and a negated dataset, as in TIU
    mus = rng.normal(size=(2 * n_topics + 1, D)) * 3
    xs, truths, pols, groups = [], [], [], []
    for group in range(2 * n_topics + 1):  # even: affirmative, odd and the last: negated
        truth = rng.random(per_group) < 0.5
        pol = np.full(per_group, group % 2 == 0 and group < 2 * n_topics)
        xs.append(_sample(rng, mus[group], t_g, t_p, truth, pol, noise=0.5))
        truths.append(truth), pols.append(pol), groups.append(np.full(per_group, group))
    train = slice(0, 2 * n_topics * per_group)  # the last group (a new topic, negated) is held out
    x, truth, pol, group = (torch.as_tensor(np.concatenate(a)) for a in (xs, truths, pols, groups))
    held_out_x, held_out_y = x[train.stop :], truth[train.stop :]
    affirmative = pol[train]
    lr = fit_logistic(x[train][affirmative], truth[train][affirmative], site="s")
    ttpd = fit_ttpd(x[train], truth[train], pol[train], groups=group[train], site="s")
    lr_auroc, ttpd_auroc = auroc(lr(held_out_x), held_out_y), auroc(ttpd(held_out_x), held_out_y)
    assert lr_auroc < 0.2 and ttpd_auroc > 0.95, f"held-out negated AUROC: LR {lr_auroc:.3f}, TTPD {ttpd_auroc:.3f}"


def _small():
    rng = np.random.default_rng(4)
    x = torch.as_tensor(rng.normal(size=(40, 4)))
    truth = torch.arange(40) % 2 == 0
    pol = (torch.arange(40) // 2) % 2 == 0
    return x, truth, pol


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(polarity=None), "TTPD needs a polarity column \\(affirmative vs negated statements\\)"),
        (dict(polarity=torch.ones(39, dtype=torch.bool)), "polarity must have one entry per row \\(40\\)"),
        (dict(polarity=torch.ones(40, dtype=torch.bool)), "needs both affirmative and negated .* only affirmative"),
        (dict(polarity=torch.zeros(40, dtype=torch.bool)), "needs both affirmative and negated .* only negated"),
        (dict(polarity=torch.arange(40) % 2 * 2 - 1), "polarity must be bool .* got values \\[-1, 1\\]"),
        (dict(y=torch.ones(40, dtype=torch.bool)), "needs both classes"),
        (dict(groups=torch.zeros(41, dtype=torch.long)), "groups must have one dataset id per row \\(40\\)"),
        (dict(groups=torch.arange(40) // 5 * 7), "cell \\(group=0, truth=True, polarity=negated\\) has 1"),
    ],
)
def test_errors_name_the_problem(change, match):
    x, truth, pol = _small()
    args = dict(x=x, y=truth, polarity=pol, groups=None) | change
    with pytest.raises(ValueError, match=match):
        fit_ttpd(args["x"], args["y"], args["polarity"], groups=args["groups"], site="s")
    with pytest.raises(ValueError, match=match):
        ttpd_directions(args["x"], args["y"], args["polarity"], args["groups"])


def test_non_finite_and_small_cells_are_refused():
    x, truth, pol = _small()
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="activations at blocks.0.hook_resid_pre contain NaN or inf"):
        fit_ttpd(bad, truth, pol, site="blocks.0.hook_resid_pre")
    few = truth.clone()
    few[(~pol) & (~truth)] = True  # negated rows: all true
    few[torch.nonzero(~pol)[0]] = False  # ... but one
    with pytest.raises(ValueError, match="cell \\(group=0, truth=False, polarity=negated\\) has 1"):
        fit_ttpd(x, few, pol, site="s")
    # a group holding one polarity only (TIU's layout: cities vs neg_cities) is fine
    rep = fit_ttpd(x, truth, pol, groups=pol.long() + 5, site="s")
    assert rep.provenance["n_groups"] == 2 and torch.isfinite(rep.w).all()


def test_the_directions_are_the_same_bits_every_call():
    """torch.linalg.lstsq's default CPU driver (gelsy) returned different last bits on the same input from call
    to call (about 1 call in 10 on one thread, in a plain process; not in pytest's, so the check runs in a
    fresh one), and TTPD's unpenalized fits magnified that into different AUROCs between runs. The 2 x 2
    normal equations are deterministic."""
    script = """
import hashlib, torch
torch.set_num_threads(1)
from elk_lens.reporters.ttpd import ttpd_directions
g = torch.Generator().manual_seed(0)
x = torch.randn(240, 384, generator=g, dtype=torch.float64)
y, polarity, groups = torch.arange(240) % 2 == 0, torch.arange(240) % 3 == 0, torch.arange(240) // 120
seen = {hashlib.sha256(ttpd_directions(x, y, polarity, groups)[0].numpy().tobytes()).hexdigest() for _ in range(100)}
print(len(seen))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1"], f"100 calls gave {done.stdout.strip()} different t_G"
