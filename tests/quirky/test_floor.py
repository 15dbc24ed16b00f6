"""The random floor beside the probe: signs fixed on training rows only, margins and the sites above it."""

import numpy as np
import pytest
import torch

from elk_lens.activations import Activations
from elk_lens.quirky.floor import above_floor, floor_margins, random_floor
from elk_lens.sites import Site

SITES = [Site.parse(f"blocks.{i}.hook_resid_pre") for i in range(3)]


def _acts(values: torch.Tensor) -> Activations:
    return Activations(values, SITES, "last", {})


@pytest.fixture(scope="module")
def planted():
    """Truth planted along one direction at sites 1 and 2 (site 0 is a constant, as at the read position)."""
    rng = np.random.default_rng(3)
    y = torch.as_tensor(rng.random(800) < 0.5)
    x = torch.as_tensor(rng.normal(size=(800, 3, 12)))
    x[:, 0] = 1.0
    x[:, 1:] += 1.5 * y[:, None, None].double() * torch.as_tensor(rng.normal(size=12))
    masks = {"odd": torch.arange(400) % 2 == 1, "even": torch.arange(400) % 2 == 0}
    return _acts(x[:400]), y[:400], _acts(x[400:]), y[400:], masks


def test_the_floor_skips_the_first_site_and_reports_every_subset(planted):
    floor = random_floor(*planted, SITES, seed=0)
    assert list(floor) == ["odd", "even"]
    assert [r["site"] for r in floor["odd"]] == [s.name for s in SITES[1:]]
    assert all(r["q0.5"] > 0.6 for rows in floor.values() for r in rows)  # most readouts see the plant


def test_flipping_the_evaluation_labels_does_not_change_which_sign_is_chosen(planted):
    train, train_y, test, test_y, masks = planted
    floor = random_floor(train, train_y, test, test_y, masks, SITES, seed=0)
    flipped = random_floor(train, train_y, test, ~test_y, masks, SITES, seed=0)
    for name, rows in floor.items():
        for r, f in zip(rows, flipped[name], strict=True):
            # signs fitted on evaluation rows would give the same distribution; signs fitted on train mirror it
            assert f["q0.99"] == pytest.approx(1 - r["q0.01"], abs=2e-4) and f["q0.5"] < 0.4 < r["q0.5"], (r, f)


def test_margins_are_the_probe_minus_the_floor_q99_with_the_subsets_of_a_site_together():
    floor = {
        "BH_disagree": [
            {"site": "a", "q0.5": 0.8, "q0.95": 0.95, "q0.99": 0.99},
            {"site": "b", "q0.5": 0.6, "q0.95": 0.8, "q0.99": 0.9},
        ],
        "BH_control": [
            {"site": "a", "q0.5": 0.5, "q0.95": 0.6, "q0.99": 0.7},
            {"site": "b", "q0.5": 0.5, "q0.95": 0.6, "q0.99": 0.65},
        ],
    }
    probe = {"a": {"BH_disagree": 0.98, "BH_control": 0.75}, "b": {"BH_disagree": 0.97, "BH_control": 0.72}}
    rows = floor_margins(floor, probe)
    assert [(r["site"], r["subset"]) for r in rows] == [
        ("a", "BH_disagree"),
        ("a", "BH_control"),
        ("b", "BH_disagree"),
        ("b", "BH_control"),
    ]
    assert rows[0] == {
        "site": "a",
        "subset": "BH_disagree",
        "probe": 0.98,
        "random median": 0.8,
        "random q95": 0.95,
        "random q99": 0.99,
        "margin over q99": -0.01,
    }
    assert above_floor(rows) == ["b"]  # "a" beats the floor on the control subset only
