"""The spec parser (elk_lens.analyses.spec): frozen dataclasses from TOML tables, checked in one place."""

from dataclasses import FrozenInstanceError, dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from elk_lens.analyses import ANALYSES
from elk_lens.analyses.spec import AnalysisSpec, at_least, one_of, parse_spec, setting, spec_dict, spec_keys
from elk_lens.train import FineTuneConfig


@dataclass(frozen=True)
class _Table:
    size: int = setting(3, at_least(1))
    kind: str = setting("a", one_of(("a", "b")))
    names: tuple[str, ...] = ()
    rate: float = 0.5
    pair: tuple[str, str] = ("x", "y")
    limit: int | None = None


@dataclass(frozen=True)
class _Train:
    rows: int = 10
    tune: FineTuneConfig = setting(FineTuneConfig(steps=600), flatten=True)


@dataclass(frozen=True, kw_only=True)
class _Spec(AnalysisSpec):
    table: _Table = _Table()
    train: _Train = _Train()


def _parse(**tables):
    return parse_spec(_Spec, {"name": "t", "analysis": "x", **tables}, where="t.toml")


def test_defaults_and_values_land_in_frozen_tables():
    spec = _parse(table={"size": 5, "names": ["p", "q"], "rate": 1, "limit": 4})
    assert spec == _Spec(name="t", table=_Table(size=5, names=("p", "q"), rate=1.0, limit=4))
    assert isinstance(spec.table.rate, float)  # an int stands for a float
    with pytest.raises(FrozenInstanceError):
        spec.table.size = 1  # type: ignore[misc]


def test_a_flattened_config_reads_its_keys_from_the_parent_table_over_the_specs_default():
    spec = _parse(train={"rows": 3, "lr": 1e-4, "frozen": ["embed."]})
    assert spec.train.rows == 3
    assert spec.train.tune == FineTuneConfig(steps=600, lr=1e-4, frozen=("embed.",))  # steps: the spec's default
    assert spec_keys(_Spec)[:3] == ("name", "table.size", "table.kind")
    assert "train.steps" in spec_keys(_Spec) and "train.tune" not in spec_keys(_Spec)
    assert spec_dict(spec)["train.frozen"] == ["embed."] and spec_dict(spec)["train.rows"] == 3


@pytest.mark.parametrize(
    ("tables", "said"),
    [
        ({"table": {"sise": 1}}, "unknown config key(s) 'table.sise' (did you mean 'table.size'?)"),
        ({"table": {"size": 0}}, "config key 'table.size' must be >= 1; got 0"),
        ({"table": {"size": True}}, "config key 'table.size' must be of type int; got True"),
        ({"table": {"kind": "c"}}, "config key 'table.kind' must be one of ('a', 'b'); got 'c'"),
        ({"table": {"names": "p"}}, "config key 'table.names' must be a list of str; got 'p'"),
        ({"table": {"pair": ["x"]}}, "config key 'table.pair' must be a list of 2 items; got ['x']"),
        ({"table": {"rate": float("nan")}}, "config key 'table.rate' must be finite; got nan"),
        ({"table": 3}, "unknown config key(s) 'table' (did you mean 'table.size'?)"),
        ({"train": {"steps": 0}}, "config key 'train.steps' must lie in [1, inf); got 0"),  # FineTuneConfig's own check
        ({"train": {"answers": ["a", "a"]}}, "config key 'train.answers' must be two different strings"),
    ],
)
def test_bad_values_are_refused_naming_the_file_the_key_and_the_value(tables, said):
    with pytest.raises(ValueError) as e:
        _parse(**tables)
    assert str(e.value).startswith("t.toml: ") and said in str(e.value)


def test_a_required_key_is_named():
    @dataclass(frozen=True, kw_only=True)
    class Needs(AnalysisSpec):
        table: _Table

    with pytest.raises(ValueError, match="config key 'name' is required"):
        parse_spec(Needs, {"analysis": "x"})


@given(st.integers(1, 10**6), st.sampled_from(["a", "b"]), st.lists(st.text(max_size=4), max_size=3))
def test_spec_dict_of_a_parsed_spec_parses_back_to_it(size, kind, names):
    spec = _parse(table={"size": size, "kind": kind, "names": names})
    flat = spec_dict(spec)
    nested: dict = {}
    for dotted, value in flat.items():
        *tables, key = dotted.split(".")
        node = nested
        for t in tables:
            node = node.setdefault(t, {})
        if value is not None:  # TOML has no null: an unset optional stays unset
            node[key] = value
    assert parse_spec(_Spec, nested) == spec


@pytest.mark.parametrize("analysis", sorted(ANALYSES))
def test_every_analysis_spec_parses_from_its_name_alone_and_is_frozen(analysis):
    spec = parse_spec(ANALYSES[analysis].Spec, {"name": "x"})
    assert spec.name == "x" and hash(spec) == hash(parse_spec(ANALYSES[analysis].Spec, {"name": "x"}))
