"""`Reporter`: the frozen artifact every method reduces to, an affine readout on the raw residual."""

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from elk_lens._atomic import atomic_dir
from elk_lens.models import fingerprint

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
        reads: ``"statement"``: ``w . x + b`` on the statement's residual at its read position.
            ``"contrast"``: ``w . (x_true - x_false) + b`` on a contrast pair, the residuals at the
            appended answer token of the statement + true answer and + false answer (CCS, CRC, VINC).
            Every pair method's normalization is affine, so the difference form loses nothing.
    """

    w: Float[Tensor, " d_model"]
    b: float
    v: Float[Tensor, " d_model"]
    method: str
    site: str
    provenance: dict = field(default_factory=dict)
    reads: str = "statement"

    def __post_init__(self) -> None:
        if self.reads not in READS:
            raise ValueError(f"reads must be one of {READS}, got {self.reads!r}")

    def __call__(
        self, x: Float[Tensor, "batch d_model"], x_false: Float[Tensor, "batch d_model"] | None = None
    ) -> Float[Tensor, " batch"]:
        """Log-odds of truth: ``reporter(x)`` for a statement reporter, ``reporter(x_true, x_false)``
        for a contrast reporter (the two halves of each pair)."""
        if (self.reads == "contrast") != (x_false is not None):
            need = "both halves of each contrast pair" if self.reads == "contrast" else "statement activations only"
            raise ValueError(f"this {self.method} reporter reads {self.reads!r}: pass {need}")
        for t in (x, x_false) if x_false is not None else (x,):
            if t.shape[-1] != self.w.shape[0]:
                raise ValueError(
                    f"reporter for d_model={self.w.shape[0]} ({self.site}) applied to activations of width "
                    f"{t.shape[-1]}"
                )
        if x_false is not None:
            x = x.to(self.w.dtype) - x_false.to(self.w.dtype)
        return x.to(self.w.dtype) @ self.w + self.b

    def to(self, dtype: torch.dtype) -> "Reporter":
        return Reporter(
            self.w.to(dtype), self.b, self.v.to(dtype), self.method, self.site, dict(self.provenance), self.reads
        )

    def save(self, path: str | Path) -> Path:
        """Write ``reporter.safetensors`` (w, v) and ``reporter.json`` (everything else), atomically."""
        path = Path(path)
        with atomic_dir(path) as tmp:
            save_file({"w": self.w.contiguous(), "v": self.v.contiguous()}, str(tmp / "reporter.safetensors"))
            meta = {"format_version": _FORMAT_VERSION, "b": self.b, "method": self.method, "site": self.site,
                    "reads": self.reads, "d_model": self.w.shape[0], "provenance": self.provenance}  # fmt: skip
            (tmp / "reporter.json").write_text(json.dumps(meta, indent=2, default=str))
        return path

    @classmethod
    def load(
        cls, path: str | Path, *, model: TransformerBridge | None = None, allow_other_model: bool = False
    ) -> "Reporter":
        """Read a saved reporter; with ``model``, check it was fitted on that model.

        A width mismatch is always an error (the readout cannot apply); another model fingerprint is an
        error unless ``allow_other_model`` (e.g. to test transfer to a fine-tuned checkpoint on purpose).
        """
        path = Path(path)
        if not (path / "reporter.json").is_file():
            raise FileNotFoundError(f"{path} holds no saved reporter (reporter.json)")
        meta = json.loads((path / "reporter.json").read_text())
        tensors = load_file(str(path / "reporter.safetensors"))
        reporter = cls(
            tensors["w"], meta["b"], tensors["v"], meta["method"], meta["site"], meta["provenance"],
            meta.get("reads", "statement"),
        )  # fmt: skip
        if model is not None:
            if model.cfg.d_model != reporter.w.shape[0]:
                raise ValueError(
                    f"reporter {path} reads d_model={reporter.w.shape[0]} but the model has d_model={model.cfg.d_model}"
                )
            fitted_on, given = reporter.provenance.get("model"), fingerprint(model)
            if fitted_on != given and not allow_other_model:
                raise ValueError(
                    f"reporter {path} was fitted on model {fitted_on}, this model is {given}; "
                    f"pass allow_other_model=True to apply it anyway"
                )
        return reporter


_FORMAT_VERSION = 1
READS = ("statement", "contrast")
