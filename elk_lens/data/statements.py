"""`StatementSet`: the texts a reporter reads, their truth, and per-row metadata.

A statement's text ends exactly where the reporter reads (e.g. ``"012+045=0057.Bob:"``), so
"the last token" is always the read position. Metadata columns are numpy arrays of one length;
they carry everything an evaluation filters on (character, difficulty, polarity, group ids).
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from elk_lens._checks import check_texts

__all__ = ["StatementSet", "as_statements"]


@dataclass(frozen=True)
class StatementSet:
    """Statements with boolean truth labels and per-row metadata.

    Attributes:
        texts: One string per statement, ending at the read position.
        truth: Bool tensor of shape (n,), whether each statement is true.
        meta: Column name -> numpy array of shape (n,).
        name: A short human-readable name used in reports.
    """

    texts: list[str]
    truth: Tensor
    meta: dict[str, np.ndarray] = field(default_factory=dict)
    name: str = "statements"

    def __post_init__(self) -> None:
        # a bare string would be n one-character statements; a tuple or generator becomes the list it holds
        object.__setattr__(self, "texts", check_texts("texts", self.texts))
        n = len(self.texts)
        if n == 0:
            raise ValueError(f"StatementSet {self.name!r} is empty: it needs at least one statement")
        if not isinstance(self.truth, Tensor):
            raise TypeError(
                f"StatementSet {self.name!r}: truth must be a bool torch tensor of shape ({n},), "
                f"e.g. torch.tensor([True, False, ...]); got {type(self.truth).__name__}"
            )
        if self.truth.dtype != torch.bool or self.truth.shape != (n,):
            raise ValueError(
                f"StatementSet {self.name!r}: truth must be a bool tensor of shape ({n},), "
                f"got dtype {self.truth.dtype} and shape {tuple(self.truth.shape)}"
            )
        for col, values in self.meta.items():
            if not isinstance(values, np.ndarray):
                raise TypeError(
                    f"StatementSet {self.name!r}: meta column {col!r} must be a numpy array; "
                    f"got {type(values).__name__}"
                )
            if len(values) != n:
                raise ValueError(
                    f"StatementSet {self.name!r}: meta column {col!r} has {len(values)} rows, texts have {n}"
                )
            if values.ndim != 1:
                raise ValueError(
                    f"StatementSet {self.name!r}: meta column {col!r} must be one value per row, "
                    f"shape ({n},); got shape {values.shape}"
                )

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def fingerprint(self) -> str:
        """A stable content hash (texts, truth, metadata): the data half of every cache key."""
        h = hashlib.sha256()
        for text in self.texts:
            h.update(text.encode())
            h.update(b"\0")
        h.update(self.truth.numpy().tobytes())
        for col in sorted(self.meta):
            h.update(col.encode())
            values = np.asarray(self.meta[col])
            h.update(values.astype(str).tobytes() if values.dtype == object else values.tobytes())
        return h.hexdigest()[:16]

    def column(self, name: str) -> np.ndarray:
        """One metadata column; the error lists the columns that exist."""
        if name not in self.meta:
            raise KeyError(f"StatementSet {self.name!r} has no column {name!r}; columns: {sorted(self.meta)}")
        return self.meta[name]

    def subset(self, rows: np.ndarray | Tensor, name: str | None = None) -> "StatementSet":
        """The rows selected by a boolean mask or an index array, in that order."""
        idx = np.asarray(rows)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(f"boolean mask of shape {idx.shape} for {len(self)} statements")
            idx = np.flatnonzero(idx)
        return StatementSet(
            texts=[self.texts[i] for i in idx],
            truth=self.truth[torch.as_tensor(idx, dtype=torch.long)],
            meta={k: v[idx] for k, v in self.meta.items()},
            name=name or self.name,
        )

    def sample(self, n: int, *, seed: int = 0, strata: tuple[str, ...] = ("split",)) -> "StatementSet":
        """About ``n`` rows drawn at random within each (strata..., truth) cell, in proportion to its size
        and at least two per cell that has them, so every split keeps both classes; row order is kept."""
        if n < 1:
            raise ValueError(f"sample size must be >= 1, got {n}")
        if n >= len(self):
            return self
        cells: dict[tuple, list[int]] = {}
        for i, key in enumerate(zip(*(self.column(c) for c in strata), self.truth.tolist(), strict=True)):
            cells.setdefault(key, []).append(i)
        rng = np.random.default_rng(seed)
        keep = []
        for rows in cells.values():
            k = min(len(rows), max(2, round(n * len(rows) / len(self))))
            keep += rng.choice(rows, size=k, replace=False).tolist()
        return self.subset(np.sort(keep))

    def mask(self, **equals: object) -> np.ndarray:
        """Boolean row mask: metadata columns equal the given values, e.g. ``mask(character="Bob", hard=True)``."""
        mask = np.ones(len(self), dtype=bool)
        for col, value in equals.items():
            mask &= self.column(col) == value
        return mask

    def where(self, name: str | None = None, **equals: object) -> "StatementSet":
        """Rows whose metadata columns equal the given values, e.g. ``where(character="Bob", hard=True)``."""
        mask = self.mask(**equals)
        if not mask.any():
            raise ValueError(f"no statement in {self.name!r} has {equals}")
        return self.subset(mask, name=name or f"{self.name}[{', '.join(f'{k}={v}' for k, v in equals.items())}]")

    def split(self, column: str = "split") -> dict[str, "StatementSet"]:
        """Partition by the values of one column (e.g. train/val/test)."""
        values = self.column(column)
        return {str(v): self.subset(values == v, name=f"{self.name}:{v}") for v in np.unique(values)}


def as_statements(name: str, statements: StatementSet | Sequence[str]) -> StatementSet:
    """A StatementSet as it is, or plain texts (a bare string refused) with placeholder all-False truth.

    Capture reads texts only; the set gives plain texts the same data fingerprint as a set of them.
    """
    if isinstance(statements, StatementSet):
        return statements
    texts = check_texts(name, statements)
    if not texts:
        raise ValueError("no statements to capture: the statement list is empty")
    return StatementSet(texts, torch.zeros(len(texts), dtype=torch.bool), name=name)
