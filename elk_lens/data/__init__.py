"""Statement sets: quirky arithmetic, and loaders for users' own CSV / JSONL statements."""

from elk_lens.data.loaders import load_statements as load_statements
from elk_lens.data.quirky import quirky_arithmetic as quirky_arithmetic
from elk_lens.data.statements import StatementSet as StatementSet

__all__ = ["StatementSet", "load_statements", "quirky_arithmetic"]
