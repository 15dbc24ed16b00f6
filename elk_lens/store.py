"""On-disk activation cache: content-addressed directories of checksummed safetensors shards.

A cache entry is keyed by everything that determines its values (model fingerprint, data
fingerprint, sites, position rule, padding side, dtype). Shards are written atomically as they are
computed, so a killed capture resumes from its last finished shard and memory stays flat in the
number of statements. Every shard carries its entry's key, its rows and the SHA-256 of its values,
checked on every read: ``capture`` recomputes a damaged shard, and the lazy result refuses one,
naming the file (re-running ``capture`` recomputes it).
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
from elk_lens._checks import check_number
from elk_lens.activations import Activations
from elk_lens.distributed import ALONE, Ranks
from elk_lens.sites import Site

__all__ = ["ActivationStore"]

log = logging.getLogger(__name__)
SHARD_ROWS = 4096
_META_KEY = "elk_lens"  # a shard's metadata: one JSON string (key, rows, SHA-256 of the values)


def _digest(t: Tensor) -> str:
    # hashlib reads the tensor's bytes through the buffer protocol: no copy of the shard
    return hashlib.sha256(t.contiguous().reshape(-1).view(torch.uint8).numpy()).hexdigest()


def _key(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:20]


class ActivationStore:
    """One cache entry: ``root/<key>/manifest.json`` and ``shard_NNNNN.safetensors`` files.

    Every read of a shard, when ``capture`` looks for finished shards and when the lazy result loads
    them, checks that the shard belongs to this entry and these rows, and the SHA-256 of its values.
    """

    def __init__(self, root: Path, meta: dict, n_rows: int, shard_rows: int = SHARD_ROWS):
        check_number("shard_rows", shard_rows, kind=int, low=1)
        self.meta = {**meta, "n_rows": n_rows}
        # The shard size is part of the key (not of the values' provenance): callers with different
        # shard sizes would otherwise overwrite each other's shards, every one a start/stop mismatch.
        self.manifest = {**self.meta, "shard_rows": shard_rows}
        self.key = _key(self.manifest)
        self.dir = root / self.key
        self.n_rows, self.shard_rows = n_rows, shard_rows

    def _ranges(self) -> list[tuple[int, int]]:
        return [(a, min(self.n_rows, a + self.shard_rows)) for a in range(0, self.n_rows, self.shard_rows)]

    def _path(self, i: int) -> Path:
        return self.dir / f"shard_{i:05d}.safetensors"

    def _read(self, i: int, start: int, stop: int) -> Tensor:
        """Shard ``i``'s values, verified; ``ValueError`` naming the file says what is wrong with it."""
        path = self._path(i)
        if not path.is_file():
            raise ValueError(f"activation cache shard {path} is missing")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {}).get(_META_KEY, "{}"))
                values = f.get_tensor("values")
        except Exception as e:  # safetensors raises several types on truncated or garbled files
            raise ValueError(f"activation cache shard {path} is unreadable ({e})") from e
        if not isinstance(meta, dict):
            raise ValueError(f"activation cache shard {path} has malformed metadata {meta!r}")
        if (meta.get("key"), meta.get("start"), meta.get("stop")) != (self.key, str(start), str(stop)):
            raise ValueError(
                f"activation cache shard {path} belongs to another cache entry or rows (key {meta.get('key')}, "
                f"rows {meta.get('start')}..{meta.get('stop')}; expected key {self.key}, rows {start}..{stop})"
            )
        if meta.get("sha256") != _digest(values):
            raise ValueError(f"activation cache shard {path} fails its checksum: its values changed after capture")
        return values

    def _valid(self, i: int, start: int, stop: int) -> bool:
        if not self._path(i).is_file():
            return False  # not computed yet
        try:
            self._read(i, start, stop)
        except ValueError as e:
            log.warning("%s; recomputing it", e)
            return False
        return True

    def _check_manifest(self) -> None:
        path = self.dir / "manifest.json"
        if not path.is_file():
            raise RuntimeError(f"activation cache manifest {path} is missing; re-run capture (it rewrites it)")
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RuntimeError(f"activation cache manifest {path} is not valid JSON ({e}); re-run capture") from None
        if not isinstance(manifest, dict) or _key(manifest) != self.key:
            raise RuntimeError(
                f"activation cache manifest {path} does not match this cache entry (key {self.key}): it was edited "
                f"or belongs to another capture; re-run capture (it rewrites it and checks every shard)"
            )

    def missing(self) -> list[int]:
        """The shards not computed yet or damaged (each one present is read and verified); writes nothing."""
        return [i for i, (start, stop) in enumerate(self._ranges()) if not self._valid(i, start, stop)]

    def fill(
        self,
        compute: Callable[[int, int], Tensor],
        *,
        on_rows: Callable[[int], object],
        sites: list[Site],
        missing: list[int] | None = None,
        ranks: Ranks = ALONE,
    ) -> Activations:
        """Compute every missing or damaged shard (``missing``, if the caller has just asked), then return
        activations backed by the shards.

        Under ``torchrun`` the missing shards are dealt over the ranks (``Ranks.deal``), each rank computes
        its own and waits for the others; every rank writes the same manifest (an atomic rename of equal
        bytes), so the entry is the one a single process writes, and a rank that dies leaves finished shards
        for the rerun.
        """
        mine = set(ranks.mine(sorted(self.missing() if missing is None else missing)))
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.dir / "manifest.json", json.dumps(self.manifest, indent=2, sort_keys=True))
        for i, (start, stop) in enumerate(self._ranges()):
            if i in mine:
                values = compute(start, stop).contiguous()
                meta = {"key": self.key, "start": str(start), "stop": str(stop), "sha256": _digest(values)}
                # one metadata key: safetensors writes several in a random order, so equal shards would differ
                meta = {_META_KEY: json.dumps(meta, sort_keys=True)}
                atomic_write_bytes(self._path(i), save({"values": values}, metadata=meta))
            on_rows(stop - start)
        ranks.barrier()  # every shard is written before any rank reads them
        return Activations(None, sites, self.meta["position"], dict(self.meta), loader=self.load)

    def load(self, site_indices: Sequence[int] | None = None) -> Tensor:
        """Concatenate the shards, keeping only ``site_indices`` (all sites if None), each verified.

        Shards are copied into one preallocated tensor, so the peak is the result plus one shard.
        """
        self._check_manifest()
        out = None
        for i, (start, stop) in enumerate(self._ranges()):
            path = self._path(i)
            try:
                values = self._read(i, start, stop)
            except ValueError as e:
                raise RuntimeError(f"{e}; re-run capture with the same arguments: it recomputes this shard") from e
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
