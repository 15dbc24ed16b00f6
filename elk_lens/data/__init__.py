"""Statement sets: quirky arithmetic, Marks & Tegmark-style truth datasets, and users' own CSV / JSONL."""

from elk_lens.data.loaders import load_statements as load_statements
from elk_lens.data.statements import StatementSet as StatementSet
from elk_lens.data.truth_datasets import TRUTH_SETS as TRUTH_SETS
from elk_lens.data.truth_datasets import truth_set as truth_set
from elk_lens.data.truth_datasets import truth_set_card as truth_set_card
from elk_lens.data.truth_datasets import truth_sets as truth_sets
from elk_lens.data.truth_datasets import with_splits as with_splits

__all__ = [
    "TRUTH_SETS",
    "StatementSet",
    "load_statements",
    "truth_set",
    "truth_set_card",
    "truth_sets",
    "with_splits",
]
