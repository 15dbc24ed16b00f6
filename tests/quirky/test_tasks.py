"""The quirky task table (``elk_lens.quirky.tasks``): each name draws its own statements, answers with its
own pair, and offers features a reporter might read instead of the truth, computed on the rows."""

import numpy as np
import pytest

from elk_lens.quirky import ANSWERS, quirky_arithmetic, quirky_cities, quirky_nl_arithmetic
from elk_lens.quirky.tasks import TASKS, quirky_task


def test_an_unknown_task_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"task must be one of \['arithmetic', 'nl_arithmetic', 'cities_hemisphere'"):
        quirky_task("cities")


@pytest.mark.parametrize(
    ("name", "build", "answers"),
    [
        ("arithmetic", lambda: quirky_arithmetic(40, split="val", seed=3), ("True", "False")),
        ("nl_arithmetic", lambda: quirky_nl_arithmetic(40, split="val", seed=3), ANSWERS),
        ("cities_hemisphere", lambda: quirky_cities(40, task="hemisphere", split="val", seed=3), ANSWERS),
        ("cities_population", lambda: quirky_cities(40, task="population", split="val", seed=3), ANSWERS),
    ],
)
def test_each_task_is_its_generator_and_answer_pair(name, build, answers):
    task = quirky_task(name)
    drawn = task.statements(40, split="val", seed=3)
    assert drawn.fingerprint == build().fingerprint
    assert task.answers == answers
    assert task.fixed_length == (name == "arithmetic")


def test_digits_apply_to_the_toy_arithmetic_only():
    wide = quirky_task("arithmetic").statements(10, split="test", seed=0, digits=4)
    assert wide.fingerprint == quirky_arithmetic(10, split="test", seed=0, digits=4).fingerprint
    with pytest.raises(ValueError, match="digits applies to task 'arithmetic' only; task is 'cities_hemisphere'"):
        quirky_task("cities_hemisphere").statements(10, split="test", seed=0, digits=4)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_surface_scores_and_features_cover_every_row(name):
    task = quirky_task(name)
    rows = task.statements(30, split="test", seed=1)
    for score in task.surface(rows).values():
        assert score.shape == (len(rows),) and score.isfinite().all()
    features = task.features(rows)
    assert np.array_equal(features["truth (Alice's label)"], rows.column("alice_label"))
    assert np.array_equal(features["Bob's label"], rows.column("bob_label"))
    assert all(len(v) == len(rows) for v in features.values())


def test_city_features_are_read_from_the_city_columns():
    rows = quirky_task("cities_hemisphere").statements(200, split="test", seed=0)
    features = quirky_task("cities_hemisphere").features(rows)
    assert np.array_equal(features["population > 100,000"], rows.column("population") > 100_000)
    assert features["country is the United States"].any()  # the country column holds names, not codes
    surface = quirky_task("cities_hemisphere").surface(rows)
    assert np.allclose(surface["surface: log10 population"].numpy(), np.log10(rows.column("population")))
