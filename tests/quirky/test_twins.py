"""Contrast twins per quirky task: cities of opposite truth in one template and token count, drawn
deterministically from the test split, and a clear refusal when the split holds too few."""

import pytest

from elk_lens.quirky.cities import n_cities, quirky_cities
from elk_lens.quirky.tasks import TASKS, quirky_task
from elk_lens.quirky.twins import city_twins, sum_vs_sloppy_pairs


def n_chars(texts):
    """A stand-in tokenizer: one token per character (the pairing only needs equal counts to line up)."""
    return [len(t) for t in texts]


@pytest.fixture(scope="module")
def rows():
    every = quirky_cities(n_cities("test"), task="hemisphere", split="test")
    return {t: i for i, t in enumerate(every.texts)}, every


@pytest.mark.parametrize("character", ["Alice", "Bob"])
def test_city_twins_are_aligned_and_of_opposite_truth(rows, character):
    index, every = rows
    clean, corrupt = quirky_task("cities_hemisphere").twins(40, n_tokens=n_chars, seed=0, character=character)
    assert len(clean) == len(corrupt) == 40
    a, b = [index[t] for t in clean], [index[t] for t in corrupt]
    assert every.truth[a].all() and not every.truth[b].any()  # clean: Northern Hemisphere, by Alice's label
    for col in ("character", "template"):
        assert (every.column(col)[a] == every.column(col)[b]).all(), col
    assert set(every.column("character")[a]) == {character}
    assert n_chars(clean) == n_chars(corrupt)
    cities = every.column("geonameid")
    assert len({*cities[a], *cities[b]}) == 80  # every city in one pair at most
    assert len(set(every.column("template")[a])) > 1  # templates mix as the draw does


def test_city_twins_are_deterministic_per_seed():
    draw = [city_twins(8, task="hemisphere", n_tokens=n_chars, seed=s) for s in (0, 0, 1)]
    assert draw[0] == draw[1] and draw[0] != draw[2]


def test_too_many_twins_are_refused_with_the_count():
    with pytest.raises(
        ValueError, match=r"n = 100000 twins asked, but split 'test' of cities task 'hemisphere' holds "
    ):
        city_twins(100_000, task="hemisphere", n_tokens=n_chars)
    with pytest.raises(ValueError, match="n_tokens gave 1 counts for 3251 texts"):
        city_twins(4, task="hemisphere", n_tokens=lambda texts: [1])


def test_each_task_names_its_twins():
    assert quirky_task("arithmetic").twins(6, n_tokens=n_chars, seed=0, character="Bob") == sum_vs_sloppy_pairs(
        6, character="Bob"
    )
    assert quirky_task("cities_population").twins(4, n_tokens=n_chars, seed=0, character="Alice")
    assert {name for name, task in TASKS.items() if task.twins is None} == {"nl_arithmetic"}
