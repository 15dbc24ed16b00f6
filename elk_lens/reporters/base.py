"""`Reporter`: the frozen artifact every method reduces to, an affine readout on the raw residual."""

from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Float
from safetensors.torch import save_file
from torch import Tensor

from elk_lens._atomic import CONTENT_KEY, read_dir, save_dir
from elk_lens._checks import check_number
from elk_lens._tensor_files import check_tensor, read_tensors, tensor_record

__all__ = ["Reporter"]

REPORTER_FILE = "reporter.json"
TENSOR_FILE = "reporter.safetensors"


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

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``reporter.safetensors`` (w, v) and last ``reporter.json`` (everything else: the dtype and
        shape of w and v, the checksum of each file and of the JSON's own content).

        Atomic and non-destructive (``elk_lens._atomic.save_dir``): an existing file, or a directory that
        holds anything (other reporters, say), is refused unless ``overwrite``, which then replaces only
        the files of an earlier reporter saved there and leaves everything else alone.
        """
        _check_fields(self.w, self.v, self.b, self.method, self.site, self.reads, where="cannot save the reporter")
        tensors = {"w": self.w.contiguous(), "v": self.v.contiguous()}
        meta = {
            "format_version": _FORMAT_VERSION,
            "b": float(self.b),
            "method": self.method,
            "site": self.site,
            "reads": self.reads,
            "d_model": self.w.shape[0],
            "tensors": tensor_record(tensors),
            "provenance": self.provenance,
        }
        return save_dir(
            path,
            meta,
            lambda tmp: save_file(tensors, str(tmp / TENSOR_FILE)),
            marker=REPORTER_FILE,
            overwrite=overwrite,
            what="reporter",
        )

    @classmethod
    def load(cls, path: str | Path) -> "Reporter":
        """Read a saved reporter, verified.

        Every file is checked against its recorded checksum and the JSON against its own; w and v must
        have shape (d_model,), the recorded dtype and finite values, b must be a finite number. Reporters
        saved before checksums (format 1) get the shape, dtype and finiteness checks.

        Whether it fits a given model is :func:`elk_lens.check_compatible`'s question (the artifact
        knows no model): ``check_compatible(Reporter.load(path), model)``.
        """
        path = Path(path)
        marker = path / REPORTER_FILE
        meta = read_dir(path, marker=REPORTER_FILE, what="reporter")
        version = meta.get("format_version")
        if version not in (1, _FORMAT_VERSION):
            raise ValueError(
                f"{marker}: format_version {version!r} is not one this elk-lens reads (1, {_FORMAT_VERSION})"
            )
        required = ["b", "method", "site", "d_model", "provenance"]
        if version == _FORMAT_VERSION:
            required += ["reads", "tensors", "files", CONTENT_KEY]
        missing = [k for k in required if k not in meta]
        if missing:
            raise ValueError(f"{marker} has no {missing[0]!r} (missing keys: {missing}): the saved reporter is damaged")
        tensors = read_tensors(path / TENSOR_FILE, meta.get("tensors"), marker=marker, what="reporter")
        if set(tensors) != {"v", "w"}:
            raise ValueError(
                f"{path / TENSOR_FILE} holds tensors {sorted(tensors)}; a reporter has exactly 'v' and 'w'"
            )
        provenance, reads = meta["provenance"], meta.get("reads", "statement")
        if not isinstance(provenance, dict):
            raise ValueError(f"{marker}: 'provenance' must be a JSON object; got {provenance!r}")
        _check_fields(
            tensors["w"],
            tensors["v"],
            meta["b"],
            meta["method"],
            meta["site"],
            reads,
            where=str(marker),
            d_model=meta["d_model"],
        )
        return cls(tensors["w"], meta["b"], tensors["v"], meta["method"], meta["site"], provenance, reads)


def _check_fields(
    w: Tensor, v: Tensor, b: object, method: object, site: object, reads: object, *, where: str, d_model: object = None
) -> None:
    """What a usable reporter needs: w and v floating, finite, of shape (d_model,); b a finite number;
    method and site non-empty strings; reads one of ``READS``. Errors start with ``where``."""
    try:
        if d_model is None:
            d_model = w.shape[0] if w.ndim == 1 else -1
        check_number("d_model", d_model, kind=int, low=1)
        for name, t in (("w", w), ("v", v)):
            if tuple(t.shape) != (d_model,):
                raise ValueError(f"{name} must have shape (d_model,) = ({d_model},); got {tuple(t.shape)}")
            check_tensor(name, t)
        check_number("b (the bias)", b)
        for name, value in (("method", method), ("site", site)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string; got {value!r}")
        if reads not in READS:
            raise ValueError(f"reads must be one of {READS}; got {reads!r}")
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from None


_FORMAT_VERSION = 2  # 2: checksums of every file and of the JSON, dtype and shape of w and v
READS = ("statement", "contrast")
