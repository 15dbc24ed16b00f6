"""Mechanistic anomaly detection (Mallen et al.; docs/methods/elk_methods.md §7): a Gaussian on per-layer
reporter outputs.

A reporter fitted on trusted data (Alice-easy) gives each statement a vector of per-layer log-odds.
On trusted inputs that vector follows one distribution; when the model answers for another reason
(Bob's sloppy rule) the layers disagree in a new way. Fitting a Gaussian on trusted vectors and
scoring the log-density flags those inputs without knowing what the anomaly is.
"""

import torch
from jaxtyping import Float
from torch import Tensor

from elk_lens.metrics import auroc

__all__ = ["GaussianDetector", "anomaly_auroc"]


class GaussianDetector:
    """``log N(x; mu, Sigma)`` fitted on trusted rows; higher means more normal.

    With ``subtract_diag`` the score is ``log N(x; mu, Sigma) - log N(x; mu, diag Sigma)``, which keeps
    only what the correlations between layers add (a trick from arXiv 2204.05862, used by EG).
    """

    def __init__(self, trusted: Float[Tensor, "batch layer"], *, subtract_diag: bool = False):
        trusted = torch.as_tensor(trusted, dtype=torch.float64)
        if trusted.ndim != 2 or trusted.shape[0] <= trusted.shape[1]:
            raise ValueError(
                f"a Gaussian over {trusted.shape[-1]} features needs more trusted rows than features; "
                f"got shape {tuple(trusted.shape)}"
            )
        if not torch.isfinite(trusted).all():
            raise ValueError("trusted features contain NaN or inf")
        mean, cov = trusted.mean(0), torch.cov(trusted.T)
        if torch.linalg.matrix_rank(cov) < cov.shape[0]:
            raise ValueError("trusted features have a singular covariance (a constant or duplicated layer); drop it")
        self.full = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
        self.diag = torch.distributions.MultivariateNormal(mean, covariance_matrix=torch.diag(cov.diagonal()))
        self.subtract_diag = subtract_diag

    def __call__(self, x: Float[Tensor, "batch layer"]) -> Float[Tensor, " batch"]:
        x = torch.as_tensor(x, dtype=torch.float64)
        width = self.full.event_shape[0]
        if x.ndim != 2 or x.shape[1] != width:
            raise ValueError(f"the detector was fitted on {width} features per row; got shape {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("features to score contain NaN or inf")
        score = self.full.log_prob(x)
        return score - self.diag.log_prob(x) if self.subtract_diag else score


def anomaly_auroc(normal: Float[Tensor, " n_normal"], anomalous: Float[Tensor, " n_anomalous"]) -> float:
    """AUROC of telling normal rows (label 1) from anomalous ones (label 0) by the detector's score."""
    scores = torch.cat([torch.as_tensor(normal), torch.as_tensor(anomalous)])
    labels = torch.cat([torch.ones(len(normal), dtype=torch.bool), torch.zeros(len(anomalous), dtype=torch.bool)])
    return auroc(scores, labels)
