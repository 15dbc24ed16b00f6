"""Reading tensors back from safetensors files, verified: readable, as recorded, floating and finite.

A saved artifact's JSON records the dtype and shape of each tensor (:func:`tensor_record`); a load
reads them back through :func:`read_tensors`, so a tensor of the wrong shape or dtype, or a NaN, is
refused with the file's name instead of turning into a silently wrong score (``docs/contract.md`` §3).
"""

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from elk_lens._checks import DTYPES

__all__ = ["aligned", "check_tensor", "read_safetensors", "read_tensors", "tensor_record"]


def aligned(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """The tensors copied into torch's own memory, 64-byte aligned like every tensor torch allocates.

    safetensors hands back tensors at their byte offsets in the file or buffer (8-byte aligned, shifted by
    the header's length), and MKL's float results depend on the alignment of its inputs (measured here:
    a TTPD fit on a copy of its input shifted by 8 bytes differs by 3e-14; ``MKL_CBWR=AUTO,STRICT`` removes
    it, but must be set before the process starts). Copying makes a tensor read back compute exactly as
    the one that was written.
    """
    return {name: t.clone(memory_format=torch.contiguous_format) for name, t in tensors.items()}


def read_safetensors(file: Path, *, what: str) -> dict[str, Tensor]:
    """The tensors of a safetensors file; a missing, truncated or garbled one is an error naming it."""
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing: the saved {what} is incomplete")
    try:
        return load_file(str(file))
    except SafetensorError as e:
        raise ValueError(
            f"{file} is not a readable safetensors file ({e}): it is truncated or damaged; save the {what} again"
        ) from None


def tensor_record(tensors: dict[str, Tensor]) -> dict[str, dict]:
    """The dtype and shape of each tensor, as a saved JSON records them for :func:`read_tensors`."""
    return {name: {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)} for name, t in tensors.items()}


def check_tensor(name: str, t: Tensor) -> None:
    """A floating tensor of finite values."""
    if t.dtype not in DTYPES.values():
        raise ValueError(f"{name} must be a floating tensor ({sorted(DTYPES)}); got {t.dtype}")
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).reshape(-1).nonzero()[0])
        raise ValueError(f"{name} must be finite; got {t.reshape(-1)[bad].item()} at flat index {bad}")


def read_tensors(file: Path, record: object, *, marker: Path, what: str) -> dict[str, Tensor]:
    """The tensors of ``file``, each floating and finite, and with ``record`` (the JSON's
    :func:`tensor_record`; None for a format that kept none) exactly the tensors it lists, each of the
    recorded dtype and shape. Every failure names the file."""
    tensors = aligned(read_safetensors(file, what=what))
    if record is not None:
        if not isinstance(record, dict) or set(record) != set(tensors):
            raise ValueError(f"{file} holds tensors {sorted(tensors)}; {marker} records {record!r}")
        for name, got in tensor_record(tensors).items():
            if got != record[name]:
                raise ValueError(f"{file}: tensor {name!r} has {got}; {marker} records {record[name]!r}")
    for name, t in tensors.items():
        try:
            check_tensor(name, t)
        except ValueError as e:
            raise ValueError(f"{file}: {e}: the saved {what} is unusable") from None
    return tensors
