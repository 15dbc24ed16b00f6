"""Input checks at the API boundary: one clear error per kind of bad input, raised before any work.

Every error names the argument, the value it got and the valid choices (errors carry context, the
convention of einops and jaxtyping), so a user never meets a bare ``IndexError`` or ``KeyError`` thirty
seconds into a run.
"""

import math
import numbers
from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DTYPES",
    "MIN_PER_CLASS",
    "as_dtype",
    "check_choice",
    "check_labels",
    "check_number",
    "check_texts",
    "check_training_data",
]

MIN_PER_CLASS = 2  # a class mean and a within-class spread need two rows

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
"""The floating dtypes elk-lens accepts for models and activations, by name."""


def as_dtype(name: str, value: object) -> torch.dtype:
    """A floating torch dtype from a ``torch.dtype`` or its name (``"float32"``, ``"torch.bfloat16"``)."""
    if isinstance(value, str) and value.removeprefix("torch.") in DTYPES:
        return DTYPES[value.removeprefix("torch.")]
    if isinstance(value, torch.dtype) and value in DTYPES.values():
        return value
    raise ValueError(f"{name} must be a floating torch dtype or its name; got {value!r}; valid: {sorted(DTYPES)}")


def check_choice(name: str, value: object, choices: Iterable[object]) -> None:
    """``value`` must be one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")


def check_number(
    name: str,
    value: object,
    *,
    kind: type = float,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """A finite int (``kind=int``) or real number within ``[low, high]`` (ends open when asked)."""
    # numbers.Integral/Real: numpy scalars (a seed or size from numpy arithmetic) are numbers too
    ok_type = isinstance(value, numbers.Integral if kind is int else numbers.Real)
    if isinstance(value, (bool, np.bool_)) or not ok_type:
        raise TypeError(f"{name} must be {'an int' if kind is int else 'a number'}; got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value!r}")
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        lo = "(-inf" if low is None else f"{'(' if low_open else '['}{low}"
        hi = "inf)" if high is None else f"{high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must lie in {lo}, {hi}; got {value!r}")


def check_texts(name: str, texts: object) -> list[str]:
    """A sequence of strings; a bare string (which would be read character by character) is refused."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(
            f"{name} must be a list of statements, got a single {type(texts).__name__} ({texts[:40]!r}); "
            f"wrap it in a list: [{texts[:40]!r}]"
        )
    if not isinstance(texts, Iterable):
        raise TypeError(f"{name} must be a list of strings; got {type(texts).__name__}")
    out = list(texts)
    bad = next((i for i, t in enumerate(out) if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"{name}[{bad}] must be a str; got {type(out[bad]).__name__} {out[bad]!r}")
    return out


def check_labels(name: str, labels: object, n: int | None = None) -> Tensor:
    """Binary labels as a bool tensor: bools, or numbers that are all 0 or 1 (anything else is refused,
    never cast: ``2`` or ``-1`` or ``0.5`` would otherwise turn silently into True)."""
    y = torch.as_tensor(labels)
    if y.dtype != torch.bool:
        if y.is_floating_point() and not torch.isfinite(y).all():
            raise ValueError(f"{name} contain NaN or inf; labels must be 0/1 or bool")
        bad = (y != 0) & (y != 1)
        if bad.any():
            i = int(bad.reshape(-1).nonzero()[0])
            raise ValueError(
                f"{name} must be bool or 0/1; got {y.reshape(-1)[i].item()!r} at index {i} (dtype {y.dtype})"
            )
        y = y.bool()
    if y.ndim != 1:
        raise ValueError(f"{name} must be one label per row (1-D); got shape {tuple(y.shape)}")
    if n is not None and y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} entries for {n} rows")
    return y


def check_training_data(x: Tensor, y: Tensor, site: str) -> tuple[Tensor, Tensor]:
    """Float64 activations and bool labels, or a clear error (one class, NaN/inf, shape mismatch)."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(
            f"activations at {site} must be a floating tensor; got {type(x).__name__} {getattr(x, 'dtype', '')}"
        )
    y = check_labels("labels", y)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(
            f"activations at {site} must be [n, d_model] with n labels; got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if y.all() or not y.any():
        raise ValueError(f"fitting a reporter needs both classes in the training labels; got all {bool(y[0])}")
    n_true, n_false = int(y.sum()), int((~y).sum())
    if min(n_true, n_false) < MIN_PER_CLASS:
        raise ValueError(
            f"fitting a reporter needs at least {MIN_PER_CLASS} training examples of each class; got {n_true} true "
            f"and {n_false} false at {site}"
        )
    if not torch.isfinite(x).all():
        raise ValueError(f"activations at {site} contain NaN or inf")
    return x.to(torch.float64), y
