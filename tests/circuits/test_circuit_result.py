"""The circuits result: the stage's JSON round-trips key for key, a saved file is verified on load (a
damaged, edited, foreign or incomplete one is refused by name), the lookups read what hand indexing of
the JSON read, and the result is frozen."""

import dataclasses
import json
import math

import pytest

from elk_lens._result_file import save_result
from elk_lens.circuit_drift import circuit_series
from elk_lens.circuits import CheckpointCircuit, CircuitTrajectory, NoiseFloor
from elk_lens.sites import Site

SMALL = {"embed": 2.0, "L0H0": -1.5, "L0H1": 0.25, "L0MLP": 1.0}
GROWN = {**SMALL, "L1H0": 0.5, "L1H1": -0.75, "L1MLP": 0.125}


def _at(exact: dict, circuit: list[str], m_diff: float) -> dict:
    return {
        "exact": exact,
        "ap": {k: v / 2 for k, v in exact.items()},
        "spearman_ap": 0.5,
        "spearman_ig": 0.9,
        "circuit": circuit,
        "size": len(circuit),
        "m_diff": m_diff,
        "curve": [0.0, 0.6, 0.85, 1.0],
    }


def _stage() -> dict:
    """A ``circuits`` stage's JSON as the analysis writes it: a small model, then two grown checkpoints
    (its step 0 repeats), the grown model keeping the small one's names."""
    at = [_at(SMALL, ["embed", "L0H0"], 4.0), _at(GROWN, ["embed", "L0H0"], 4.0), _at(GROWN, ["embed", "L1H1"], 2.0)]
    shares = [{k: v / a["m_diff"] for k, v in a["exact"].items()} for a in at]
    return {
        "steps": [0, 0, 1],
        "site": "blocks.1.hook_resid_pre",
        "pairs": 8,
        "example": ["013+161=0174.Alice:", "013+161=0274.Alice:"],
        "at": at,
        "floor": {
            "jaccard": 0.5,
            "weighted_jaccard": 0.75,
            "edit_distance": 1,
            "halves": [["embed"], ["embed", "L0H0"]],
        },
        "drift": circuit_series([set(a["circuit"]) for a in at], shares),
        "exact_in_final_names": shares,
        "grown_at": [1],
    }


def test_the_stage_json_round_trips_key_for_key():
    d = _stage()
    r = CircuitTrajectory.from_dict(d)
    assert isinstance(r.at[0], CheckpointCircuit) and isinstance(r.floor, NoiseFloor)
    assert json.dumps(r.to_dict()) == json.dumps(d)  # same keys, same order, same values
    assert CircuitTrajectory.from_dict({"fine_tune": {"seconds": 1.0}, **d}).to_dict() == d  # metrics.json: rest aside


def test_lookups_read_what_the_json_holds():
    d = _stage()
    r = CircuitTrajectory.from_dict(d)
    assert r.end == 2 and r.last_growth == 1
    assert r.labels == ["0 (small)", "0", "1"]
    assert r.similarity("jaccard", to="prev") == d["drift"]["jaccard_prev"]
    assert r.similarity() == d["drift"]["jaccard_first"]
    assert r.similarity("weighted_jaccard") == d["drift"]["weighted_jaccard_first"]
    assert r.change_rate == d["drift"]["ewma_change"]
    with pytest.raises(ValueError, match="measures: \\('jaccard', 'weighted_jaccard'\\)"):
        r.similarity("edit_distance")
    with pytest.raises(ValueError, match="to: \\('first', 'prev'\\)"):
        r.similarity(to="last")
    assert r.final_components == list(d["exact_in_final_names"][-1])
    series = r.share_series("L1H1")
    assert math.isnan(series[0]) and series[1:] == [a["L1H1"] for a in d["exact_in_final_names"][1:]]
    last = r.at[-1]
    assert last.top_heads(2) == ["L0H0", "L1H1"]  # by |exact|; embed and MLPs are no heads
    assert last.faithfulness_all == d["at"][-1]["curve"][-1]
    assert last.shares() == d["exact_in_final_names"][-1]
    assert last.shares(circuit_only=True) == {"embed": 1.0, "L1H1": -0.375}
    assert r.floor.halves == d["floor"]["halves"] and r.floor.weighted_jaccard == d["floor"]["weighted_jaccard"]


def test_the_site_is_kept_as_written_and_named_canonically():
    d = {**_stage(), "site": "resid_pre.1"}
    r = CircuitTrajectory.from_dict(d)
    assert r.to_dict()["site"] == "resid_pre.1"  # the stage's JSON keeps the spec's spelling
    assert r.site_name == "blocks.1.hook_resid_pre"
    given = dataclasses.replace(r, site=Site(1, "resid_mid"))
    assert given.site == "blocks.1.hook_resid_mid"  # a Site is stored by its name
    with pytest.raises(ValueError, match="cannot parse site 'layer one'"):
        CircuitTrajectory.from_dict({**d, "site": "layer one"})


def test_inconsistent_data_is_refused():
    d = _stage()
    with pytest.raises(ValueError, match="circuits data lacks \\['drift'\\]"):
        CircuitTrajectory.from_dict({k: v for k, v in d.items() if k != "drift"})
    with pytest.raises(ValueError, match="circuits data 'at'\\[1\\] lacks \\['m_diff'\\]"):
        CircuitTrajectory.from_dict({**d, "at": [d["at"][0], {k: v for k, v in d["at"][1].items() if k != "m_diff"}]})
    with pytest.raises(ValueError, match="'at' must be a list; got dict"):
        CircuitTrajectory.from_dict({**d, "at": {}})
    with pytest.raises(ValueError, match="3 steps, but per-checkpoint lengths \\{'at': 2\\}"):
        CircuitTrajectory.from_dict({**d, "at": d["at"][:2]})


def test_save_load_and_damaged_files_refused_by_name(tmp_path):
    r = CircuitTrajectory.from_dict(_stage())
    path = r.save(tmp_path / "circuits.json")
    stored = json.loads(path.read_text())
    assert (stored["kind"], stored["format"], stored["result"]) == ("circuits", 1, r.to_dict())
    assert CircuitTrajectory.load(path) == r

    edited = tmp_path / "edited.json"
    edited.write_text(path.read_text().replace('"pairs": 8', '"pairs": 9'))
    with pytest.raises(ValueError, match=f"{edited} fails its checksum"):
        CircuitTrajectory.load(edited)
    cut = tmp_path / "cut.json"
    cut.write_text(path.read_text()[:100])
    with pytest.raises(ValueError, match=f"{cut} is not a circuits result file: not valid JSON"):
        CircuitTrajectory.load(cut)
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({**stored, "format": 2}))
    with pytest.raises(ValueError, match=f"{newer}: circuits result format 2; this elk-lens reads 1"):
        CircuitTrajectory.load(newer)
    foreign = save_result(tmp_path / "drift.json", "drift", r.to_dict())
    with pytest.raises(ValueError, match=f"{foreign} is not a circuits result file"):
        CircuitTrajectory.load(foreign)
    # checksummed but incomplete: a field, or a field of one checkpoint, missing
    partial = save_result(tmp_path / "partial.json", "circuits", {k: v for k, v in r.to_dict().items() if k != "floor"})
    with pytest.raises(ValueError, match=f"{partial}: the circuits result lacks \\['floor'\\]"):
        CircuitTrajectory.load(partial)
    short = r.to_dict()
    del short["at"][0]["curve"]
    short_path = save_result(tmp_path / "short.json", "circuits", short)
    with pytest.raises(ValueError, match=f"{short_path}: circuits data 'at'\\[0\\] lacks \\['curve'\\]"):
        CircuitTrajectory.load(short_path)


def test_the_result_is_frozen():
    r = CircuitTrajectory.from_dict(_stage())
    for obj, name in ((r, "steps"), (r.at[0], "m_diff"), (r.floor, "jaccard")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, name, None)
