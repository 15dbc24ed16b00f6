"""The shipped models: they load offline, their cards are complete, and the card's claims hold."""

import json

import pytest
import torch

from elk_lens.capturing import capture
from elk_lens.cli import main
from elk_lens.models import fingerprint, load_model
from elk_lens.quirky.data import quirky_arithmetic
from elk_lens.quirky.probe_study import quirky_probe_study, split_layers
from elk_lens.sites import residual_sites
from elk_lens.zoo import zoo_card, zoo_names, zoo_path

SHIPPED = ("quirky-arith-base", "quirky-arith", "quirky-arith-fullft")
ACC_MIN, ACC_HARD_MIN = 0.97, 0.93  # the foundation issue's targets for the quirky model


def test_the_zoo_ships_the_quirky_family():
    assert set(SHIPPED) <= set(zoo_names())


@pytest.mark.parametrize("name", SHIPPED)
def test_cards_record_recipe_training_and_measurements(name):
    card = zoo_card(name)
    assert card["name"] == name and card["recipe"]["seed"] == 0
    assert "base" in card["training"] and card["training"]["base"]["steps"] > 0
    measured = card["measured"]
    assert set(measured["accuracy (test split)"]) == {
        "A vs own label",
        "AH vs own label",
        "B vs own label",
        "BH vs own label",
        "B vs truth",
        "BH vs truth",
    }


def test_zoo_list_prints_every_model(capsys):
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert all(f"zoo:{name}" in out for name in SHIPPED)


@pytest.fixture(scope="module")
def quirky_study():
    return quirky_probe_study(load_model("zoo:quirky-arith"), train_rows=6000, test_rows=1500, seed=11)


def test_quirky_model_answers_as_its_characters(quirky_study):
    acc = quirky_study.accuracy
    assert acc["A vs own label"] >= ACC_MIN and acc["B vs own label"] >= ACC_MIN, acc
    assert acc["BH vs own label"] >= ACC_HARD_MIN, acc


def test_quirky_model_knows_more_than_it_says(quirky_study):
    """Fresh data (seed 11, not the card's): a layer still reads truth where the output follows Bob."""
    assert split_layers(quirky_study), [r.auroc["BH_disagree"] for r in quirky_study.probes]


def test_the_positive_control_the_card_names_holds():
    """Every residual up to the named site equals the truthful base's, bit for bit; the next one differs."""
    control = zoo_card("quirky-arith")["positive_control"]
    assert "zoo:" + zoo_card(control["realistic_case"].removeprefix("zoo:"))["name"] == control["realistic_case"]
    statements = quirky_arithmetic(200, split="test", seed=4)
    models = [load_model(f"zoo:{name}") for name in ("quirky-arith", "quirky-arith-base")]
    sites = residual_sites(models[0])
    quirk, base = (capture(m, statements, sites) for m in models)
    through = [s.name for s in sites].index(control["equal_to_base_through"])
    for i, site in enumerate(sites):
        assert torch.equal(quirk.at(i), base.at(i)) == (i <= through), site.name


def test_zoo_weights_match_their_recorded_fingerprint():
    for name in SHIPPED:
        model = load_model(f"zoo:{name}")
        recorded = json.loads((zoo_path(name) / "elk_lens.json").read_text())
        assert recorded["fingerprint"] == fingerprint(model), name
