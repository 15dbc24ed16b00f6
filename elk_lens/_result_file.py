"""One JSON file per typed result (drift, growth, circuits, generalization): written atomically, its
payload checksummed, and read back verified, so a damaged or hand-edited file is refused by name
instead of read as numbers."""

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from elk_lens._atomic import atomic_write_text

__all__ = ["load_result", "save_result"]

_FORMAT = 1


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def save_result(path: str | Path, kind: str, payload: dict) -> Path:
    """Write ``payload`` (JSON data) as a ``kind`` result file at ``path``; returns the path."""
    path = Path(path)
    stored = {"kind": kind, "format": _FORMAT, "sha256": _digest(payload), "result": payload}
    atomic_write_text(path, json.dumps(stored, indent=1) + "\n")
    return path


def load_result(path: str | Path, kind: str, keys: Iterable[str]) -> dict:
    """The payload of a ``kind`` result file, verified: its kind and format, its checksum, and ``keys``."""
    path = Path(path)
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no {kind} result file here") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a {kind} result file: not valid JSON ({e})") from None
    if not isinstance(stored, dict) or stored.get("kind") != kind or not isinstance(stored.get("result"), dict):
        got = stored.get("kind") if isinstance(stored, dict) else type(stored).__name__
        raise ValueError(f"{path} is not a {kind} result file (it holds {got!r})")
    if stored.get("format") != _FORMAT:
        raise ValueError(f"{path}: {kind} result format {stored.get('format')!r}; this elk-lens reads {_FORMAT}")
    payload = stored["result"]
    if _digest(payload) != stored.get("sha256"):
        raise ValueError(f"{path} fails its checksum: the {kind} result was changed after it was saved")
    missing = [k for k in keys if k not in payload]
    if missing:
        raise ValueError(f"{path}: the {kind} result lacks {missing}")
    return payload
