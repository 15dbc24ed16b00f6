"""`Reporter`: the frozen artifact every method reduces to, an affine readout on the raw residual."""

from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

__all__ = ["Reporter"]


@dataclass(frozen=True)
class Reporter:
    """``score(x) = w . x + b``: the log-odds that a statement is true, read from the raw residual.

    Attributes:
        w: Readout covector, shape (d_model,). Transports as a covector under growth.
        b: Readout bias.
        v: Concept vector in the residual basis (class-mean difference on the training data),
            shape (d_model,). Transports as a vector.
        method: The fitting method, e.g. ``"logistic"``.
        site: Hook name the reporter reads, e.g. ``"blocks.3.hook_resid_pre"``.
        provenance: Model and data fingerprints, seed, package version, hyperparameters.
    """

    w: Float[Tensor, " d_model"]
    b: float
    v: Float[Tensor, " d_model"]
    method: str
    site: str
    provenance: dict = field(default_factory=dict)

    def __call__(self, x: Float[Tensor, "batch d_model"]) -> Float[Tensor, " batch"]:
        if x.shape[-1] != self.w.shape[0]:
            raise ValueError(
                f"reporter for d_model={self.w.shape[0]} ({self.site}) applied to activations of width {x.shape[-1]}"
            )
        return x.to(self.w.dtype) @ self.w + self.b

    def to(self, dtype: torch.dtype) -> "Reporter":
        return Reporter(self.w.to(dtype), self.b, self.v.to(dtype), self.method, self.site, dict(self.provenance))
