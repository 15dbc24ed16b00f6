"""Self-describing run directories: config, manifest, metrics, tables, and resumable stages.

A stage's result is saved when the stage finishes, atomically, with the SHA-256 of its content in the
same file (a JSON stage: beside the result in the JSON; a tensor stage: in the safetensors metadata).
A rerun uses a saved stage only after checking it. Writes are atomic, so only damage from outside (a
disk error, an edit, a copy cut short) can make a stage file fail; such a file is never used: the stage
is computed again and the file replaced, with a warning naming it. That is the honest repair, not a
guess: a stage is a deterministic function of the run's config, so recomputing gives the value the run
would have had, and the file is elk-lens's own (no user data is lost by replacing it). A stage file from
before stages carried checksums is recomputed the same way (it cannot be verified).

Under ``torchrun`` (elk_lens/distributed.py) every rank runs the analysis. A stage is computed by rank 0
alone while the others wait, then read by them from its file: any stage (a fine-tune writing checkpoints
too) is then written once. A ``collective`` stage is computed by every rank together (the captures inside
split their shards, the fits inside spread with :func:`elk_lens.distributed.spread`) and written by rank 0.
Independent stages (:meth:`RunDir.stages`) are spread over the ranks, each computed alone by one. The run
directory must be on a file system every rank sees (docs/guide/scaling-out.md).
"""

import hashlib
import json
import logging
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

import tomllib
import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import Tensor

from elk_lens import distributed
from elk_lens._atomic import atomic_write_bytes, atomic_write_text
from elk_lens._csv import write_csv
from elk_lens._progress import log as progress
from elk_lens._tensor_files import aligned

__all__ = ["RunDir", "environment"]

log = logging.getLogger(__name__)
_STAGE_FORMAT = "elk-lens stage"  # marks a checksummed JSON stage file
# A tensor stage's metadata holds this one key: safetensors writes several metadata keys in a random
# order, so a file with one key is the same bytes in every run.
_STAGE_DIGEST = "elk-lens stage sha256"
_MISSING = object()  # no usable saved result

_PACKAGES = ("elk-lens", "transformer-lens", "torch", "transformers", "tokenizers", "numpy", "safetensors")


def _git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment() -> dict:
    """Versions and revision a result depends on."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "git_revision": _git_revision(),
    }


class _Damaged(Exception):
    """A stage file that must not be used; the message says why."""


def _result_text(result: object) -> str:
    return json.dumps(result, indent=2)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tensors_digest(tensors: dict[str, Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _read_json_stage(path: Path) -> object:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _Damaged(f"is not valid JSON ({e})") from None
    if not isinstance(saved, dict) or saved.get("format") != _STAGE_FORMAT or "result" not in saved:
        raise _Damaged("holds no checksummed stage result (damaged, or written before stages carried checksums)")
    if _sha256(_result_text(saved["result"]).encode()) != saved.get("sha256"):
        raise _Damaged("fails its checksum (its result was changed after the stage saved it)")
    return saved["result"]


def _read_tensor_stage(path: Path) -> dict[str, Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = aligned(f.get_tensors())  # what load_file returns, in its order, in torch's memory
    except Exception as e:  # safetensors raises several types on truncated or garbled files
        raise _Damaged(f"is not a readable safetensors file ({type(e).__name__}: {e})") from None
    if _STAGE_DIGEST not in meta:
        raise _Damaged("holds no checksummed stage result (damaged, or written before stages carried checksums)")
    if meta[_STAGE_DIGEST] != _tensors_digest(tensors):
        raise _Damaged("fails its checksum (its tensors were changed after the stage saved them)")
    return tensors


def _same_config(saved: str, new: str) -> bool:
    """The same settings: equal texts, or equal once parsed (an edited comment does not make another run)."""
    if saved == new:
        return True
    try:
        return tomllib.loads(saved) == tomllib.loads(new)
    except tomllib.TOMLDecodeError:
        return False


class RunDir:
    """A run directory. Each stage's result is saved when it finishes, so a killed run resumes (module doc)."""

    def __init__(self, path: Path, config_text: str):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        saved = path / "config.toml"
        if saved.is_file() and not _same_config(saved.read_text(), config_text):
            raise ValueError(
                f"run directory {path} already holds a run of a different config; "
                f"pick another name (--name) or delete the directory"
            )
        atomic_write_text(saved, config_text)
        self.timings: dict[str, float] = {}
        self.resumed: list[str] = []

    def _saved(self, name: str, path: Path, read: Callable[[Path], object]) -> object:
        """The checked result saved at ``path``, or ``_MISSING`` (not saved yet, or damaged: recompute it)."""
        if not path.is_file():
            return _MISSING
        try:
            return read(path)
        except _Damaged as e:
            log.warning("run stage file %s %s; computing stage %r again and replacing the file", path, e, name)
            return _MISSING

    def _resumed(self, name: str, path: Path, result: object) -> object:
        self.resumed.append(name)
        progress.info("stage %s: resumed from %s", name, path.relative_to(self.path))
        return result

    def _staged(
        self,
        name: str,
        path: Path,
        read: Callable[[Path], object],
        compute: Callable[[], object],
        save: Callable[[object], None],
        collective: bool,
    ) -> object:
        """A stage's result: resumed if every rank finds it saved; else computed — by rank 0 alone, the
        others reading its file once it is there, or, ``collective``, by every rank at once (captures inside
        split their shards over the ranks) and saved by rank 0."""
        ranks = distributed.ranks()
        saved = self._saved(name, path, read)
        if ranks.all_true(saved is not _MISSING):
            return self._resumed(name, path, saved)
        if collective:
            result = self._compute(name, compute)
            if ranks.rank == 0:
                save(result)
            ranks.barrier()
            return result
        if ranks.rank != 0:  # (if rank 0 fails, torchrun stops every rank)
            ranks.barrier()
            return self._saved_by_another(name, path, read)
        with distributed.alone():
            result = self._compute(name, compute)
            save(result)
        ranks.barrier()
        return result

    def _saved_by_another(self, name: str, path: Path, read: Callable[[Path], object]) -> object:
        result = self._saved(name, path, read)
        if result is _MISSING:
            raise RuntimeError(f"stage {name!r}: another rank computed it, but {path} cannot be read here")
        return result

    def _compute(self, name: str, compute: Callable[[], object]) -> object:
        progress.info("stage %s: started", name)
        started = time.perf_counter()
        result = compute()
        self.timings[name] = round(time.perf_counter() - started, 2)
        progress.info("stage %s: done in %.1f s", name, self.timings[name])
        return result

    def stage(self, name: str, compute: Callable[[], dict], *, collective: bool = False) -> dict:
        """Return the saved result of stage ``name`` (checked), or compute and save it (JSON with its SHA-256).

        ``collective``: under ``torchrun`` every rank computes the stage together, so the captures inside it
        split their shards over the ranks and the independent fits it hands to :func:`elk_lens.distributed.spread`
        spread; only for a stage that writes nothing but the activation cache and runs the same code on every
        rank (work outside ``spread`` is repeated on each). Otherwise rank 0 computes alone.
        """
        path = self._json_path(name)
        return self._staged(
            name, path, _read_json_stage, compute, lambda result: self._write_json_stage(path, result), collective
        )

    def stages(self, computes: dict[str, Callable[[], dict]]) -> dict[str, dict]:
        """Independent JSON stages (e.g. one per method): as :meth:`stage` each, but under ``torchrun`` the
        ones not saved yet are dealt over the ranks (:meth:`~elk_lens.distributed.Ranks.deal`), each computed alone,
        and every rank then reads them all from their files."""
        ranks = distributed.ranks()
        paths = {name: self._json_path(name) for name in computes}
        saved = {name: self._saved(name, paths[name], _read_json_stage) for name in computes}
        todo = [name for name in computes if not ranks.all_true(saved[name] is not _MISSING)]
        for name in ranks.mine(todo):
            with distributed.alone():
                self._write_json_stage(paths[name], self._compute(name, computes[name]))
        ranks.barrier()
        return {
            name: self._saved_by_another(name, paths[name], _read_json_stage)
            if name in todo
            else self._resumed(name, paths[name], saved[name])
            for name in computes
        }

    def _json_path(self, name: str) -> Path:
        return self.path / "stages" / f"{name}.json"

    @staticmethod
    def _write_json_stage(path: Path, result: dict) -> None:
        text = _result_text(result)
        stored = {"format": _STAGE_FORMAT, "sha256": _sha256(text.encode()), "result": result}
        atomic_write_text(path, json.dumps(stored, indent=2))

    def tensor_stage(
        self, name: str, compute: Callable[[], dict[str, Tensor]], *, collective: bool = False
    ) -> dict[str, Tensor]:
        """As :meth:`stage`, for a result of named tensors (safetensors, the SHA-256 in its metadata)."""
        path = self.path / "stages" / f"{name}.safetensors"

        def save_tensors(result: dict[str, Tensor]) -> None:
            # clone: safetensors refuses tensors that share storage (e.g. a view of another result tensor)
            tensors = {k: v.detach().clone().contiguous() for k, v in result.items()}
            atomic_write_bytes(path, save(tensors, metadata={_STAGE_DIGEST: _tensors_digest(tensors)}))

        return self._staged(name, path, _read_tensor_stage, compute, save_tensors, collective)

    def write_json(self, name: str, obj: object) -> Path:
        path = self.path / name
        atomic_write_text(path, json.dumps(obj, indent=2, default=str))
        return path

    def write_csv(self, name: str, rows: Sequence[dict]) -> Path:
        return write_csv(self.path / name, rows)

    def write_text(self, name: str, text: str) -> Path:
        path = self.path / name
        atomic_write_text(path, text)
        return path
