"""Resumable training state as safetensors + JSON, never a pickle: unpickling a file from a directory a user
passes in can run any code (issue 13).

A state is a nested dict/list/tuple of tensors and JSON scalars (a model and optimizer state dict, RNG
states, step counters, history). :func:`flatten` splits it into the tensors and a JSON skeleton that names
them; :func:`unflatten` puts it back together, with non-string dict keys (an optimizer's parameter ids)
and tuples (its ``betas``) as they were, so the state round-trips exactly.

On disk a state is ``<name>.json`` (the skeleton, plus the SHA-256 of the tensors) and beside it
``<name>.<digest>.safetensors``: each save writes a tensors file of a new name, then the JSON that names
it, then removes the older tensors files (a kill before that leaves one, which the next verified read
removes). A kill at any moment leaves the old pair or the new one, both whole; a tensors file that does
not match the JSON's checksum is refused, naming the file.
"""

import hashlib
import json
import re
from pathlib import Path

from safetensors.torch import load, save
from torch import Tensor

from elk_lens._atomic import atomic_write_bytes, atomic_write_text, sha256_file

__all__ = ["clear_state", "flatten", "read_state", "refuse_pickle", "unflatten", "write_state"]

_TENSOR, _TUPLE, _ITEMS = "__tensor__", "__tuple__", "__items__"  # skeleton markers
_FORMAT = "elk-lens training state"


def flatten(obj: object) -> tuple[dict[str, Tensor], object]:
    """``obj`` as (tensors by name, JSON-able skeleton holding ``{"__tensor__": name}`` where each was)."""
    tensors: dict[str, Tensor] = {}

    def walk(x: object) -> object:
        if isinstance(x, Tensor):
            name = str(len(tensors))
            tensors[name] = x.detach().cpu().contiguous().clone()  # a clone: tied weights share storage
            return {_TENSOR: name}
        if isinstance(x, tuple):
            return {_TUPLE: [walk(v) for v in x]}
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, dict):
            if all(isinstance(k, str) and k not in (_TENSOR, _TUPLE, _ITEMS) for k in x):
                return {k: walk(v) for k, v in x.items()}
            return {_ITEMS: [[walk(k), walk(v)] for k, v in x.items()]}
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise TypeError(
            f"a training state holds tensors, dicts, lists, tuples and JSON scalars; got {type(x).__name__}"
        )

    return tensors, walk(obj)


def unflatten(skeleton: object, tensors: dict[str, Tensor]) -> object:
    """The inverse of :func:`flatten`. Raises ``KeyError`` for a tensor the skeleton names but ``tensors``
    lacks, ``ValueError`` for a malformed skeleton."""
    if isinstance(skeleton, list):
        return [unflatten(v, tensors) for v in skeleton]
    if not isinstance(skeleton, dict):
        return skeleton
    if _TENSOR in skeleton:
        return tensors[skeleton[_TENSOR]]
    if _TUPLE in skeleton:
        return tuple(unflatten(v, tensors) for v in skeleton[_TUPLE])
    if _ITEMS in skeleton:
        return {unflatten(k, tensors): unflatten(v, tensors) for k, v in skeleton[_ITEMS]}
    return {k: unflatten(v, tensors) for k, v in skeleton.items()}


def _tensors_name(path: Path) -> re.Pattern:
    return re.compile(rf"{re.escape(path.stem)}\.[0-9a-f]{{16}}\.safetensors")


def write_state(path: Path, state: dict) -> None:
    """Save ``state`` as ``path`` (JSON) and a tensors file beside it; the previous pair is replaced."""
    tensors, skeleton = flatten(state)
    data = save(tensors)
    digest = hashlib.sha256(data).hexdigest()  # what sha256_file gives for the file
    name = f"{path.stem}.{digest[:16]}.safetensors"
    atomic_write_bytes(path.parent / name, data)
    meta = {"format": _FORMAT, "tensors": name, "sha256": digest, "state": skeleton}
    atomic_write_text(path, json.dumps(meta))
    _remove_tensors(path, keep=name)


def _remove_tensors(path: Path, keep: str | None) -> None:
    pattern = _tensors_name(path)
    for f in path.parent.iterdir():
        if f.name != keep and pattern.fullmatch(f.name):
            f.unlink(missing_ok=True)


def clear_state(path: Path) -> None:
    """Remove a state written by :func:`write_state` (its JSON first: a tensors file alone is never read)."""
    path.unlink(missing_ok=True)
    _remove_tensors(path, keep=None)


def read_state(path: Path, *, keys: tuple[str, ...], what: str) -> dict:
    """The state saved at ``path``, its tensors checked against the JSON's SHA-256 and its top-level ``keys``
    present. Every damage is a ``ValueError`` naming the file."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}): the saved {what} is damaged") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ValueError(f"{path} is not an elk-lens {what} (no 'format': {_FORMAT!r})")
    name = meta.get("tensors")
    if not isinstance(name, str) or not _tensors_name(path).fullmatch(name):
        raise ValueError(f"{path} names {name!r}, which is not a tensors file of this state beside it")
    tensors_path = path.parent / name
    if not tensors_path.is_file():
        raise ValueError(f"{tensors_path} is missing: the saved {what} ({path}) is incomplete")
    if sha256_file(tensors_path) != meta.get("sha256"):
        raise ValueError(f"{tensors_path} fails its checksum (recorded in {path}): the saved {what} is damaged")
    try:
        state = unflatten(meta.get("state"), load(tensors_path.read_bytes()))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: the saved {what} is malformed ({type(e).__name__}: {e})") from None
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"{path}: the saved {what} lacks {missing}")
    _remove_tensors(path, keep=name)  # a tensors file an earlier save left when killed after its JSON
    return state


def refuse_pickle(path: Path, *, what: str, restart: str) -> None:
    """Refuse a state in the old pickle format if ``path`` holds one. It is never opened: loading it could run
    any code its author put in."""
    if path.exists():
        raise ValueError(
            f"{path} is a {what} in the old pickle format, which elk-lens no longer reads for safety (unpickling "
            f"a file can run any code); it was not loaded. {restart}"
        )
