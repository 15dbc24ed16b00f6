"""Users' own statements from CSV or JSONL, optionally rendered through a template.

A file is read whole or refused: every error names the file, the line and the row (the statement's
index in the result), never a bare ``UnicodeDecodeError`` or ``KeyError``. A malformed row (an empty
or null text, extra cells, a duplicated column) is refused rather than read as something it is not.
"""

import csv
import io
import json
from pathlib import Path

import numpy as np
import torch

from elk_lens.data.statements import StatementSet

__all__ = ["load_statements"]

_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n"}
_SUFFIXES = (".csv", ".jsonl", ".ndjson")

Rows = list[tuple[int, dict]]  # (line number in the file, the row's columns)


class _DuplicateKey(ValueError):
    pass


def _parse_label(value: object, where: str, column: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None or str(value).strip() == "":
        raise ValueError(
            f"{where}: no label in column {column!r} (an empty cell or a short row); "
            f"every statement needs one of {sorted(_TRUE | _FALSE)}"
        )
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(
        f"{where}: label column {column!r} has {value!r}; valid labels: {sorted(_TRUE | _FALSE)} or a JSON bool"
    )


def _decode(path: Path) -> str:
    """The file as text: UTF-8, with or without a byte-order mark."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = e.object[: e.start].count(b"\n") + 1
        raise ValueError(
            f"{path} is not UTF-8: byte {e.object[e.start]:#04x} at line {line} cannot be decoded; "
            f"save the file as UTF-8"
        ) from None


def _csv_rows(path: Path, text: str) -> tuple[list[str], Rows]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, [])
        duplicated = sorted({c for c in header if header.count(c) > 1})
        if duplicated:
            raise ValueError(f"{path}: duplicate column(s) {duplicated} in the header; every column needs its own name")
        rows: Rows = []
        for cells in reader:
            if not cells:  # a blank line
                continue
            if len(cells) > len(header):
                raise ValueError(
                    f"{path}:{reader.line_num}: row {len(rows)}: {len(cells)} cells for the "
                    f"{len(header)} columns of the header {header}"
                )
            rows.append((reader.line_num, dict(zip(header, cells + [None] * (len(header) - len(cells)), strict=True))))
    except csv.Error as e:
        raise ValueError(f"{path}:{reader.line_num}: not valid CSV ({e})") from None
    return header, rows


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKey(next(k for i, (k, _) in enumerate(pairs) if k in dict(pairs[:i])))
    return obj


def _jsonl_rows(path: Path, text: str) -> tuple[list[str], Rows]:
    rows: Rows = []
    for line, body in enumerate(text.split("\n"), 1):
        if not body.strip():
            continue
        try:
            row = json.loads(body, object_pairs_hook=_unique_keys)
        except _DuplicateKey as e:
            raise ValueError(f"{path}:{line}: duplicate key {e.args[0]!r} in one object") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{line}: not valid JSON ({e.msg}, column {e.colno})") from None
        except (ValueError, RecursionError) as e:  # e.g. an integer of more digits than Python converts
            raise ValueError(f"{path}:{line}: not valid JSON ({e})") from None
        if not isinstance(row, dict):
            raise ValueError(
                f'{path}:{line}: each line must hold one JSON object, e.g. {{"text": ..., "label": ...}}; '
                f"got {type(row).__name__}"
            )
        rows.append((line, row))
    return list(dict.fromkeys(k for _, row in rows for k in row)), rows


def _text(row: dict, where: str, column: str) -> str:
    text = row.get(column)
    if text is None or (isinstance(text, str) and not text.strip()):
        raise ValueError(
            f"{where}: no text in column {column!r} (an empty cell, a null or a missing key); "
            f"every row needs a statement"
        )
    if not isinstance(text, str):
        raise ValueError(f"{where}: column {column!r} must hold a string; got {type(text).__name__} {text!r}")
    return text


def _render(template: str, row: dict, columns: list[str]) -> str:
    try:
        return template.format(**row)
    except KeyError as e:
        raise ValueError(f"template {template!r} names column {e}, not in {columns}") from None
    except IndexError:
        raise ValueError(
            f"template {template!r} has a positional field; name columns instead, e.g. "
            f"'{{text}}'; named columns: {columns}"
        ) from None
    except (ValueError, AttributeError, TypeError) as e:
        raise ValueError(f"template {template!r} is not a format string over the columns {columns} ({e})") from None


def _column(values: list) -> np.ndarray:
    return np.fromiter(values, dtype=object, count=len(values))  # one entry per row, even for list values


def load_statements(
    path: str | Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    template: str | None = None,
    name: str | None = None,
) -> StatementSet:
    """Load labelled statements; every other column becomes metadata.

    Args:
        path: A ``.csv`` (UTF-8, with a header) or ``.jsonl`` file (one JSON object per line).
        text_column: Column holding the statement (a non-empty string on every row).
        label_column: Column holding the truth label (bool, 0/1, true/false, yes/no).
        template: Optional ``str.format`` template over the row's columns, e.g.
            ``"{text} Is this true? Answer:"``; the reporter reads the template's last token.
        name: Name used in reports (default: the file name).
    """
    for arg, value in (("text_column", text_column), ("label_column", label_column)):
        if not isinstance(value, str):
            raise TypeError(f"{arg} must be a column name (str); got {value!r}")
    if text_column == label_column:
        raise ValueError(f"text_column and label_column are both {text_column!r}; name two different columns")
    if template is not None and not isinstance(template, str):
        raise TypeError(f"template must be a str.format string or None; got {type(template).__name__}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a statement file ({', '.join(_SUFFIXES)})")
    if not path.is_file():
        raise FileNotFoundError(f"statement file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise ValueError(f"unsupported file type {path.suffix!r} for {path}; valid: {', '.join(_SUFFIXES)}")
    columns, rows = (_csv_rows if suffix == ".csv" else _jsonl_rows)(path, _decode(path))
    if not rows:
        raise ValueError(f"{path} holds no statements")
    missing = [c for c in (text_column, label_column) if c not in columns]
    if missing:
        raise ValueError(f"{path} has no column(s) {missing}; columns present: {columns}")
    texts, truth = [], []
    for i, (line, row) in enumerate(rows):
        where = f"{path}:{line}: row {i}"
        text = _text(row, where, text_column)
        texts.append(_render(template, row, columns) if template else text)
        truth.append(_parse_label(row.get(label_column), where, label_column))
    meta = {c: _column([row.get(c) for _, row in rows]) for c in columns if c != label_column}
    return StatementSet(texts, torch.tensor(truth), meta, name=name or path.stem)
