"""The public names of elk_lens.data, imported lazily (elk_lens/data/__init__.py)."""

from .loaders import load_statements as load_statements
from .statements import StatementSet as StatementSet
from .truth_datasets import TRUTH_SETS as TRUTH_SETS
from .truth_datasets import truth_set as truth_set
from .truth_datasets import truth_set_card as truth_set_card
from .truth_datasets import truth_sets as truth_sets
from .truth_datasets import with_splits as with_splits

__all__ = [
    "StatementSet",
    "TRUTH_SETS",
    "load_statements",
    "truth_set",
    "truth_set_card",
    "truth_sets",
    "with_splits",
]
