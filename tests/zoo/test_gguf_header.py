"""elk_lens.zoo.gguf_header against the ``gguf`` package's own reader (the oracle): random metadata of every
GGUF value type written by ``gguf.GGUFWriter``, and every truncation of a file's metadata."""

from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader, GGUFValueType, GGUFWriter
from gguf_files import write_tiny_llama_gguf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elk_lens.zoo.gguf_header import read_metadata

SCALAR_TYPES = [
    GGUFValueType.UINT8,
    GGUFValueType.INT8,
    GGUFValueType.UINT16,
    GGUFValueType.INT16,
    GGUFValueType.UINT32,
    GGUFValueType.INT32,
    GGUFValueType.FLOAT32,
    GGUFValueType.BOOL,
    GGUFValueType.UINT64,
    GGUFValueType.INT64,
    GGUFValueType.FLOAT64,
]
RANGES = {
    GGUFValueType.UINT8: (0, 2**8 - 1),
    GGUFValueType.INT8: (-(2**7), 2**7 - 1),
    GGUFValueType.UINT16: (0, 2**16 - 1),
    GGUFValueType.INT16: (-(2**15), 2**15 - 1),
    GGUFValueType.UINT32: (0, 2**32 - 1),
    GGUFValueType.INT32: (-(2**31), 2**31 - 1),
    GGUFValueType.UINT64: (0, 2**64 - 1),
    GGUFValueType.INT64: (-(2**63), 2**63 - 1),
}


@st.composite
def entry(draw: st.DrawFn) -> tuple[object, GGUFValueType, GGUFValueType | None]:
    """(value, type, array item type) of one metadata entry."""
    kind = draw(st.sampled_from([*SCALAR_TYPES, GGUFValueType.STRING, GGUFValueType.ARRAY]))
    if kind == GGUFValueType.STRING:
        return draw(st.text(max_size=20)), kind, None
    if kind == GGUFValueType.ARRAY:
        item = draw(st.sampled_from([GGUFValueType.STRING, GGUFValueType.INT32, GGUFValueType.FLOAT32]))
        values = {
            GGUFValueType.STRING: st.text(max_size=8),
            GGUFValueType.INT32: st.integers(-5, 5),
            GGUFValueType.FLOAT32: st.floats(-1, 1, width=32),
        }[item]
        return draw(st.lists(values, min_size=1, max_size=6)), kind, item
    if kind == GGUFValueType.BOOL:
        return draw(st.booleans()), kind, None
    if kind in (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64):
        return draw(st.floats(-1e6, 1e6, width=32)), kind, None
    return draw(st.integers(*RANGES[kind])), kind, None


def write(path: Path, entries: list) -> Path:
    w = GGUFWriter(str(path), "llama")
    for i, (value, kind, item) in enumerate(entries):
        w.add_key_value(f"test.k{i}", value, kind, sub_type=item)
    w.add_tensor("t", np.zeros(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(entry(), min_size=1, max_size=8), data=st.data())
def test_values_equal_the_gguf_readers(tmp_path, entries, data):
    path = write(tmp_path / "m.gguf", entries)
    fields = GGUFReader(str(path)).fields
    scalar_keys = [f"test.k{i}" for i, (_, kind, _) in enumerate(entries) if kind != GGUFValueType.ARRAY]
    asked = set(data.draw(st.lists(st.sampled_from([*scalar_keys, "general.architecture", "absent"]), unique=True)))
    got = read_metadata(path, asked)
    assert set(got) == asked - {"absent"}
    for key in got:
        assert got[key] == fields[key].contents(), key


def test_an_array_asked_for_is_refused_by_name(tmp_path):
    path = write(tmp_path / "m.gguf", [([1, 2], GGUFValueType.ARRAY, GGUFValueType.INT32)])
    with pytest.raises(ValueError, match=r"test\.k0 holds a value of GGUF type 9, not a scalar or string"):
        read_metadata(path, {"test.k0"})


def test_every_truncation_of_the_metadata_is_a_value_error(tmp_path):
    full = write_tiny_llama_gguf(tmp_path / "tiny.gguf").read_bytes()
    keys = {"general.architecture", "tokenizer.ggml.add_bos_token"}  # the last key the tiny file writes
    assert read_metadata(tmp_path / "tiny.gguf", keys) == {
        "general.architecture": "llama",
        "tokenizer.ggml.add_bos_token": True,
    }
    cut = tmp_path / "cut.gguf"
    end = full.index(b"tokenizer.ggml.add_bos_token") + len("tokenizer.ggml.add_bos_token") + 5
    for n in range(1, end, 7):
        cut.write_bytes(full[:n])
        with pytest.raises(ValueError):
            read_metadata(cut, keys)


def test_a_file_that_is_not_a_gguf_is_a_value_error(tmp_path):
    path = tmp_path / "x.gguf"
    path.write_bytes(b"GGML" + bytes(64))
    with pytest.raises(ValueError, match="does not start with the GGUF magic"):
        read_metadata(path, {"general.architecture"})
