"""What the growth protocol measures, as frozen, saveable results: the growth step (:class:`GrowthStep`,
the ``grow`` stage), the map fitted on activations (:class:`FittedMapResult`, the ``fitted_map`` stage),
and both with the drift of the transported reporters along the grown model's training
(:class:`GrowthResult`). Each ``to_dict`` is the JSON its stage saves and ``metrics.json`` holds, keys
in the same order, so old runs resume; lookups take a site as a :class:`~elk_lens.sites.Site` or any name
it parses, and sites are stored by their canonical names. The protocol is
``docs/methods/drift_growth_circuits.md``; the results file format is ``elk_lens/_result_file.py``.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

from elk_lens._result_file import load_result, save_result
from elk_lens.drift_result import DriftResult
from elk_lens.sites import Site

__all__ = ["FittedMap", "FittedMapResult", "GrowthResult", "GrowthStep"]

_TRANSPORTED = "transported from "  # the name of a small model's reporter moved through the map
_FITTED_KEYS = {  # FittedMap field -> its key in the fitted_map stage's JSON
    "target_site": "target_site",
    "fit_residual": "fit residual",
    "through_map": "through the fitted map",
    "refitted": "refitted on the final model",
}


def _require(data: object, keys: Iterable[str], what: str) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be a JSON object; got {type(data).__name__}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValueError(f"{what} lacks {missing}")


def _names(sites: dict, what: str) -> dict:
    """``sites`` keyed by canonical site names, in their order."""
    _require(sites, (), what)
    return {Site.parse(k).name: v for k, v in sites.items()}


def _load(cls, path: str | Path, kind: str, keys: Iterable[str]):
    """``cls.from_dict`` of a verified result file; a malformed payload is refused naming the file."""
    data = load_result(path, kind, keys)
    try:
        return cls.from_dict(data)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: the {kind} result is malformed: {e}") from None


@dataclass(frozen=True)
class GrowthStep:
    """The growth step (the ``grow`` stage): what was grown and what growing changed.

    Attributes:
        ops: The growth operators applied, in order (``GrowthMap.ops``).
        exact: Whether the growth preserves the function.
        layers: The grown model's block index of each small-model block.
        small: The small model's ``n_layers`` and ``d_model``.
        grown: The grown model's ``n_layers``, ``d_model``, ``d_mlp``, ``n_heads`` and ``d_head``.
        max_abs_output_log_odds_change: The largest change of the answer log-odds on Bob-hard
            disagreements at the growth step.
        small_auroc: Small-model site -> its reporter's AUROC on Bob-hard disagreements before growing.
        small_output_auroc: The small model's own answer AUROC there.
        small_accuracy: The small model's output accuracies (who vs which labels).
        answer_loss: The held-out answer loss of the ``small`` model and of the ``grown`` one at step 0.
    """

    ops: list[str]
    exact: bool
    layers: list[int]
    small: dict[str, int]
    grown: dict[str, int]
    max_abs_output_log_odds_change: float
    small_auroc: dict[str, float]
    small_output_auroc: float
    small_accuracy: dict[str, float]
    answer_loss: dict[str, float]

    def __post_init__(self) -> None:
        object.__setattr__(self, "small_auroc", _names(self.small_auroc, "small_auroc"))

    def __iter__(self) -> Iterator[str]:
        """The small model's sites with a reporter, shallow to deep."""
        return iter(self.small_auroc)

    def site(self, small_site: Site | str) -> str:
        """The canonical name of ``small_site``, refused unless a reporter was fitted there."""
        name = Site.parse(small_site).name
        if name not in self.small_auroc:
            raise KeyError(f"no reporter was fitted at {small_site!r} of the small model; sites: {list(self)}")
        return name

    def reporter_auroc(self, small_site: Site | str) -> float:
        """The small model's reporter at ``small_site``: AUROC on Bob-hard disagreements before growing."""
        return self.small_auroc[self.site(small_site)]

    def to_dict(self) -> dict:
        """The ``grow`` stage's JSON data, keys in field order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "GrowthStep":
        keys = [f.name for f in fields(cls)]
        _require(data, keys, "growth step data")
        return cls(**{k: data[k] for k in keys})

    def save(self, path: str | Path) -> Path:
        """One checksummed JSON file, written atomically."""
        return save_result(path, "growth step", self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "GrowthStep":
        """A saved result, verified (kind, format, checksum, every field)."""
        return _load(cls, path, "growth step", [f.name for f in fields(cls)])


@dataclass(frozen=True)
class FittedMap:
    """The affine map fitted at one small-model site, and the AUROCs on Bob-hard disagreements it gives.

    Attributes:
        target_site: The final model's site the map leads to.
        fit_residual: The share of the target's variation the map does not explain.
        through_map: AUROC of the small model's reporter moved through the fitted map.
        refitted: AUROC of a reporter refitted at ``target_site`` on the final model.
    """

    target_site: str
    fit_residual: float
    through_map: float
    refitted: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_site", Site.parse(self.target_site).name)

    def to_dict(self) -> dict:
        return {key: getattr(self, name) for name, key in _FITTED_KEYS.items()}

    @classmethod
    def from_dict(cls, data: dict) -> "FittedMap":
        _require(data, _FITTED_KEYS.values(), "fitted map data")
        return cls(**{name: data[key] for name, key in _FITTED_KEYS.items()})


@dataclass(frozen=True)
class FittedMapResult:
    """The maps fitted on paired activations of the small and the final model (the ``fitted_map`` stage).

    Attributes:
        maps: Small-model site -> its :class:`FittedMap`, shallow to deep.
    """

    maps: dict[str, FittedMap]

    def __post_init__(self) -> None:
        object.__setattr__(self, "maps", _names(self.maps, "fitted map data"))

    def __iter__(self) -> Iterator[str]:
        """The small model's sites, shallow to deep."""
        return iter(self.maps)

    def at(self, small_site: Site | str) -> FittedMap:
        """The map fitted from ``small_site``."""
        name = Site.parse(small_site).name
        if name not in self.maps:
            raise KeyError(f"no map was fitted from {small_site!r} of the small model; sites: {list(self)}")
        return self.maps[name]

    def rows(self) -> list[dict]:
        """One table row per small-model site (``small site`` first, then the stage's keys)."""
        return [{"small site": site, **m.to_dict()} for site, m in self.maps.items()]

    def to_dict(self) -> dict:
        """The ``fitted_map`` stage's JSON data: small-model site -> the map's numbers."""
        return {site: m.to_dict() for site, m in self.maps.items()}

    @classmethod
    def from_dict(cls, data: dict) -> "FittedMapResult":
        _require(data, (), "fitted map data")
        return cls({site: FittedMap.from_dict(m) for site, m in data.items()})

    def save(self, path: str | Path) -> Path:
        """One checksummed JSON file, written atomically."""
        return save_result(path, "fitted map", self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "FittedMapResult":
        """A saved result, verified (kind, format, checksum, every map's fields)."""
        return _load(cls, path, "fitted map", ())


@dataclass(frozen=True)
class GrowthResult:
    """The growth protocol's numbers.

    Attributes:
        step: The growth step.
        drift: The grown model's trajectory, with each small-model reporter transported through the map
            scored at every checkpoint as a fixed reporter named ``"transported from <small site>"``.
        transported_to: Small-model site -> the grown-model site its reporter reads.
        fitted_map: The maps fitted on activations of the small and the final model.
    """

    step: GrowthStep
    drift: DriftResult
    transported_to: dict[str, str]
    fitted_map: FittedMapResult

    def __post_init__(self) -> None:
        moved = _names(self.transported_to, "transported_to")
        object.__setattr__(self, "transported_to", {small: Site.parse(site).name for small, site in moved.items()})

    @classmethod
    def from_stages(cls, grow: dict, drift: dict, fitted_map: dict) -> "GrowthResult":
        """From the analysis stages' JSON (the drift stage names its fixed reporters' sites)."""
        moved = {name.removeprefix(_TRANSPORTED): site for name, site in drift["fixed_sites"].items()}
        return cls(
            GrowthStep.from_dict(grow), DriftResult.from_dict(drift), moved, FittedMapResult.from_dict(fitted_map)
        )

    def __iter__(self) -> Iterator[str]:
        """The small model's sites, shallow to deep."""
        return iter(self.step)

    def grown_site(self, small_site: Site | str) -> str:
        """The grown-model site the reporter fitted at ``small_site`` reads once transported."""
        return self.transported_to[self.step.site(small_site)]

    def from_small(self, grown_site: Site | str) -> str | None:
        """The small-model site whose reporter was transported to ``grown_site``, or None."""
        name = Site.parse(grown_site).name
        return next((small for small, site in self.transported_to.items() if site == name), None)

    def _fixed(self, small_site: Site | str) -> str:
        return _TRANSPORTED + self.step.site(small_site)

    def transported_auroc(self, small_site: Site | str, subset: str = "BH_disagree") -> list[float]:
        """AUROC per checkpoint of the reporter fitted at ``small_site`` and moved through the map."""
        return self.drift.fixed_auroc(self._fixed(small_site), subset)

    def cos_v_to_refit(self, small_site: Site | str) -> list[float]:
        """Cosine per checkpoint of the transported concept vector to the one refitted at its grown site."""
        return self.drift.cos_v_fixed_refit[self._fixed(small_site)]

    def cos_w_to_refit(self, small_site: Site | str, method: str) -> list[float]:
        """Cosine per checkpoint of the transported readout to ``method``'s refitted readout."""
        return self.drift.cos_fixed_refit[self._fixed(small_site)][method]

    def to_dict(self) -> dict:
        return {
            "step": self.step.to_dict(),
            "drift": self.drift.to_dict(),
            "transported_to": self.transported_to,
            "fitted_map": self.fitted_map.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "GrowthResult":
        _require(data, ("step", "drift", "transported_to", "fitted_map"), "growth data")
        return cls(
            GrowthStep.from_dict(data["step"]),
            DriftResult.from_dict(data["drift"]),
            data["transported_to"],
            FittedMapResult.from_dict(data["fitted_map"]),
        )

    def save(self, path: str | Path) -> Path:
        """One checksummed JSON file, written atomically."""
        return save_result(path, "growth", self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "GrowthResult":
        """A saved result, verified (kind, format, checksum, every field)."""
        return _load(cls, path, "growth", ("step", "drift", "transported_to", "fitted_map"))
