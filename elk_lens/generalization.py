"""Generalization matrix: fit a reporter on one truth dataset, score it on every other one, at every layer.

The question Marks & Tegmark and Bürger et al. ask of a truth direction: does a probe trained on
``cities`` still read truth on ``neg_cities``, on conjunctions, on translations? Each reporter is fitted
on the ``train`` split of its source and scored (AUROC vs truth) on the ``test`` split of every set;
since splits are drawn per item (a city, a word pair), the diagonal is an honest held-out number and no
off-diagonal cell tests on an item the reporter was trained on under another template.

The layer each cell is reported at is chosen per (method, source) by the earliest informative layer of
the source's own ``val`` split (:func:`~elk_lens.transfer.earliest_informative_layer`): never by looking
at a test set. Unsupervised methods (CCS) get their sign and scale from the training labels (Platt).
TTPD needs affirmative and negated statements, so its sources are topics (``cities+neg_cities``),
each dataset centred by its own training mean as in TIU.
"""

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from elk_lens._checks import check_number
from elk_lens._fingerprint import fingerprint
from elk_lens._result_file import load_result, save_result
from elk_lens.capturing import Position, capture, content_position
from elk_lens.contrast import capture_contrast
from elk_lens.data.statements import StatementSet
from elk_lens.lm_output import check_answers
from elk_lens.metrics import auroc, bootstrap_ci
from elk_lens.reporters.base import Reporter
from elk_lens.reporters.random_baseline import random_direction_baseline
from elk_lens.reporters.registry import METHODS, fit_method
from elk_lens.reporters.ttpd import fit_ttpd
from elk_lens.sites import Site, residual_sites
from elk_lens.transfer import earliest_informative_layer

__all__ = ["DEFAULT_METHODS", "Generalization", "Source", "generalization_study", "random_floor", "sources_for"]

DEFAULT_METHODS = ("logistic", "mean_diff", "ccs", "ttpd")
_SPLITS = ("train", "val", "test")
_KIND = "generalization"


@dataclass(frozen=True)
class Source:
    """What one reporter is trained on: one dataset, or (TTPD) a topic's affirmative and negated sets."""

    name: str
    sets: tuple[str, ...]


def sources_for(method: str, sets: dict[str, StatementSet]) -> list[Source]:
    """Training sources of ``method``: every set, or for a polarity method every topic holding both polarities."""
    if method not in METHODS:
        raise ValueError(f"unknown reporter method {method!r}; valid methods: {sorted(METHODS)}")
    if not METHODS[method].needs_polarity:
        return [Source(name, (name,)) for name in sets]
    topics: dict[str, list[str]] = {}
    for name, data in sets.items():
        topics.setdefault(str(data.column("topic")[0]), []).append(name)
    out = []
    for members in topics.values():
        polarities = {bool(p) for name in members for p in sets[name].column("polarity")}
        if polarities == {True, False}:
            out.append(Source("+".join(members), tuple(members)))
    return out


@dataclass(frozen=True)
class Generalization:
    """Results as JSON-ready rows, with lookups by method, source, test and site (a
    :class:`~elk_lens.sites.Site` or any name it parses), and checksummed :meth:`save` / :meth:`load`.

    Attributes:
        per_site: One row per (method, train source, site, test set): ``auroc`` on the test set's test
            split, ``val_auroc`` of the source's own val split at that site.
        chosen: One row per (method, train source, test set) at the site chosen on the source's val
            split, with a percentile-bootstrap 95% interval (``ci_low``, ``ci_high``).
        sites: Site names, shallow to deep.
        tests: Test set names, in the order given.
        provenance: Model and data fingerprints, position, answers, seed.
    """

    per_site: list[dict]
    chosen: list[dict]
    sites: list[str]
    tests: list[str]
    provenance: dict

    @property
    def methods(self) -> list[str]:
        """The methods, in the order they were run."""
        return list(dict.fromkeys(r["method"] for r in self.chosen))

    def sources(self, method: str) -> list[str]:
        """The train sources of ``method`` (a dataset, or for TTPD a topic such as ``cities+neg_cities``)."""
        return list(dict.fromkeys(r["train"] for r in self.chosen if r["method"] == method))

    def rows(self, method: str | None = None, *, diagonal: bool = False) -> list[dict]:
        """The chosen-site rows (of ``method``; ``diagonal``: only those tested on their own training set)."""
        return [
            r
            for r in self.chosen
            if (method is None or r["method"] == method) and (not diagonal or r["train"] == r["test"])
        ]

    def auroc(self, method: str, train: str, test: str, site: Site | str | None = None) -> float:
        """AUROC of ``method`` trained on ``train``, tested on ``test``: at ``site``, or at the site chosen
        on the source's val split when None."""
        if site is None:
            rows = [r for r in self.rows(method) if (r["train"], r["test"]) == (train, test)]
        else:
            name = Site.parse(site).name
            rows = [
                r
                for r in self.per_site
                if (r["method"], r["train"], r["test"], r["site"]) == (method, train, test, name)
            ]
        if not rows:
            where = "" if site is None else f" at {site!r} (sites: {self.sites})"
            raise ValueError(f"no result for {method} trained on {train!r}, tested on {test!r}{where}")
        return rows[0]["auroc"]

    def by_layer(self, method: str, train: str, test: str) -> list[float]:
        """AUROC at every site (in ``sites`` order) of ``method`` trained on ``train``, tested on ``test``."""
        cell = {
            r["site"]: r["auroc"]
            for r in self.per_site
            if (r["method"], r["train"], r["test"]) == (method, train, test)
        }
        if not cell:
            raise ValueError(f"no results for {method} trained on {train!r}, tested on {test!r}")
        return [cell[site] for site in self.sites]

    def matrix(self, method: str) -> tuple[list[str], list[list[float]]]:
        """(train sources, AUROC rows over ``tests``) of one method at its chosen sites."""
        rows = self.rows(method)
        if not rows:
            raise ValueError(f"no results for method {method!r}; methods: {sorted(self.methods)}")
        sources = self.sources(method)
        cell = {(r["train"], r["test"]): r["auroc"] for r in rows}
        return sources, [[cell[(s, t)] for t in self.tests] for s in sources]

    def to_dict(self) -> dict:
        """The JSON data the analysis stages save, keys in field order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def save(self, path: str | Path) -> Path:
        """One checksummed JSON file, written atomically."""
        return save_result(path, _KIND, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Generalization":
        """A saved result, verified (kind, format, checksum, every field)."""
        return cls(**load_result(path, _KIND, [f.name for f in fields(cls)]))


def _check_sets(sets: dict[str, StatementSet], methods: Sequence[str]) -> None:
    if not isinstance(sets, dict):
        raise TypeError(f"sets must be a dict {{name: StatementSet}}; got {type(sets).__name__}")
    if not sets:
        raise ValueError("no datasets given")
    wrong = [name for name, data in sets.items() if not isinstance(data, StatementSet)]
    if wrong:
        raise TypeError(f"sets[{wrong[0]!r}] must be a StatementSet; got {type(sets[wrong[0]]).__name__}")
    if isinstance(methods, str):
        raise TypeError(f"methods must be a list of method names, got the string {methods!r}; write [{methods!r}]")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown reporter methods {unknown}; valid methods: {sorted(METHODS)}")
    for name, data in sets.items():
        if "split" not in data.meta:
            raise ValueError(f"dataset {name!r} has no 'split' column (train / val / test per row)")
        for split in _SPLITS:
            labels = data.truth[torch.as_tensor(data.column("split") == split)]
            if labels.all() or not labels.any():
                raise ValueError(f"dataset {name!r}: its {split} split needs true and false statements")
        if any(METHODS[m].needs_polarity for m in methods):
            for column in ("topic", "polarity"):
                data.column(column)  # raises, naming the columns present


@dataclass
class _AtSite:
    """Every set's activations at one site: what each fit and score there reads (loaded once per site)."""

    sets: dict[str, StatementSet]
    x: dict[str, Tensor]
    pairs: dict[str, tuple[Tensor, Tensor]]

    def _masks(self, names: Sequence[str], split: str) -> list[Tensor]:
        return [torch.as_tensor(self.sets[n].column("split") == split) for n in names]

    def inputs(self, method: str, names: Sequence[str], split: str) -> tuple[tuple[Tensor, ...], Tensor]:
        """What ``method`` reads on the ``split`` rows of ``names`` (concatenated in that order), and their truth."""
        masks = self._masks(names, split)
        labels = torch.cat([self.sets[n].truth[m] for n, m in zip(names, masks, strict=True)])
        if METHODS[method].reads == "contrast":
            halves = [[self.pairs[n][h][m] for n, m in zip(names, masks, strict=True)] for h in (0, 1)]
            return (torch.cat(halves[0]), torch.cat(halves[1])), labels
        return (torch.cat([self.x[n][m] for n, m in zip(names, masks, strict=True)]),), labels

    def fit(self, method: str, source: Source, site: str, provenance: dict) -> Reporter:
        """One reporter on the train rows of the source's sets; TTPD centres each set by its own mean."""
        inputs, labels = self.inputs(method, source.sets, "train")
        provenance = {**provenance, "train": source.name}
        if METHODS[method].needs_polarity:
            masks = self._masks(source.sets, "train")
            polarity = torch.cat(
                [
                    torch.as_tensor(self.sets[n].column("polarity")[m.numpy()].astype(bool))
                    for n, m in zip(source.sets, masks, strict=True)
                ]
            )
            groups = torch.cat([torch.full((int(m.sum()),), k) for k, m in enumerate(masks)])
            return fit_ttpd(inputs[0], labels, polarity, site=site, groups=groups, provenance=provenance)
        if METHODS[method].reads == "contrast":
            return fit_method(method, labels, site=site, pair=inputs, provenance=provenance)
        return fit_method(method, labels, site=site, statement=inputs[0], provenance=provenance)

    def score(self, reporter: Reporter, method: str, names: Sequence[str], split: str) -> tuple[Tensor, Tensor]:
        inputs, labels = self.inputs(method, names, split)
        return reporter(*inputs), labels


def generalization_study(
    model: TransformerBridge,
    sets: dict[str, StatementSet],
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    sites: Sequence[Site | str] | None = None,
    position: Position | None = None,
    answers: tuple[str, str] = (" True", " False"),
    batch_size: int = 64,
    cache_dir=None,
    n_boot: int = 1000,
    seed: int = 0,
) -> Generalization:
    """Every method, trained on every source, scored on every set's test split at every site.

    Args:
        model: Any TransformerBridge.
        sets: Name -> statements with ``split`` (train / val / test), and ``topic`` and ``polarity``
            for TTPD; e.g. :func:`~elk_lens.data.truth_datasets.truth_sets`.
        methods: Reporter methods (``METHODS``).
        sites: Residual sites (default: every layer, :func:`residual_sites`).
        position: Read position (default: :func:`content_position`, the statement's final period).
        answers: Appended (true, false) answers for contrast methods, each one token.
        batch_size: Statements per forward pass.
        cache_dir: Activation cache (a rerun reads it instead of running the model).
        n_boot: Bootstrap resamples for the intervals at the chosen sites.
        seed: Seed of the bootstrap.
    """
    _check_sets(sets, methods)
    check_number("n_boot", n_boot, kind=int, low=1)
    check_number("seed", seed, kind=int)
    check_number("batch_size", batch_size, kind=int, low=1)
    check_answers(answers)
    site_list, position, x, pairs = capture_inputs(
        model, sets, methods, sites, position, answers, batch_size, cache_dir
    )
    provenance = {
        "model": fingerprint(model),
        "data": {n: d.fingerprint for n, d in sets.items()},
        "position": position,
        "answers": list(answers),
        "seed": seed,
    }
    tests = list(sets)
    runs = [(method, source) for method in methods for source in sources_for(method, sets)]
    lacking = [m for m in methods if not any(run[0] == m for run in runs)]
    if lacking:
        raise ValueError(
            f"{lacking} train on a topic's affirmative and negated sets together (e.g. cities and "
            f"neg_cities: the same 'topic', 'polarity' True and False); the sets given hold "
            f"no such pair"
        )
    val: dict[tuple, list[float]] = {run: [] for run in runs}
    scored: dict[tuple, list[dict]] = {run: [] for run in runs}  # per site: test -> (scores, labels)
    for i, site in enumerate(site_list):
        at = _AtSite(sets, {n: a.at(i) for n, a in x.items()}, {n: p.at(i) for n, p in pairs.items()})
        for method, source in runs:
            r = at.fit(method, source, site.name, provenance)
            val[(method, source)].append(auroc(*at.score(r, method, source.sets, "val")))
            scored[(method, source)].append({t: at.score(r, method, [t], "test") for t in tests})
    per_site, chosen = [], []
    for method, source in runs:
        run = (method, source)
        for i, site in enumerate(site_list):
            per_site += [
                {
                    "method": method,
                    "train": source.name,
                    "site": site.name,
                    "test": t,
                    "auroc": auroc(*scored[run][i][t]),
                    "val_auroc": val[run][i],
                }
                for t in tests
            ]
        best = earliest_informative_layer(val[run])
        for t in tests:
            s, y = scored[run][best][t]
            low, high = bootstrap_ci(auroc, s, y, n_resamples=n_boot, seed=seed)
            chosen.append(
                {
                    "method": method,
                    "train": source.name,
                    "test": t,
                    "site": site_list[best].name,
                    "auroc": auroc(s, y),
                    "ci_low": low,
                    "ci_high": high,
                    "val_auroc": val[run][best],
                }
            )
    return Generalization(per_site, chosen, [s.name for s in site_list], tests, provenance)


def capture_inputs(
    model, sets, methods, sites, position, answers, batch_size, cache_dir
) -> tuple[list[Site], Position, dict, dict]:
    """What :func:`generalization_study` reads (its arguments, unchecked): the sites, the read position, the
    statements' activations and, if a method reads contrast pairs, the pairs'. Called alone with a
    ``cache_dir`` it fills the cache the study then reads (under torchrun, its shards split over the ranks)."""
    site_list, position, x = _capture_sets(model, sets, sites, position, batch_size, cache_dir)
    pairs = {}
    if any(METHODS[m].reads == "contrast" for m in methods):
        pairs = {
            n: capture_contrast(
                model, d, site_list, answers=answers, position=position, batch_size=batch_size, cache_dir=cache_dir
            )
            for n, d in sets.items()
        }
    return site_list, position, x, pairs


def _capture_sets(model, sets, sites, position, batch_size, cache_dir) -> tuple[list[Site], Position, dict]:
    site_list = [Site.parse(s) for s in sites] if sites is not None else residual_sites(model)
    position = content_position(model) if position is None else position
    x = {
        n: capture(model, d, site_list, position=position, batch_size=batch_size, cache_dir=cache_dir)
        for n, d in sets.items()
    }
    return site_list, position, x


def random_floor(
    model: TransformerBridge,
    sets: dict[str, StatementSet],
    *,
    sites: Sequence[Site | str] | None = None,
    position: Position | None = None,
    batch_size: int = 64,
    cache_dir=None,
    n_directions: int = 200,
    seed: int = 0,
) -> list[dict]:
    """Per dataset and site: test AUROCs of random directions, each signed on the train split
    (:func:`~elk_lens.reporters.random_baseline.random_direction_baseline`) — the floor a probe's
    in-distribution cell must clear at that layer. Reads the same cached activations as the study.
    """
    _check_sets(sets, ())
    check_number("n_directions", n_directions, kind=int, low=1)
    site_list, _, x = _capture_sets(model, sets, sites, position, batch_size, cache_dir)
    rows = []
    for name, data in sets.items():
        train = torch.as_tensor(data.column("split") == "train")
        test = torch.as_tensor(data.column("split") == "test")
        for i, site in enumerate(site_list):
            at = x[name].at(i)
            q = random_direction_baseline(
                at[train], data.truth[train], at[test], data.truth[test], n_directions=n_directions, seed=seed
            )
            rows.append(
                {
                    "dataset": name,
                    "site": site.name,
                    "mean": q["mean"],
                    "q0.95": q["q0.95"],
                    "q0.99": q["q0.99"],
                    "n_directions": n_directions,
                }
            )
    return rows
