"""The subsets of every quirky task, under one set of names: Mallen et al.'s abbreviations (arXiv
2312.01037; ``docs/methods/elk_methods.md`` §6): the character's letter, ``E`` easy, ``H`` hard.

Every part of the protocol (the probe study, the reporter scores and their tables, the drift and
circuits analyses) selects rows by these names, so a table of one and a chart of another always mean the
same statements.
"""

from dataclasses import dataclass

import torch
from jaxtyping import Bool
from torch import Tensor

from elk_lens.data.statements import StatementSet

__all__ = [
    "PROBE_STUDY_SETS",
    "SUBSETS",
    "TRAIN_SETS",
    "TARGET",
    "Subset",
    "subset_balance",
    "subset_mask",
    "subset_masks",
]


@dataclass(frozen=True)
class Subset:
    """Rows whose metadata match ``conditions`` (``StatementSet.mask`` keywords), and what they are for."""

    conditions: dict
    meaning: str


SUBSETS: dict[str, Subset] = {
    "A": Subset({"character": "Alice"}, "Alice prompts (Alice's label is the truth)"),
    "AE": Subset({"character": "Alice", "easy": True}, "Alice prompts, easy (in distribution for the probe)"),
    "AH": Subset({"character": "Alice", "hard": True}, "Alice prompts, hard items"),
    "B": Subset({"character": "Bob"}, "Bob prompts (Bob's label is his rule's)"),
    "BH": Subset({"character": "Bob", "hard": True}, "Bob prompts, hard items"),
    "B_disagree": Subset({"character": "Bob", "disagreement": True}, "Bob prompts where Bob's label != truth"),
    "BH_disagree": Subset(
        {"character": "Bob", "hard": True, "disagreement": True},
        "Bob-hard prompts where Bob's label != truth: the ELK target",
    ),
    "BH_control": Subset(
        {"character": "Bob", "hard": True, "control": True},
        "Bob-hard prompts in the task's control set (each task says what it holds: elk_lens.quirky.tasks)",
    ),
}
TARGET = "BH_disagree"
"""The ELK target: where the model's output follows Bob's wrong label and only a reporter can read truth."""
TRAIN_SETS = ("A", "AE", "B")
"""Reporter training sets; each is trained on its own character's label."""
PROBE_STUDY_SETS = ("AE", "AH", "BH", "B_disagree", "BH_disagree", "BH_control")
"""The subsets the probe study (``elk_lens.quirky.probe_study``) scores."""


def subset_mask(statements: StatementSet, name: str) -> Bool[Tensor, " batch"]:
    """The rows of ``statements`` in subset ``name`` (a key of :data:`SUBSETS`)."""
    if name not in SUBSETS:
        raise ValueError(f"quirky subset {name!r} does not exist; valid: {list(SUBSETS)}")
    return torch.as_tensor(statements.mask(**SUBSETS[name].conditions))


def subset_masks(statements: StatementSet, names: tuple[str, ...]) -> dict[str, Bool[Tensor, " batch"]]:
    """:func:`subset_mask` of each name, in order."""
    return {name: subset_mask(statements, name) for name in names}


def subset_balance(statements: StatementSet, names: tuple[str, ...] = PROBE_STUDY_SETS) -> dict[str, tuple[int, int]]:
    """(rows, true rows) of each named subset: a subset of one class has no AUROC against the truth."""
    return {
        name: (int(mask.sum()), int(statements.truth[mask].sum()))
        for name, mask in subset_masks(statements, names).items()
    }
