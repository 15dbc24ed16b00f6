"""Property-based fuzzing of `load_statements` (issue 13): valid CSV and JSONL files round-trip exactly,
and any other bytes either load or raise a clear error that names the file, never another exception."""

import csv
import io
import json

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elk_lens.data import load_statements

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
CLEAR_ERRORS = (ValueError, TypeError, FileNotFoundError)

# any text a user can write (no lone surrogates: they cannot be stored as UTF-8), with something in it
texts = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=30).filter(str.strip)
cells = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
TRUE_SPELLINGS = ("1", "true", "True", "t", "YES", "y", " 1 ")
FALSE_SPELLINGS = ("0", "false", "FALSE", "f", "no", "N", "0 ")
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), cells, st.floats(allow_nan=False, allow_infinity=False)
)


@st.composite
def statement_rows(draw, meta_values):
    n = draw(st.integers(1, 6))
    return [(draw(texts), draw(st.booleans()), draw(meta_values)) for _ in range(n)]


def _spell(draw, label: bool) -> str:
    return draw(st.sampled_from(TRUE_SPELLINGS if label else FALSE_SPELLINGS))


def _check_round_trip(loaded, rows) -> None:
    assert loaded.texts == [t for t, _, _ in rows]
    assert torch.equal(loaded.truth, torch.tensor([y for _, y, _ in rows]))
    assert sorted(loaded.meta) == ["text", "topic"]
    assert loaded.meta["text"].tolist() == loaded.texts
    assert loaded.meta["topic"].tolist() == [m for _, _, m in rows]


@FUZZ
@given(rows=statement_rows(cells), data=st.data())
def test_valid_csv_round_trips(tmp_path, rows, data):
    columns = data.draw(st.permutations(["text", "label", "topic"]))
    out = io.StringIO(newline="")
    # a "\r" in an unquoted cell ends the line for every CSV reader: with "\n" line ends, quote every cell
    ending, quoting = data.draw(
        st.sampled_from([("\r\n", csv.QUOTE_MINIMAL), ("\r\n", csv.QUOTE_ALL), ("\n", csv.QUOTE_ALL)])
    )
    writer = csv.writer(out, lineterminator=ending, quoting=quoting)
    writer.writerow(columns)
    for text, label, topic in rows:
        cell = {"text": text, "label": _spell(data.draw, label), "topic": topic}
        writer.writerow([cell[c] for c in columns])
    bom = data.draw(st.sampled_from(["", "\ufeff"]))
    path = tmp_path / "facts.csv"
    path.write_bytes((bom + out.getvalue()).encode())
    _check_round_trip(load_statements(path), rows)


@FUZZ
@given(rows=statement_rows(json_scalars), data=st.data())
def test_valid_jsonl_round_trips(tmp_path, rows, data):
    ascii_only = data.draw(st.booleans())
    lines = []
    for text, label, topic in rows:
        spelled = data.draw(st.sampled_from([label, int(label), _spell(data.draw, label)]))
        lines.append(json.dumps({"text": text, "label": spelled, "topic": topic}, ensure_ascii=ascii_only))
    blank = data.draw(st.sampled_from(["\n", "\r\n", "\n\n"]))
    path = tmp_path / "facts.jsonl"
    path.write_bytes(blank.join(lines).encode())
    _check_round_trip(load_statements(path), rows)


def _load_or_clear_error(path) -> None:
    try:
        load_statements(path)
    except CLEAR_ERRORS as e:
        assert str(path) in str(e), f"{type(e).__name__} does not name the file: {e}"


@FUZZ
@given(body=st.binary(max_size=200), suffix=st.sampled_from([".csv", ".jsonl"]))
def test_arbitrary_bytes_load_or_fail_clearly(tmp_path, body, suffix):
    path = tmp_path / f"facts{suffix}"
    path.write_bytes(body)
    _load_or_clear_error(path)


VALID = {
    ".csv": b'text,label,topic\n"Paris, France.",1,geo\nParis is in Peru.,no,"a ""b"""\n',
    ".jsonl": b'{"text": "Paris.", "label": true, "topic": [1, 2]}\n{"text": "Peru.", "label": 0, "topic": null}\n',
}


@FUZZ
@given(suffix=st.sampled_from(sorted(VALID)), data=st.data())
def test_mutated_files_load_or_fail_clearly(tmp_path, suffix, data):
    body = bytearray(VALID[suffix])
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(body)))
        kind = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = data.draw(st.sampled_from([*b'",{}[]:\n\r\\\x00 a1', 0xFF, 0xC3]))
        if kind == "insert":
            body.insert(at, byte)
        elif at < len(body):
            body[at : at + 1] = b"" if kind == "delete" else bytes([byte])
    path = tmp_path / f"facts{suffix}"
    path.write_bytes(bytes(body))
    _load_or_clear_error(path)
