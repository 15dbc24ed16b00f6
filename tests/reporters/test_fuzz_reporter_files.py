"""Fuzzing saved reporters (issue 13): whatever happens to the bytes of a saved reporter's files or to the
values in its JSON, `Reporter.load` gives back the very reporter that was saved, or raises ValueError /
FileNotFoundError naming the damaged directory and file: never another error, never another reporter."""

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from elk_lens.reporters import Reporter

FILES = ("reporter.json", "reporter.safetensors")
FUZZ = settings(max_examples=50, deadline=None)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Reporter, Path]:
    gen = torch.Generator().manual_seed(0)
    provenance = {"model": "0123abcd", "C": 1.0, "history": [1, 2]}
    w, v = torch.randn(8, generator=gen), torch.randn(8, generator=gen)
    reporter = Reporter(w, -0.75, v, "ccs", "blocks.2.hook_resid_post", provenance, "contrast")
    return reporter, reporter.save(tmp_path_factory.mktemp("fuzz") / "rep")


def _copy(src: Path) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(shutil.copytree(src, Path(tmp) / "rep"))


def _loads_the_same_or_names_the_file(path: Path, original: Reporter) -> None:
    try:
        loaded = Reporter.load(path)
    except (ValueError, FileNotFoundError) as e:
        message = str(e)  # names the directory, and the file (as the JSON lists it, maybe damaged itself)
        assert str(path) in message and (f"{path}/" in message or any(f in message for f in FILES)), message
        return
    assert torch.equal(loaded.w, original.w) and loaded.w.dtype == original.w.dtype
    assert torch.equal(loaded.v, original.v) and loaded.v.dtype == original.v.dtype
    assert (loaded.b, loaded.method, loaded.site, loaded.provenance, loaded.reads) == (
        original.b,
        original.method,
        original.site,
        original.provenance,
        original.reads,
    )


@FUZZ
@given(
    name=st.sampled_from(FILES),
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_changed_bytes(saved, name, edits):
    original, src = saved
    for path in _copy(src):
        data = bytearray((path / name).read_bytes())
        for where, byte in edits:
            data[int(where * len(data))] = byte
        (path / name).write_bytes(bytes(data))
        _loads_the_same_or_names_the_file(path, original)


@FUZZ
@given(name=st.sampled_from(FILES), keep=st.floats(0, 1, exclude_max=True), delete=st.booleans())
def test_truncated_or_deleted_files(saved, name, keep, delete):
    original, src = saved
    for path in _copy(src):
        data = (path / name).read_bytes()
        if delete:
            (path / name).unlink()
        else:
            (path / name).write_bytes(data[: int(keep * len(data))])
        _loads_the_same_or_names_the_file(path, original)


def _paths(value, prefix: tuple = ()) -> list[tuple]:
    """Every key path into a JSON value (dict keys and list indices), the root excluded."""
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [p for k, v in children for p in ((*prefix, k), *_paths(v, (*prefix, k)))]


@FUZZ
@given(data=st.data())
def test_edited_json_values(saved, data):
    original, src = saved
    for path in _copy(src):
        meta = json.loads((path / "reporter.json").read_text())
        where = data.draw(st.sampled_from(_paths(meta)))
        parent = meta
        for key in where[:-1]:
            parent = parent[key]
        action = data.draw(st.sampled_from(["set", "delete", "add"]))
        if action == "set":
            parent[where[-1]] = data.draw(JSON_VALUES)
        elif action == "delete":
            del parent[where[-1]]
        elif isinstance(parent, dict):
            parent[data.draw(st.text(max_size=6))] = data.draw(JSON_VALUES)
        else:
            parent.append(data.draw(JSON_VALUES))
        (path / "reporter.json").write_text(json.dumps(meta))
        _loads_the_same_or_names_the_file(path, original)
