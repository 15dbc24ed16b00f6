"""On-disk activation cache: content-addressed directories of checksummed safetensors shards.

A cache entry is keyed by everything that determines its values (model fingerprint, data
fingerprint, sites, position rule, padding side, dtype). Shards are written atomically as they are
computed, so a killed capture resumes from its last finished shard and memory stays flat in the
number of statements. Every shard carries the SHA-256 of its values: a truncated or corrupted
shard is detected on the next read and recomputed.
"""

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import Tensor

from elk_lens._atomic import atomic_write_bytes, atomic_write_text
from elk_lens.activations import Activations
from elk_lens.sites import Site

__all__ = ["ActivationStore"]

log = logging.getLogger(__name__)
SHARD_ROWS = 4096


def _digest(t: Tensor) -> str:
    return hashlib.sha256(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()


class ActivationStore:
    """One cache entry: ``root/<key>/manifest.json`` and ``shard_NNNNN.safetensors`` files."""

    def __init__(self, root: Path, meta: dict, n_rows: int, shard_rows: int = SHARD_ROWS):
        if shard_rows < 1:
            raise ValueError(f"shard_rows must be >= 1, got {shard_rows}")
        self.meta = {**meta, "n_rows": n_rows}
        # The shard size is part of the key (not of the values' provenance): callers with different
        # shard sizes would otherwise overwrite each other's shards, every one a start/stop mismatch.
        self.manifest = {**self.meta, "shard_rows": shard_rows}
        self.key = hashlib.sha256(json.dumps(self.manifest, sort_keys=True).encode()).hexdigest()[:20]
        self.dir = root / self.key
        self.n_rows, self.shard_rows = n_rows, shard_rows

    def _ranges(self) -> list[tuple[int, int]]:
        return [(a, min(self.n_rows, a + self.shard_rows)) for a in range(0, self.n_rows, self.shard_rows)]

    def _path(self, i: int) -> Path:
        return self.dir / f"shard_{i:05d}.safetensors"

    def _valid(self, i: int, start: int, stop: int) -> bool:
        path = self._path(i)
        if not path.is_file():
            return False
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                values = f.get_tensor("values")
            ok = (meta.get("start"), meta.get("stop")) == (str(start), str(stop)) and meta.get("sha256") == _digest(
                values
            )
        except Exception as e:  # safetensors raises several types on truncated or garbled files
            log.warning("cache shard %s is unreadable (%s); recomputing it", path, e)
            return False
        if not ok:
            log.warning("cache shard %s fails its checksum; recomputing it", path)
        return ok

    def fill(
        self, compute: Callable[[int, int], Tensor], *, on_rows: Callable[[int], object], sites: list[Site]
    ) -> Activations:
        """Compute every missing or damaged shard, then return activations backed by the shards."""
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.dir / "manifest.json", json.dumps(self.manifest, indent=2, sort_keys=True))
        for i, (start, stop) in enumerate(self._ranges()):
            if not self._valid(i, start, stop):
                values = compute(start, stop).contiguous()
                meta = {"start": str(start), "stop": str(stop), "sha256": _digest(values)}
                atomic_write_bytes(self._path(i), save({"values": values}, metadata=meta))
            on_rows(stop - start)
        return Activations(None, sites, self.meta["position"], dict(self.meta), loader=self.load)

    def load(self, site_indices: Sequence[int] | None = None) -> Tensor:
        """Concatenate the shards, keeping only ``site_indices`` (all sites if None).

        Shards are copied into one preallocated tensor, so the peak is the result plus one shard.
        """
        out = None
        for i, (start, stop) in enumerate(self._ranges()):
            path = self._path(i)
            try:
                with safe_open(str(path), framework="pt") as f:
                    values = f.get_tensor("values")
            except Exception as e:
                raise RuntimeError(f"activation cache shard {path} is missing or damaged ({e}); re-run capture") from e
            part = values if site_indices is None else values[:, list(site_indices)]
            if out is None:
                out = torch.empty((self.n_rows, *part.shape[1:]), dtype=part.dtype)
            if part.shape != (stop - start, *out.shape[1:]) or part.dtype != out.dtype:
                raise RuntimeError(
                    f"activation cache shard {path} holds {part.dtype} {tuple(values.shape)}, expected "
                    f"{stop - start} rows like the other shards; re-run capture"
                )
            out[start:stop] = part
            del values, part
        assert out is not None  # n_rows >= 1: capture rejects an empty statement list
        return out
