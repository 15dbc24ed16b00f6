"""Shared pieces of the contrast-pair methods (CCS, CRC-TPC, VINC): input checks, the pseudo-label
eraser, and Burns normalization.

A contrast pair is one statement read twice, with the true and with the false answer appended; the
residuals at the appended token are ``x_true`` and ``x_false`` (docs/methods/elk_methods.md §1). Only
one template per set is supported: per-template statistics then reduce to per-class ones, and every
normalization stays one affine map, so each method folds into a single ``Reporter`` reading
``x_true - x_false``.
"""

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from elk_lens._checks import check_training_data
from elk_lens.erasure import fit_leace

__all__ = ["BurnsNorm", "check_pairs", "pseudo_label_erasure"]

MIN_PAIRS = 4  # fewer pairs than this cannot estimate a mean and a spread per class


def check_pairs(
    x_true: Tensor | None, x_false: Tensor | None, y: Tensor, site: str, method: str
) -> tuple[Float[Tensor, "batch d_model"], Float[Tensor, "batch d_model"], Bool[Tensor, " batch"]]:
    """Float64 pair halves and bool labels, or a clear error naming the problem."""
    if x_true is None or x_false is None:
        raise ValueError(
            f"{method} is a contrast-pair method: it needs x_true and x_false, the residuals at the appended "
            f"true and false answers (elk_lens.contrast.capture_contrast)"
        )
    for name, half in (("x_true", x_true), ("x_false", x_false)):
        if not isinstance(half, Tensor):
            raise TypeError(f"{method}: {name} must be a floating tensor [n, d_model]; got {type(half).__name__}")
    if x_true.shape != x_false.shape:
        raise ValueError(f"{method}: pair halves differ in shape, {tuple(x_true.shape)} vs {tuple(x_false.shape)}")
    if x_true.shape[0] < MIN_PAIRS:
        raise ValueError(f"{method} needs at least {MIN_PAIRS} contrast pairs, got {x_true.shape[0]}")
    x_true, y = check_training_data(x_true, y, site)
    x_false, _ = check_training_data(x_false, y, site)
    return x_true, x_false, y


def pseudo_label_erasure(
    x_true: Float[Tensor, "batch d_model"], x_false: Float[Tensor, "batch d_model"]
) -> Float[Tensor, "d_model d_model"]:
    """Linear part ``M`` of the LEACE eraser of the pseudo-label (which answer was appended).

    Fitted on the stacked halves; ``x @ M`` (plus a constant) is the erased residual. CRC and VINC
    look for truth only in what is left once "ends in True vs False" is linearly gone
    (docs/methods/elk_methods.md §2.2, §3.2).
    """
    stacked = torch.cat([x_false, x_true])
    pseudo = torch.cat([torch.zeros(len(x_false), dtype=torch.bool), torch.ones(len(x_true), dtype=torch.bool)])
    eraser = fit_leace(stacked, pseudo, site="contrast pairs")
    eye = torch.eye(stacked.shape[1], dtype=torch.float64)
    return eraser(eye) - eraser(torch.zeros_like(eye[:1]))


@dataclass(frozen=True)
class BurnsNorm:
    """Burns per-template normalization (elk ``BurnsNorm``), fitted on training pairs and frozen.

    Each class is centred by its own training mean, then both are divided by one scalar: the mean
    over coordinates and classes of the per-coordinate (1/n) standard deviation.
    """

    mean_true: Float[Tensor, " d_model"]
    mean_false: Float[Tensor, " d_model"]
    scale: float

    @classmethod
    def fit(cls, x_true: Float[Tensor, "batch d_model"], x_false: Float[Tensor, "batch d_model"]) -> "BurnsNorm":
        mean_true, mean_false = x_true.mean(0), x_false.mean(0)
        sigma = torch.stack([(x_true - mean_true).std(0, correction=0), (x_false - mean_false).std(0, correction=0)])
        return cls(mean_true, mean_false, float(sigma.mean().clamp_min(1e-12)))

    def __call__(self, x_true: Tensor, x_false: Tensor) -> tuple[Tensor, Tensor]:
        return (x_true - self.mean_true) / self.scale, (x_false - self.mean_false) / self.scale
