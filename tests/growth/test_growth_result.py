"""The growth results: each stage's JSON round-trips exactly (old runs resume, ``metrics.json`` unchanged),
lookups by Site or name agree with the dicts, saved files are verified, and the results are frozen."""

import dataclasses
import hashlib
import json

import pytest

from elk_lens.drift_result import DriftResult
from elk_lens.growth import FittedMap, FittedMapResult, GrowthResult, GrowthStep
from elk_lens.sites import Site

SMALL = ["blocks.1.hook_resid_pre", "blocks.2.hook_resid_pre", "blocks.2.hook_resid_post"]
GROWN = {SMALL[0]: "blocks.1.hook_resid_pre", SMALL[1]: "blocks.3.hook_resid_pre", SMALL[2]: "blocks.3.hook_resid_post"}
GROW = {  # the grow stage's JSON, as a run saves it
    "ops": ["add_heads(4->6)", "widen_d_model(128->192, mean)", "insert_blocks([2])"],
    "exact": True,
    "layers": [0, 1, 3],
    "small": {"n_layers": 3, "d_model": 128},
    "grown": {"n_layers": 4, "d_model": 192, "d_mlp": 512, "n_heads": 6, "d_head": 32},
    "max_abs_output_log_odds_change": 1.3113021850585938e-05,
    "small_auroc": {SMALL[0]: 0.6453094231831944, SMALL[1]: 0.9821841361757769, SMALL[2]: 1.0},
    "small_output_auroc": 1.0,
    "small_accuracy": {"Alice vs truth": 0.99975, "Bob vs truth": 0.9995},
    "answer_loss": {"small": 2.1226871166229246, "grown": 2.1226871852874756},
}
FITTED = {  # the fitted_map stage's JSON
    small: {
        "target_site": GROWN[small],
        "fit residual": 0.03 * (i + 1),
        "through the fitted map": 0.4 + 0.1 * i,
        "refitted on the final model": 0.5 + 0.1 * i,
    }
    for i, small in enumerate(SMALL)
}
STEPS = [0, 10]
SITES = ["blocks.1.hook_resid_pre", "blocks.2.hook_resid_pre", "blocks.3.hook_resid_pre", "blocks.3.hook_resid_post"]
FIXED = {f"transported from {small}": grown for small, grown in GROWN.items()}
DRIFT = {  # the drift stage's JSON: DriftResult's fields, the final accuracy and the fixed reporters' sites
    **{f.name: {} for f in dataclasses.fields(DriftResult)},
    "steps": STEPS,
    "sites": SITES,
    "methods": ["logistic"],
    "transfer_eval": "BH_disagree",
    "output_auroc": {"BH_disagree": [1.0, 0.5]},
    "auroc_fixed": {name: {"BH_disagree": [0.9 - 0.1 * i, 0.2 * i]} for i, name in enumerate(FIXED)},
    "cos_fixed_refit": {name: {"logistic": [1.0, 0.3 * i]} for i, name in enumerate(FIXED)},
    "cos_v_fixed_refit": {name: [1.0, 0.9 - 0.1 * i] for i, name in enumerate(FIXED)},
    "final_accuracy": {"Alice vs truth": 0.99},
    "fixed_sites": FIXED,
}


def _growth() -> GrowthResult:
    return GrowthResult.from_stages(GROW, DRIFT, FITTED)


def _rewrite(path, edit) -> None:
    """Apply ``edit`` to the stored file's payload and seal it again (only the edit's own damage is left)."""
    stored = json.loads(path.read_text())
    edit(stored["result"])
    stored["sha256"] = hashlib.sha256(json.dumps(stored["result"], sort_keys=True).encode()).hexdigest()
    path.write_text(json.dumps(stored))


def test_each_stage_json_round_trips_exactly_in_its_key_order():
    assert json.dumps(GrowthStep.from_dict(GROW).to_dict()) == json.dumps(GROW)
    assert json.dumps(FittedMapResult.from_dict(FITTED).to_dict()) == json.dumps(FITTED)
    g = _growth()
    assert json.dumps(g.step.to_dict()) == json.dumps(GROW)
    assert json.dumps(g.fitted_map.to_dict()) == json.dumps(FITTED)
    assert GrowthResult.from_dict(json.loads(json.dumps(g.to_dict()))) == g


@pytest.mark.parametrize(
    "result", [GrowthStep.from_dict(GROW), FittedMapResult.from_dict(FITTED), _growth()], ids=lambda r: type(r).__name__
)
def test_save_and_load_round_trip(result, tmp_path):
    path = result.save(tmp_path / "r.json")
    loaded = type(result).load(path)
    assert loaded == result and json.dumps(loaded.to_dict()) == json.dumps(result.to_dict())
    assert not [p for p in tmp_path.iterdir() if p.name != "r.json"]  # the atomic write leaves no temporary file


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_text(p.read_text().replace('"exact": true', '"exact": false')), "fails its checksum"),
        (lambda p: p.write_text(p.read_text()[:-40]), "not valid JSON"),
        (lambda p: p.write_text(p.read_text().replace('"format": 1', '"format": 99')), "format 99"),
        (lambda p: p.write_text(p.read_text().replace('"kind": "growth"', '"kind": "drift"')), "not a growth result"),
        (lambda p: _rewrite(p, lambda r: r.pop("transported_to")), r"lacks \['transported_to'\]"),
        (lambda p: _rewrite(p, lambda r: r["step"].pop("layers")), r"lacks \['layers'\]"),
        (lambda p: _rewrite(p, lambda r: r["fitted_map"][SMALL[0]].pop("fit residual")), "lacks"),
        (lambda p: _rewrite(p, lambda r: r["drift"].pop("steps")), "lacks"),
        (lambda p: _rewrite(p, lambda r: r["transported_to"].update({"blocks.x": "y"})), "cannot parse site"),
    ],
    ids=["edited", "truncated", "version", "kind", "missing", "missing step key", "missing map key", "drift", "site"],
)
def test_a_damaged_file_is_refused_by_name(damage, message, tmp_path):
    path = _growth().save(tmp_path / "growth.json")
    damage(path)
    with pytest.raises(ValueError, match=message) as e:
        GrowthResult.load(path)
    assert str(path) in str(e.value)


def test_one_results_file_is_not_read_as_another(tmp_path):
    path = FittedMapResult.from_dict(FITTED).save(tmp_path / "fitted.json")
    with pytest.raises(ValueError, match="is not a growth step result file"):
        GrowthStep.load(path)


def test_lookups_agree_with_the_stage_dicts():
    g = _growth()
    assert list(g) == list(g.step) == list(g.fitted_map) == SMALL
    for small in SMALL:
        site = Site.parse(small)
        fixed = f"transported from {small}"
        for name in (small, site, f"{site.kind}.{site.layer}"):
            assert g.step.reporter_auroc(name) == GROW["small_auroc"][small]
            assert g.grown_site(name) == GROWN[small]
            assert g.transported_auroc(name) == DRIFT["auroc_fixed"][fixed]["BH_disagree"]
            assert g.cos_v_to_refit(name) == DRIFT["cos_v_fixed_refit"][fixed]
            assert g.cos_w_to_refit(name, "logistic") == DRIFT["cos_fixed_refit"][fixed]["logistic"]
            fitted = g.fitted_map.at(name)
            assert (fitted.target_site, fitted.fit_residual) == (
                FITTED[small]["target_site"],
                FITTED[small]["fit residual"],
            )
            assert (fitted.through_map, fitted.refitted) == (
                FITTED[small]["through the fitted map"],
                FITTED[small]["refitted on the final model"],
            )
        assert g.from_small(GROWN[small]) == small
    assert g.from_small("blocks.2.hook_resid_pre") is None  # a grown site no reporter was moved to
    assert g.fitted_map.rows() == [{"small site": k, **v} for k, v in FITTED.items()]
    with pytest.raises(KeyError, match="no reporter was fitted"):
        g.step.reporter_auroc("blocks.0.hook_resid_pre")
    with pytest.raises(KeyError, match="no map was fitted"):
        g.fitted_map.at("resid_pre.0")


def test_sites_are_stored_by_their_canonical_names():
    step = GrowthStep.from_dict({**GROW, "small_auroc": {"resid_pre.1": 0.6, "resid_post.2": 1.0}})
    assert list(step.small_auroc) == ["blocks.1.hook_resid_pre", "blocks.2.hook_resid_post"]
    m = FittedMapResult({"resid_pre.1": FittedMap("resid_pre.3", 0.1, 0.9, 0.95)})
    assert list(m) == ["blocks.1.hook_resid_pre"] and m.at(Site(1)).target_site == "blocks.3.hook_resid_pre"
    g = dataclasses.replace(_growth(), transported_to={"resid_pre.1": "resid_pre.1"})
    assert g.transported_to == {"blocks.1.hook_resid_pre": "blocks.1.hook_resid_pre"}


def test_the_results_are_frozen():
    g = _growth()
    for obj, field in ((g, "step"), (g.step, "exact"), (g.fitted_map, "maps"), (g.fitted_map.at(SMALL[0]), "refitted")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, field, None)
