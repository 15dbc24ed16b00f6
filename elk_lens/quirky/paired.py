"""One Alice and one Bob statement per item: the layout every quirky set shares (Mallen et al., arXiv
2312.01037; ``docs/methods/quirky_real_lm.md`` §1).

An item (an operand pair with a shown result, a city) is judged by both characters with the same text
but the name, so any subset of :mod:`elk_lens.quirky.subsets` holds the same items for either
character, and the metadata columns it selects on (``character``, ``easy``, ``hard``,
``disagreement``, ``control``) mean the same thing in every task.
"""

import hashlib
from collections.abc import Callable, Iterable

import numpy as np
import torch

from elk_lens.data.statements import StatementSet

__all__ = ["ANSWERS", "CHARACTERS", "key_hash", "paired_statements", "template_index"]

CHARACTERS = ("Alice", "Bob")
ANSWERS = (" True", " False")
"""The (true, false) answer tokens after every natural-language quirky statement, in every template and
task: one pair makes the model's answer one logit difference, comparable across templates (Mallen et
al. mix ``No/Yes``, ``False/True`` and ``Negative/Positive`` per template). ``True``/``False`` because it
is the pair the rest of elk-lens asks with (``elk_lens.prompts.ANSWERS``, ``capture_contrast``) and it
fits both kinds of ending, a claim then ``"Bob:"`` and a question then ``"Answer:"``; each is one
token in SmolLM2's tokenizer (``docs/methods/quirky_real_lm.md`` §1)."""


def key_hash(keys: Iterable[str]) -> np.ndarray:
    """A stable 32-bit hash of each key (the first 4 bytes of its SHA-256): the same on every machine."""
    return np.array([int.from_bytes(hashlib.sha256(k.encode()).digest()[:4], "big") for k in keys], dtype=np.int64)


def template_index(keys: Iterable[str], n_templates: int) -> np.ndarray:
    """Which of ``n_templates`` templates each item is written in, from a hash of its key, so an item
    reads the same in every seed and set it is drawn into (salted apart from any split hash)."""
    return key_hash(f"template:{k}" for k in keys) % n_templates


def paired_statements(
    texts: Callable[[str], list[str]],
    columns: dict[str, np.ndarray],
    *,
    alice_label: np.ndarray,
    bob_label: np.ndarray,
    control: np.ndarray,
    difficulty: np.ndarray,
    difficulty_quantile: np.ndarray,
    easy: np.ndarray,
    hard: np.ndarray,
    split: str,
    name: str,
) -> StatementSet:
    """``2 n`` statements from ``n`` items: each item's Alice statement, then its Bob statement.

    Truth is Alice's label. Columns: ``character``, the item ``columns`` (in order), ``alice_label``,
    ``bob_label``, ``label`` (the named character's), ``disagreement``, ``control``, ``difficulty``,
    ``difficulty_quantile``, ``easy``, ``hard``, ``split``, ``row_id`` (the item's index).

    Args:
        texts: The character's name -> one text per item, ending where the model answers.
        columns: Item columns (shape ``(n,)`` each), repeated onto both statements.
        alice_label: Alice's label per item (the truth), shape ``(n,)``; the others likewise.
        control: Items in the task's control set (``docs/methods/quirky_real_lm.md`` §2-3).
        split: The split every item belongs to.
        name: The set's name.
    """
    n = len(alice_label)
    character = np.tile(np.array(CHARACTERS, dtype=object), n)
    alice_texts, bob_texts = (texts(who) for who in CHARACTERS)
    text = [t for pair in zip(alice_texts, bob_texts, strict=True) for t in pair]
    alice, bob = np.repeat(alice_label, 2), np.repeat(bob_label, 2)
    meta = {
        "character": character,
        **{col: np.repeat(values, 2) for col, values in columns.items()},
        "alice_label": alice,
        "bob_label": bob,
        "label": np.where(character == "Bob", bob, alice),
        "disagreement": alice != bob,
        "control": np.repeat(control, 2),
        "difficulty": np.repeat(difficulty, 2),
        "difficulty_quantile": np.repeat(difficulty_quantile, 2),
        "easy": np.repeat(easy, 2),
        "hard": np.repeat(hard, 2),
        "split": np.full(2 * n, split, dtype=object),
        "row_id": np.repeat(np.arange(n), 2),
    }
    return StatementSet(text, torch.as_tensor(alice), meta, name=name)
