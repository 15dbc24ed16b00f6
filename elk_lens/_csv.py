"""CSV tables written atomically: data exports and run directories share this one writer."""

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from elk_lens._atomic import atomic_write_text

__all__ = ["write_csv"]


def write_csv(path: str | Path, rows: Sequence[dict]) -> Path:
    """Write dict rows as CSV to ``path``, atomically; the columns are the union of the rows' keys in
    first-seen order (missing cells left blank)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for row in rows for k in row)), restval="")
    writer.writeheader()
    writer.writerows(rows)
    path = Path(path)
    atomic_write_text(path, buf.getvalue())
    return path
