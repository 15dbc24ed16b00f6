"""Contrast pairs (twins) for circuit patching: a clean statement the truth calls true and a corrupt one
it calls false, said by the same character, with the same token count so every position lines up.

- Quirky arithmetic (:func:`sum_vs_sloppy_pairs`): the same sum shown correct vs shown sloppy. The twins
  differ only in the shown result's digits (``"012+045=0057.Alice:"`` vs ``"...=0157..."``); ``format_text``
  pads numbers to a fixed width, so both halves have one token length by construction.
- Quirky cities (:func:`city_twins`): two cities of opposite truth (Northern vs Southern Hemisphere, or
  more vs fewer than 30,000 inhabitants) in the same template, so the texts differ only in the city and
  its country. Names tokenize to different lengths, so pairs are matched on the model's token count.
"""

from collections.abc import Callable, Sequence

import numpy as np

from elk_lens._checks import check_choice, check_number
from elk_lens.quirky.cities import n_cities, quirky_cities
from elk_lens.quirky.data import CHARACTERS, format_text, quirky_arithmetic

__all__ = ["NTokens", "Twins", "city_twins", "sum_vs_sloppy_pairs"]

NTokens = Callable[[Sequence[str]], Sequence[int]]
"""Texts -> each text's token count under the model patched (e.g. ``tokenize(model, t).mask.sum(1)``)."""
Twins = Callable[..., tuple[list[str], list[str]]]
"""``(n, *, n_tokens, seed, character) -> (clean, corrupt)``: a task's twins (``QuirkyTask.twins``)."""


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


def city_twins(
    n: int, *, task: str, n_tokens: NTokens, split: str = "test", seed: int = 0, character: str = "Alice"
) -> tuple[list[str], list[str]]:
    """``n`` pairs of quirky-cities ``task`` statements said by ``character``: clean about a city whose truth
    (Alice's label) is true, corrupt about one whose truth is false, in one template and of one token count.

    The split's cities are walked in the seed's draw order (:func:`~elk_lens.quirky.cities.quirky_cities`);
    each city waits until one of opposite truth with the same (template, token count) comes, and the two
    become a pair. So every city is in at most one pair, templates mix as they do in the draw, and the walk
    finds every pair there is (per (template, token count): as many as its rarer truth has). Bob's label
    plays no part: for Bob the clean half is what the truth says, whatever he says.

    Args:
        n: Number of pairs.
        task: A quirky-cities task (``"hemisphere"`` or ``"population"``).
        n_tokens: Each text's token count under the model patched.
        split: The split drawn from (every city of it).
        seed: Seed of the draw order; the same seed gives the same pairs.
        character: Who says the statements.
    """
    check_number("n", n, kind=int, low=1)
    check_choice("character", character, CHARACTERS)
    rows = quirky_cities(n_cities(split), task=task, split=split, seed=seed).where(character=character)
    lengths = [int(k) for k in n_tokens(rows.texts)]
    if len(lengths) != len(rows):
        raise ValueError(f"n_tokens gave {len(lengths)} counts for {len(rows)} texts; it must give one per text")
    waiting: dict[tuple[int, int, bool], list[int]] = {}
    pairs: list[tuple[int, int]] = []
    for i, key in enumerate(zip(rows.column("template").tolist(), lengths, rows.truth.tolist(), strict=True)):
        template, length, true = key
        match = waiting.get((template, length, not true))
        if match:
            j = match.pop(0)
            pairs.append((i, j) if true else (j, i))
            if len(pairs) == n:
                break
        else:
            waiting.setdefault(key, []).append(i)
    if len(pairs) < n:
        raise ValueError(
            f"n = {n} twins asked, but split {split!r} of cities task {task!r} holds only {len(pairs)} pairs of "
            f"opposite truth with one template and token count (said by {character}); ask for at most {len(pairs)}"
        )
    return [rows.texts[i] for i, _ in pairs], [rows.texts[j] for _, j in pairs]
