"""Atomic, non-destructive writes and verified reads: the data contract of ``docs/contract.md``.

- A reader never sees a half-written file: every file is written to a temporary sibling, fsynced and
  renamed over its name.
- Saving never deletes anything elk-lens did not write: :func:`save_dir` refuses a path that is a
  file, and a directory that already holds files unless ``overwrite=True``; even then it replaces only
  the files its own earlier save listed, and leaves every other file alone.
- Everything read back is verified: a saved directory's manifest (``marker``) lists the SHA-256 of each
  file beside it and of its own content, and :func:`read_dir` checks them all before the caller reads a
  byte (so an edited bias or site is refused as surely as a flipped bit in a tensor file).
"""

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "CONTENT_KEY",
    "atomic_write_bytes",
    "content_digest",
    "atomic_write_text",
    "read_dir",
    "save_dir",
    "sha256_file",
]

_CHUNK = 1 << 20
CONTENT_KEY = "content_sha256"
"""The marker's key for the SHA-256 of its own content (every other key, ``files`` included)."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary sibling, fsync, then rename over ``path`` (never over a directory)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file path to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the result is an ordinary file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def content_digest(meta: dict) -> str:
    """SHA-256 of a JSON object as it reads back from disk (keys sorted): a marker's seal."""
    canonical = json.loads(json.dumps(meta, default=str))  # what the JSON holds once written and read back
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def _refuse_existing(path: Path, marker: str, overwrite: bool, what: str) -> None:
    if path.exists() and not path.is_dir():
        raise FileExistsError(
            f"cannot save the {what} to {path}: it is an existing file, not a directory; "
            f"give a new or empty directory path"
        )
    if overwrite or not path.is_dir():
        return
    present = sorted(p.name for p in path.iterdir())
    listed = ", ".join(present[:5]) + (", …" if len(present) > 5 else "")
    if present:
        own = (path / marker).is_file()
        raise FileExistsError(
            f"cannot save the {what} to {path}: the directory already holds "
            f"{'a saved ' + what if own else 'other files'} ({listed});"
            f" pass overwrite=True to replace {'it' if own else 'only the files elk-lens writes there'}, "
            f"or give a new directory"
        )


def _is_marker(file: Path) -> bool:
    """A marker elk-lens wrote: a JSON object (older formats list no files, but are still its own)."""
    try:
        return isinstance(json.loads(file.read_text()), dict)
    except (OSError, ValueError):
        return False


def _own_files(path: Path, marker: str) -> set[str]:
    """The files an earlier save listed in its manifest (elk-lens's own, safe to replace)."""
    try:
        meta = json.loads((path / marker).read_text())
    except (OSError, ValueError):
        return set()
    files = meta.get("files", {}) if isinstance(meta, dict) else {}
    return {name for name in files if isinstance(name, str) and "/" not in name and name not in ("", ".", "..")}


def save_dir(
    path: str | Path, meta: dict, write: Callable[[Path], None], *, marker: str, overwrite: bool, what: str
) -> Path:
    """Save a directory: ``write(tmp)`` writes the data files, then ``marker`` (JSON: ``meta`` plus the
    SHA-256 of every file written) goes in last.

    A new or empty ``path`` appears whole in one rename. An existing directory is refused unless
    ``overwrite``; then each new file replaces its namesake by an atomic rename, the marker last, and
    only the files the old marker listed are removed where this save does not write them again. A crash
    midway leaves files the marker's checksums do not match, which :func:`read_dir` refuses.

    Args:
        path: The directory to save into.
        meta: The marker's content (must not hold ``"files"`` or ``CONTENT_KEY``).
        write: Writes the data files into the temporary directory it is given (no subdirectories).
        marker: The marker file's name, e.g. ``"reporter.json"``.
        overwrite: Replace a saved one (or add beside foreign files) instead of refusing.
        what: What is saved, for error messages ("reporter").
    """
    path = Path(path)
    _refuse_existing(path, marker, overwrite, what)  # before any work
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        write(tmp)
        files = sorted(p.name for p in tmp.iterdir())
        if any((tmp / f).is_dir() for f in files) or marker in files:
            raise RuntimeError(f"save_dir: write() must write plain files other than {marker}; wrote {files}")
        content = {**meta, "files": {f: sha256_file(tmp / f) for f in files}}
        content[CONTENT_KEY] = content_digest(content)
        (tmp / marker).write_text(json.dumps(content, indent=2, default=str))
        tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary directory
        for f in tmp.iterdir():
            f.chmod(0o644)  # libraries such as safetensors write private files
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _refuse_existing(path, marker, overwrite, what)  # the directory may have filled meanwhile
        if not path.exists():
            tmp.rename(path)
            return path
        if not any(path.iterdir()):
            path.rmdir()
            tmp.rename(path)
            return path
        own = _own_files(path, marker)
        # a foreign file that shares a name with one of ours is never replaced, overwrite or not
        foreign = sorted(f for f in files if (path / f).exists() and f not in own)
        if foreign or ((path / marker).exists() and not _is_marker(path / marker)):
            raise FileExistsError(
                f"cannot save the {what} to {path}: it holds files elk-lens did not write under "
                f"the names it writes ({', '.join(foreign or [marker])}); give a new directory"
            )
        stale = own - set(files)
        for f in [*files, marker]:  # the marker last: until then the old one's checksums refuse a mixture
            os.replace(tmp / f, path / f)
        for f in stale:
            (path / f).unlink(missing_ok=True)
        return path
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_dir(path: str | Path, *, marker: str, what: str) -> dict:
    """The marker of a directory written by :func:`save_dir`, after checking every file it lists.

    Raises ``FileNotFoundError`` when there is no marker, ``ValueError`` naming the file when the marker
    is not JSON, its content does not match its own digest, or a listed file is missing or fails its
    checksum. A marker from before checksums were recorded (no ``"files"``) is returned as it is; the
    caller checks what it can.
    """
    path = Path(path)
    if not (path / marker).is_file():
        raise FileNotFoundError(f"{path} holds no saved {what} ({marker})")
    try:
        meta = json.loads((path / marker).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path / marker} is not valid JSON ({e}); the saved {what} is damaged") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path / marker} must hold a JSON object; got {type(meta).__name__}")
    if CONTENT_KEY in meta and meta[CONTENT_KEY] != content_digest({k: v for k, v in meta.items() if k != CONTENT_KEY}):
        raise ValueError(
            f"{path / marker} was edited or damaged after the {what} was saved: its content no longer "
            f"matches its {CONTENT_KEY}; save it again"
        )
    files = meta.get("files", {})
    if not isinstance(files, dict):
        raise ValueError(f"{path / marker}: 'files' must map file names to SHA-256 digests; got {files!r}")
    for name, digest in files.items():
        file = path / name
        if Path(name).name != name or name in ("", ".", ".."):
            raise ValueError(f"{path / marker} lists {name!r}, which is not a plain file name in {path}")
        if not file.is_file():
            raise ValueError(f"{file} is missing: the saved {what} in {path} is incomplete")
        if sha256_file(file) != digest:
            raise ValueError(
                f"{file} fails its checksum (recorded in {marker}): it was changed or damaged after the {what} "
                f"was saved; save it again"
            )
    return meta
