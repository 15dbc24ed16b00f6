"""Contrast pairs for quirky arithmetic: the same sum shown correct (clean) vs shown sloppy (corrupt).

The twins differ only in the shown result's digits (``"012+045=0057.Alice:"`` vs ``"...=0157..."``);
``format_text`` pads numbers to a fixed width, so both halves have the same token length and every
position lines up, which patching needs.
"""

import numpy as np

from elk_lens._checks import check_choice, check_number
from elk_lens.quirky.data import CHARACTERS, format_text, quirky_arithmetic

__all__ = ["sum_vs_sloppy_pairs"]


def sum_vs_sloppy_pairs(
    n: int, *, split: str = "test", seed: int = 0, character: str = "Alice"
) -> tuple[list[str], list[str]]:
    """``n`` pairs (clean: ``a+b=sum``, corrupt: ``a+b=sloppy_sum``), distinct ``(a, b)``, said by ``character``.

    For Alice the clean half is true and the corrupt half false; for Bob it is the other way round.
    """
    check_number("n", n, kind=int)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    check_choice("character", character, CHARACTERS)
    rows = quirky_arithmetic(2 * n + 64, split=split, seed=seed).where(character=character)
    a, b = rows.column("a"), rows.column("b")
    _, first = np.unique(np.stack([a, b], 1), axis=0, return_index=True)
    keep = np.sort(first)[:n]
    if len(keep) < n:
        raise ValueError(f"split {split!r} gave only {len(keep)} distinct (a, b) pairs for n={n}")
    who = np.full(n, character, dtype=object)
    a, b = a[keep], b[keep]
    return (
        format_text(a, b, rows.column("sum")[keep], who),
        format_text(a, b, rows.column("sloppy_sum")[keep], who),
    )
