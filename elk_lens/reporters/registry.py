"""Every reporter method by name, with what it reads, so sweeps can treat them alike."""

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from elk_lens.reporters.base import Reporter
from elk_lens.reporters.ccs import fit_ccs
from elk_lens.reporters.crc import fit_crc
from elk_lens.reporters.logistic import fit_logistic
from elk_lens.reporters.mass_mean import fit_lda, fit_mean_diff
from elk_lens.reporters.ttpd import fit_ttpd
from elk_lens.reporters.vinc import fit_vinc

__all__ = ["METHODS", "Method", "fit_method"]


@dataclass(frozen=True)
class Method:
    """A fitting method: ``reads`` is ``"statement"`` or ``"contrast"``; ``supervised`` methods learn the
    direction from labels, unsupervised ones use labels only for Platt scaling (sign and scale)."""

    name: str
    fit: Callable[..., Reporter]
    reads: str
    supervised: bool
    needs_polarity: bool = False


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("logistic", fit_logistic, "statement", True),
        Method("mean_diff", fit_mean_diff, "statement", True),
        Method("lda", fit_lda, "statement", True),
        Method("ttpd", fit_ttpd, "statement", True, needs_polarity=True),
        Method("ccs", fit_ccs, "contrast", False),
        Method("crc", fit_crc, "contrast", False),
        Method("vinc", fit_vinc, "contrast", False),
    )
}


def fit_method(
    name: str,
    labels: Tensor,
    *,
    site: str,
    statement: Tensor | None = None,
    pair: tuple[Tensor, Tensor] | None = None,
    polarity: Tensor | None = None,
    provenance: dict | None = None,
) -> Reporter:
    """Fit method ``name`` on what it reads: ``statement`` activations or a contrast ``pair``."""
    if name not in METHODS:
        raise ValueError(f"unknown reporter method {name!r}; valid methods: {sorted(METHODS)}")
    method = METHODS[name]
    if method.reads == "contrast":
        if pair is None:
            raise ValueError(f"{name} reads contrast pairs: pass pair=(x_true, x_false) (capture_contrast)")
        return method.fit(*pair, labels, site=site, provenance=provenance)
    if statement is None:
        raise ValueError(f"{name} reads statement activations: pass statement=x")
    if method.needs_polarity:
        return method.fit(statement, labels, polarity, site=site, provenance=provenance)
    return method.fit(statement, labels, site=site, provenance=provenance)
