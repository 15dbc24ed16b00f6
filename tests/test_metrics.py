"""AUROC against scikit-learn, ties included."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from elk_lens.metrics import auroc

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
