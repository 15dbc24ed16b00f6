"""Results sent between ranks (``elk_lens._wire``): what goes in comes out, unrounded and of the same types;
anything else is refused by name, and bytes are only ever read as data (no pickle)."""

import json
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import save

from elk_lens._wire import pack, unpack
from elk_lens.reporters import Reporter

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
TREES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.tuples(inner, inner) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(TREES)
def test_json_values_lists_tuples_and_dicts_come_back_equal_and_of_the_same_types(tree):
    back = unpack(pack(tree))
    assert back == tree and repr(back) == repr(tree)  # repr: a tuple stays a tuple, 1.0 stays a float


def test_tensors_reporters_and_non_finite_floats_come_back_bit_for_bit():
    w = torch.randn(5, dtype=torch.float64)
    r = Reporter(w, 0.1 + 0.2, w * 2, "ccs", "blocks.1.hook_resid_pre", {"seed": 3, "sets": ["a"]}, "contrast")
    view = torch.arange(12.0).reshape(3, 4)[:, 1]  # a strided view of a larger tensor
    tree = {"r": r, "t": (view, torch.zeros(0, 2, dtype=torch.bool), torch.tensor([1, 2], dtype=torch.int16))}
    back = unpack(pack({**tree, "inf": -math.inf, "nan": math.nan}))
    assert back["inf"] == -math.inf and math.isnan(back["nan"])
    got = back["r"]
    assert torch.equal(got.w, r.w) and torch.equal(got.v, r.v) and got.w.dtype == torch.float64
    assert (got.b, got.method, got.site, got.provenance, got.reads) == (r.b, r.method, r.site, r.provenance, r.reads)
    for sent, received in zip(tree["t"], back["t"], strict=True):
        assert torch.equal(sent, received) and sent.dtype == received.dtype


@pytest.mark.parametrize(
    ("tree", "match"),
    [
        ({"a": [1, {2, 3}]}, r"result\['a'\]\[1\]: a set cannot be sent between ranks"),
        ({1: "x"}, "dict keys sent between ranks must be strings; got 1"),
        ([object()], r"result\[0\]: a object cannot"),
    ],
)
def test_anything_else_is_refused_naming_where_it_is(tree, match):
    with pytest.raises(TypeError, match=match):
        pack(tree)


def test_bytes_naming_an_unknown_kind_are_refused_not_run():
    forged = save({}, metadata={"tree": json.dumps({"module": "os.system"})})
    with pytest.raises(ValueError, match="unknown kind 'module'"):
        unpack(forged)


def test_tensors_come_back_in_torchs_own_aligned_memory(tmp_path):
    """safetensors returns tensors at their offsets in the buffer; MKL's results depend on alignment, so a
    received tensor or a reporter read from disk must sit where a computed one would (``aligned``)."""
    w = torch.randn(7)
    for header in ("", "x" * 5, "x" * 9):  # the header's length shifts the data
        got = unpack(pack({"pad": header, "t": torch.randn(3, 5)}))["t"]
        assert got.data_ptr() % 64 == 0
        loaded = Reporter.load(
            Reporter(w, 0.0, w.clone(), "logistic", "s", {"pad": header}).save(tmp_path / f"r{len(header)}")
        )
        assert loaded.w.data_ptr() % 64 == 0 and loaded.v.data_ptr() % 64 == 0
