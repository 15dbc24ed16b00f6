"""AUROC against scikit-learn, ties included."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from elk_lens.metrics import accuracy, auroc, auroc_columns, bootstrap_ci, calibrated_accuracy, ece

AUROC_TOL = 1e-12  # the bound; both sides are exact rational arithmetic in float64


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    scores = rng.integers(0, 7, n).astype(float)  # heavy ties
    labels = rng.random(n) < rng.uniform(0.1, 0.9)
    labels[:2] = [True, False]
    ours = auroc(torch.as_tensor(scores), torch.as_tensor(labels))
    assert abs(ours - roc_auc_score(labels, scores)) < AUROC_TOL


def test_auroc_continuous_and_extremes():
    rng = np.random.default_rng(0)
    scores, labels = rng.normal(size=500), rng.random(500) < 0.3
    assert abs(auroc(torch.as_tensor(scores), torch.as_tensor(labels)) - roc_auc_score(labels, scores)) < AUROC_TOL
    y = torch.tensor([False, False, True, True])
    assert auroc(torch.tensor([0.0, 1, 2, 3]), y) == 1.0
    assert auroc(torch.tensor([3.0, 2, 1, 0]), y) == 0.0
    assert auroc(torch.zeros(4), y) == 0.5


def test_auroc_errors():
    with pytest.raises(ValueError, match="needs both classes; got 3 positive and 0 negative"):
        auroc(torch.ones(3), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN or inf"):
        auroc(torch.tensor([0.0, float("nan")]), torch.tensor([True, False]))
    with pytest.raises(ValueError, match="differ in shape"):
        auroc(torch.zeros(3), torch.tensor([True, False]))


def test_accuracy_thresholds_log_odds_at_zero():
    assert accuracy(torch.tensor([-1.0, 2.0, 0.5, -0.1]), torch.tensor([False, True, False, False])) == 0.75


def test_calibrated_accuracy_predicts_the_label_prior():
    rng = np.random.default_rng(0)
    labels = torch.as_tensor(rng.random(4000) < 0.2)
    scores = torch.as_tensor(rng.normal(size=4000)) + 1.5 * labels  # informative, shifted away from 0
    pi = labels.double().mean()
    threshold = torch.quantile(scores.double(), 1 - pi)
    assert abs(float((scores > threshold).double().mean()) - float(pi)) < 1e-3
    ours = calibrated_accuracy(scores, labels)
    wrong = float(((scores > torch.quantile(scores.double(), pi)) == labels).double().mean())  # elk's formula
    assert ours > wrong + 0.3  # with pi = 0.2 the reference formula predicts 80% positive
    assert ours > accuracy(scores, labels) - 0.05


def test_ece_is_small_when_calibrated_and_measures_a_known_offset():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.05, 0.85, 20000)
    y = torch.as_tensor(rng.random(20000) < p)
    calibrated, bins = ece(torch.as_tensor(p), y, p=1)
    assert calibrated < 0.02 and bins >= 2
    shifted, _ = ece(torch.as_tensor(p + 0.1), y, p=1)
    assert abs(shifted - 0.1) < 0.02
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        ece(torch.tensor([1.5]), torch.tensor([True]))


def test_bootstrap_ci_brackets_the_estimate_and_narrows_with_n():
    rng = np.random.default_rng(2)

    def problem(n):
        y = rng.random(n) < 0.4
        return torch.as_tensor(rng.normal(size=n) + y), torch.as_tensor(y)

    s, y = problem(400)
    lo, hi = bootstrap_ci(auroc, s, y, n_resamples=300, seed=0)
    assert lo < auroc(s, y) < hi
    assert bootstrap_ci(auroc, s, y, n_resamples=300, seed=0) == (lo, hi)  # seeded
    s4, y4 = problem(6400)
    lo4, hi4 = bootstrap_ci(auroc, s4, y4, n_resamples=300, seed=0)
    assert (hi4 - lo4) < 0.5 * (hi - lo)  # width ~ 1/sqrt(n): 16x the rows, ~1/4 the width


def test_cluster_bootstrap_keeps_variants_together():
    rng = np.random.default_rng(3)
    y = torch.as_tensor(rng.random(300) < 0.5)
    s = torch.as_tensor(rng.normal(size=300)) + y
    plain = bootstrap_ci(auroc, s, y, n_resamples=200, seed=4)
    # three identical variants per example: the same rows are drawn, so the same AUROCs result
    clustered = bootstrap_ci(auroc, s[:, None].repeat(1, 3), y[:, None].repeat(1, 3), n_resamples=200, seed=4)
    assert clustered == pytest.approx(plain, abs=1e-12)


def test_auroc_columns_equals_auroc_per_column_with_ties():
    rng = np.random.default_rng(5)
    scores = torch.as_tensor(rng.integers(0, 5, (300, 40)).astype(float))
    labels = torch.as_tensor(rng.random(300) < 0.3)
    batched = auroc_columns(scores, labels)
    looped = torch.tensor([auroc(scores[:, j], labels) for j in range(40)], dtype=torch.float64)
    assert (batched - looped).abs().max() < AUROC_TOL


# --------------------------------------------------------------------------- batched AUROC and bootstrap


def test_auroc_columns_with_per_column_labels_equals_auroc_and_sklearn():
    rng = np.random.default_rng(6)
    scores = torch.as_tensor(rng.integers(0, 6, (250, 30)).astype(float))  # heavy ties
    scores[:, :5] = torch.as_tensor(rng.normal(size=(250, 5)))  # and some continuous columns
    labels = torch.as_tensor(rng.random((250, 30)) < rng.uniform(0.05, 0.95, 30))  # a prior per column
    batched = auroc_columns(scores, labels)
    looped = torch.tensor([auroc(scores[:, j], labels[:, j]) for j in range(30)], dtype=torch.float64)
    sk = torch.tensor(
        [roc_auc_score(labels[:, j].numpy(), scores[:, j].numpy()) for j in range(30)], dtype=torch.float64
    )
    assert (batched - looped).abs().max() < AUROC_TOL
    assert (batched - sk).abs().max() < AUROC_TOL


def test_auroc_columns_one_class_columns_raise_or_are_nan_exactly_there():
    rng = np.random.default_rng(7)
    scores = torch.as_tensor(rng.normal(size=(40, 6)))
    labels = torch.as_tensor(rng.random((40, 6)) < 0.5)
    labels[:, 1] = True
    labels[:, 4] = False
    with pytest.raises(ValueError, match="2 column\\(s\\) have one class only"):
        auroc_columns(scores, labels)
    out = auroc_columns(scores, labels, nan_if_one_class=True)
    assert out.isnan().tolist() == [False, True, False, False, True, False]
    defined = [0, 2, 3, 5]
    want = torch.tensor([auroc(scores[:, j], labels[:, j]) for j in defined], dtype=torch.float64)
    assert (out[defined] - want).abs().max() < AUROC_TOL
    with pytest.raises(ValueError, match="labels of shape"):
        auroc_columns(scores, labels[:, :2])


@pytest.mark.parametrize("cluster", [False, True], ids=["plain", "cluster [n, v]"])
def test_bootstrap_ci_batched_equals_looped(cluster):
    """``metric is auroc`` takes the batched path; a lambda around it takes the loop. Same seed, same
    resample indices: the intervals must agree to rounding. Few positives, so some resamples hold one
    class and both paths must skip the same ones."""
    rng = np.random.default_rng(8)
    shape = (12, 3) if cluster else (12,)
    labels = torch.zeros(shape, dtype=torch.bool)
    labels[:3] = True  # 3 of 12 rows positive: (9/12)^12 = 3% of resamples have no positive row
    if cluster:
        labels[5, 1] = True  # variants of one example may carry different labels
    scores = torch.as_tensor(rng.integers(0, 4, shape).astype(float)) + labels.double()  # ties
    batched = bootstrap_ci(auroc, scores, labels, n_resamples=400, seed=11)
    looped = bootstrap_ci(lambda s, y: auroc(s, y), scores, labels, n_resamples=400, seed=11)
    assert batched == pytest.approx(looped, abs=AUROC_TOL, rel=0)
    assert batched != bootstrap_ci(auroc, scores, labels, n_resamples=400, seed=12)  # the seed matters


def test_bootstrap_ci_with_too_few_two_class_resamples_raises_on_both_paths():
    one_class = (torch.arange(6.0), torch.ones(6, dtype=torch.bool))  # no resample has both classes
    one_row = (torch.tensor([[1.0, 0.0]]), torch.tensor([[True, False]]))  # one cluster: every resample is it
    for metric in (auroc, lambda s, y: auroc(s, y)):
        with pytest.raises(ValueError, match="only 0 of 200 resamples had both classes"):
            bootstrap_ci(metric, *one_class, n_resamples=200)
    # a single cluster holding both classes is "resampled" 200 times into itself: no spread, but defined
    assert (
        bootstrap_ci(auroc, *one_row, n_resamples=200)
        == bootstrap_ci(lambda s, y: auroc(s, y), *one_row, n_resamples=200)
        == (1.0, 1.0)
    )


def test_auroc_columns_rejects_nan_scores_like_auroc():
    rng = np.random.default_rng(9)
    scores = torch.as_tensor(rng.normal(size=(50, 2)))
    scores[3, 0] = float("nan")
    labels = torch.as_tensor(rng.random(50) < 0.5)
    with pytest.raises(ValueError, match="NaN"):
        auroc(scores[:, 0], labels)
    with pytest.raises(ValueError, match="NaN"):
        auroc_columns(scores, labels)


def test_bootstrap_ci_batched_path_rejects_nan_scores_like_the_loop():
    rng = np.random.default_rng(10)
    scores = torch.as_tensor(rng.normal(size=50))
    scores[3] = float("nan")
    labels = torch.as_tensor(rng.random(50) < 0.5)
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci(lambda s, y: auroc(s, y), scores, labels, n_resamples=100)
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci(auroc, scores, labels, n_resamples=100)


def test_bootstrap_ci_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"scores \(4,\) and labels \(3,\) differ in shape"):
        bootstrap_ci(auroc, torch.zeros(4), torch.tensor([True, False, True]))


def test_zero_one_labels_of_any_dtype_score_like_bools():
    rng = np.random.default_rng(11)
    scores = torch.as_tensor(rng.normal(size=40))
    labels = torch.as_tensor(rng.random(40) < 0.5)
    for other in (labels.long(), labels.double(), labels.tolist()):
        assert auroc(scores, other) == auroc(scores, labels)
        assert accuracy(scores, other) == accuracy(scores, labels)
        assert calibrated_accuracy(scores, other) == calibrated_accuracy(scores, labels)
        assert bootstrap_ci(auroc, scores, other, n_resamples=50) == bootstrap_ci(auroc, scores, labels, n_resamples=50)


@pytest.mark.parametrize("bad", [2, -1, 0.5, float("nan")])
def test_labels_outside_zero_one_are_refused_not_cast(bad):
    """``torch.as_tensor(labels).bool()`` would turn 2, -1, 0.5 and NaN into True without a word."""
    scores = torch.linspace(-1, 1, 6, dtype=torch.float64)
    labels = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    labels[2] = bad
    for metric in (auroc, accuracy, calibrated_accuracy, lambda s, y: ece((s + 1) / 2, y)):
        with pytest.raises(ValueError, match="must be bool or 0/1|NaN or inf"):
            metric(scores, labels)
    with pytest.raises(ValueError, match="must be bool or 0/1|NaN or inf"):
        auroc_columns(scores[:, None].expand(-1, 2), torch.stack([labels, labels], 1))
