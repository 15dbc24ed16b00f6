"""StatementSet and the CSV / JSONL loader."""

import json

import numpy as np
import pytest
import torch

from elk_lens.data import StatementSet, load_statements
from elk_lens.data.statements import as_statements


def _set() -> StatementSet:
    meta = {"group": np.array(["a", "b", "a"], dtype=object), "x": np.array([1, 2, 3])}
    return StatementSet(["s0.", "s1.", "s2."], torch.tensor([True, False, True]), meta, name="toy")


def test_subset_where_split_keep_rows_aligned():
    s = _set()
    sub = s.where(group="a")
    assert sub.texts == ["s0.", "s2."] and sub.truth.tolist() == [True, True] and sub.meta["x"].tolist() == [1, 3]
    assert s.subset(np.array([2, 0])).texts == ["s2.", "s0."]
    parts = s.split("group")
    assert sorted(parts) == ["a", "b"] and parts["b"].texts == ["s1."]


def test_fingerprint_depends_on_content_only():
    assert _set().fingerprint == _set().fingerprint
    other = _set()
    other.meta["x"][0] = 9
    assert other.fingerprint != _set().fingerprint
    flipped = StatementSet(_set().texts, torch.tensor([False, False, True]), _set().meta)
    assert flipped.fingerprint != _set().fingerprint


def test_bad_sets_are_refused():
    with pytest.raises(ValueError, match="is empty"):
        StatementSet([], torch.zeros(0, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool tensor of shape"):
        StatementSet(["a"], torch.tensor([1]))
    with pytest.raises(ValueError, match="meta column 'x' has 2 rows"):
        StatementSet(["a"], torch.tensor([True]), {"x": np.array([1, 2])})
    with pytest.raises(KeyError, match="no column 'nope'; columns: \\['group', 'x'\\]"):
        _set().column("nope")
    with pytest.raises(ValueError, match="no statement in 'toy'"):
        _set().where(group="zzz")


def test_csv_with_template(tmp_path):
    path = tmp_path / "facts.csv"
    path.write_text("statement,label,topic\nParis is in France.,1,geo\nParis is in Peru.,false,geo\n")
    s = load_statements(path, text_column="statement", template="{statement} True or false?")
    assert s.texts == ["Paris is in France. True or false?", "Paris is in Peru. True or false?"]
    assert s.truth.tolist() == [True, False]
    assert s.meta["topic"].tolist() == ["geo", "geo"] and s.name == "facts"


def test_jsonl(tmp_path):
    path = tmp_path / "facts.jsonl"
    path.write_text("\n".join(json.dumps({"text": t, "label": y}) for t, y in [("a.", True), ("b.", False)]) + "\n")
    s = load_statements(path)
    assert s.texts == ["a.", "b."] and s.truth.tolist() == [True, False]


def test_loader_errors(tmp_path):
    csv_path = tmp_path / "x.csv"
    csv_path.write_text("sentence,truth\nA.,1\n")
    missing = r"no column\(s\) \['text', 'label'\]; columns present: \['sentence', 'truth'\]"
    with pytest.raises(ValueError, match=missing):
        load_statements(csv_path)
    with pytest.raises(ValueError, match="label column 'truth' has 'maybe'"):
        bad = tmp_path / "bad.csv"
        bad.write_text("sentence,truth\nA.,maybe\n")
        load_statements(bad, text_column="sentence", label_column="truth")
    for body in ("A.,1\nB.,\n", "A.,1\nB.\n"):  # an empty label cell, a row missing its label field
        (tmp_path / "gap.csv").write_text("sentence,truth\n" + body)
        with pytest.raises(ValueError, match="row 1: no label in column 'truth'"):
            load_statements(tmp_path / "gap.csv", text_column="sentence", label_column="truth")
    with pytest.raises(ValueError, match="template .* names column 'nope'"):
        load_statements(csv_path, text_column="sentence", label_column="truth", template="{nope}")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_statements(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="unsupported file type '.txt'"):
        (tmp_path / "x.txt").write_text("x")
        load_statements(tmp_path / "x.txt")


def test_jsonl_columns_are_the_union_of_the_rows_keys(tmp_path):
    """A key first seen on a later row is still a column (None where a row lacks it); list values stay one
    entry per row."""
    path = tmp_path / "facts.JSONL"
    rows = [{"text": "a.", "label": 1}, {"text": "b.", "label": "no", "tags": [1, 2]}, {"text": "c.", "label": True}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    s = load_statements(path)
    assert s.truth.tolist() == [True, False, True]
    assert s.meta["tags"].shape == (3,) and s.meta["tags"].tolist() == [None, [1, 2], None]
    assert s.subset(np.array([1])).meta["tags"].tolist() == [[1, 2]]


def test_plain_texts_and_their_statement_set_share_a_fingerprint():
    texts = ("a.", "b.")
    wrapped = as_statements("statements", texts)
    assert wrapped.texts == ["a.", "b."]  # a tuple becomes the list it holds
    assert wrapped.fingerprint == StatementSet(list(texts), torch.zeros(2, dtype=torch.bool)).fingerprint
    toy = _set()
    assert as_statements("statements", toy) is toy
    with pytest.raises(ValueError, match="no statements to capture"):
        as_statements("statements", [])
