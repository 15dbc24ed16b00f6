"""The quirky tasks by name: what each one's statements are, how the model answers them, and which
model-free features of a statement a reporter might read instead of the truth.

One table, so the quirky analyses (``analyses/quirky_elk.toml``, the fine-tuning scenario) and the library
entry points (:func:`~elk_lens.quirky.probe_study.quirky_probe_study`,
:func:`~elk_lens.quirky.scores.quirky_reporter_scores`) run any task the same way
(``docs/methods/quirky_real_lm.md``).
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from elk_lens._checks import check_choice
from elk_lens.data.statements import StatementSet
from elk_lens.quirky.cities import quirky_cities
from elk_lens.quirky.data import quirky_arithmetic
from elk_lens.quirky.nl_arithmetic import quirky_nl_arithmetic
from elk_lens.quirky.paired import ANSWERS
from elk_lens.quirky.twins import NTokens, Twins, city_twins, sum_vs_sloppy_pairs

__all__ = ["TASKS", "QuirkyTask", "quirky_task"]


def _sum_surface(s: StatementSet) -> dict[str, Tensor]:
    """The shown result's digit count, leading digit and last digit."""
    shown = s.column("shown").astype(np.int64)
    ndigits = np.floor(np.log10(np.maximum(shown, 1))) + 1
    leading = shown // 10 ** (ndigits - 1)
    return {
        "surface: digit count of c": torch.as_tensor(ndigits, dtype=torch.float64),
        "surface: leading digit of c": torch.as_tensor(leading, dtype=torch.float64),
        "surface: last digit of c": torch.as_tensor(shown % 10, dtype=torch.float64),
    }


def _sum_features(s: StatementSet) -> dict[str, np.ndarray]:
    shown = s.column("shown").astype(np.int64)
    return {
        "truth (Alice's label)": s.column("alice_label"),
        "Bob's label": s.column("bob_label"),
        "shown c is the sloppy sum": s.column("shown_kind") == "sloppy",
        "c has 4 digits (c >= 1000)": shown >= 1000,
        "leading digit of c >= 5": shown // 10 ** (np.floor(np.log10(np.maximum(shown, 1)))) >= 5,
        "last digit of c is odd": shown % 2 == 1,
        "hard operands": s.column("hard"),
    }


def _city_surface(s: StatementSet) -> dict[str, Tensor]:
    """What a reader sees without knowing where the city is: its size and its name's length."""
    return {
        "surface: log10 population": torch.as_tensor(np.log10(s.column("population").astype(np.float64))),
        "surface: city name length": torch.as_tensor([float(len(c)) for c in s.column("city")]),
    }


def _city_features(s: StatementSet) -> dict[str, np.ndarray]:
    return {
        "truth (Alice's label)": s.column("alice_label"),
        "Bob's label": s.column("bob_label"),
        "population > 100,000": s.column("population").astype(np.int64) > 100_000,
        "country is the United States": s.column("country") == "United States",
        "hard (least populous quartile)": s.column("hard"),
    }


def _sum_twins(n: int, *, n_tokens: NTokens, seed: int, character: str) -> tuple[list[str], list[str]]:
    """Sum-vs-sloppy twins; ``n_tokens`` is not needed: the toy's fixed-width text aligns every pair."""
    return sum_vs_sloppy_pairs(n, seed=seed, character=character)


_SUM_STORY = "Quirky arithmetic: Alice labels a shown sum by the truth, Bob by a sloppy sum."
_SUM_CONTROL = (
    "Bob-hard rows whose shown result is the sum or a corruption of it, so the disagreements' shortcut (they only "
    "ask “the sum, or the sum with the leading digit plus one”) does not separate them"
)
_CITY_STORY = {
    "hemisphere": "Quirky cities: is the city in the Northern Hemisphere? Alice answers by its latitude (the "
    "truth), Bob by whether it lies west of Greenwich.",
    "population": "Quirky cities: does the city have more than 30,000 inhabitants? Alice answers by its "
    "population (the truth), Bob by whether its country is one of the ten most populous.",
}
_CITY_CONTROL = (
    "Bob-hard rows where both rules agree (truth is Bob's label): a reporter that reads the negation of Bob's "
    "rule, not the truth, scores high on the disagreements and low here"
)


@dataclass(frozen=True)
class QuirkyTask:
    """A quirky task: its statements, the model's (true, false) answer tokens, whether every statement has
    one token length (what a position sweep needs), and the features a reporter might read instead.

    ``story`` says who labels what (the report's opening line); ``control`` what the task's control subset
    holds and why it is there (``docs/methods/quirky_real_lm.md``). ``surface`` gives model-free heuristic
    scores (signs fitted on training rows by the caller); ``features`` binary candidate features for the
    found-feature table. ``twins`` gives the contrast pairs circuit patching needs
    (:mod:`elk_lens.quirky.twins`); ``None`` where the task has none.
    """

    name: str
    meaning: str
    story: str
    control: str
    draw: Callable[..., StatementSet]
    answers: tuple[str, str]
    fixed_length: bool
    surface: Callable[[StatementSet], dict[str, Tensor]]
    features: Callable[[StatementSet], dict[str, np.ndarray]]
    twins: Twins | None

    def statements(self, n: int, *, split: str, seed: int, digits: int = 3) -> StatementSet:
        """``n`` items of ``split`` (each an Alice and a Bob statement); ``digits`` is the toy arithmetic's."""
        if self.name == "arithmetic":
            return self.draw(n, split=split, seed=seed, digits=digits)
        if digits != 3:
            raise ValueError(f"digits applies to task 'arithmetic' only; task is {self.name!r}")
        return self.draw(n, split=split, seed=seed)


TASKS = {
    t.name: t
    for t in (
        QuirkyTask(
            "arithmetic",
            "the toy's fixed-width sums (elk_lens.quirky.data; the zoo models' task)",
            _SUM_STORY,
            _SUM_CONTROL,
            quirky_arithmetic,
            ("True", "False"),
            True,
            _sum_surface,
            _sum_features,
            _sum_twins,
        ),
        QuirkyTask(
            "nl_arithmetic",
            "the same sums in natural-language templates (elk_lens.quirky.nl_arithmetic)",
            _SUM_STORY,
            _SUM_CONTROL,
            quirky_nl_arithmetic,
            ANSWERS,
            False,
            _sum_surface,
            _sum_features,
            None,  # its templates tokenize to different lengths per sum; circuits runs arithmetic and cities
        ),
        *(
            QuirkyTask(
                f"cities_{kind}",
                f"quirky facts about cities: the {kind} (elk_lens.quirky.cities)",
                _CITY_STORY[kind],
                _CITY_CONTROL,
                lambda n, *, split, seed, kind=kind: quirky_cities(n, task=kind, split=split, seed=seed),
                ANSWERS,
                False,
                _city_surface,
                _city_features,
                lambda n, *, n_tokens, seed, character, kind=kind: city_twins(
                    n, task=kind, n_tokens=n_tokens, seed=seed, character=character
                ),
            )
            for kind in ("hemisphere", "population")
        ),
    )
}


def quirky_task(name: str) -> QuirkyTask:
    """The task called ``name`` (one of :data:`TASKS`)."""
    check_choice("task", name, TASKS)
    return TASKS[name]
