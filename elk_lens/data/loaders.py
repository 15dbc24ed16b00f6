"""Users' own statements from CSV or JSONL, optionally rendered through a template."""

import csv
import json
from pathlib import Path

import numpy as np
import torch

from elk_lens.data.statements import StatementSet

__all__ = ["load_statements"]

_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n"}


def _parse_label(value: object, row: int, column: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None or str(value).strip() == "":
        raise ValueError(f"row {row}: no label in column {column!r} (an empty cell or a short row); "
                         f"every statement needs one of {sorted(_TRUE | _FALSE)}")  # fmt: skip
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(
        f"row {row}: label column {column!r} has {value!r}; valid labels: {sorted(_TRUE | _FALSE)} or a JSON bool"
    )


def _read_rows(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        with path.open(newline="") as f:
            return list(csv.DictReader(f))
    if path.suffix in (".jsonl", ".ndjson"):
        with path.open() as f:
            return [json.loads(line) for line in f if line.strip()]
    raise ValueError(f"unsupported file type {path.suffix!r} for {path}; valid: .csv, .jsonl, .ndjson")


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
        path: A ``.csv`` (with a header) or ``.jsonl`` file.
        text_column: Column holding the statement.
        label_column: Column holding the truth label (bool, 0/1, true/false, yes/no).
        template: Optional ``str.format`` template over the row's columns, e.g.
            ``"{text} Is this true? Answer:"``; the reporter reads the template's last token.
        name: Name used in reports (default: the file name).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"statement file {path} does not exist")
    rows = _read_rows(path)
    if not rows:
        raise ValueError(f"{path} holds no statements")
    columns = list(rows[0])
    missing = [c for c in (text_column, label_column) if c not in columns]
    if missing:
        raise ValueError(f"{path} has no column(s) {missing}; columns present: {columns}")
    try:
        texts = [template.format(**r) if template else str(r[text_column]) for r in rows]
    except KeyError as e:
        raise ValueError(f"template {template!r} names column {e}, not in {columns}") from None
    truth = torch.tensor([_parse_label(r[label_column], i, label_column) for i, r in enumerate(rows)])
    meta = {c: np.array([r.get(c) for r in rows], dtype=object) for c in columns if c != label_column}
    return StatementSet(texts, truth, meta, name=name or path.stem)
