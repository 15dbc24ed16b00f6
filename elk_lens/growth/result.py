"""What the growth protocol measures, as a frozen, saveable result: the growth step, the drift of the
refitted and the transported reporters along the grown model's training, and the map fitted on
activations. Lookups take a site as a :class:`~elk_lens.sites.Site` or any name it parses; the
protocol is ``docs/methods/drift_growth_circuits.md``.
"""

from dataclasses import dataclass
from pathlib import Path

from elk_lens._result_file import load_result, save_result
from elk_lens.drift_result import DriftResult
from elk_lens.sites import Site

__all__ = ["GrowthResult"]

_KIND = "growth"
_TRANSPORTED = "transported from "  # the name of a small model's reporter moved through the map


@dataclass(frozen=True)
class GrowthResult:
    """The growth protocol's numbers.

    Attributes:
        step: The growth step: ``ops``, ``exact`` (function-preserving), ``layers``, the ``small`` and
            ``grown`` sizes, ``max_abs_output_log_odds_change``, the small model's reporters' AUROC per small
            site (``small_auroc``), its output AUROC, accuracies and the held-out ``answer_loss`` before and
            after growing.
        drift: The grown model's trajectory, with each small-model reporter transported through the map
            scored at every checkpoint as a fixed reporter named ``"transported from <small site>"``.
        transported_to: Small-model site -> the grown-model site its reporter reads.
        fitted_map: Small-model site -> the map fitted on activations: ``target_site``, ``fit residual``,
            AUROC ``through the fitted map`` and ``refitted on the final model``.
    """

    step: dict
    drift: DriftResult
    transported_to: dict[str, str]
    fitted_map: dict[str, dict]

    @classmethod
    def from_stages(cls, grow: dict, drift: dict, fitted_map: dict) -> "GrowthResult":
        """From the analysis stages' JSON (the drift stage names its fixed reporters' sites)."""
        moved = {name.removeprefix(_TRANSPORTED): site for name, site in drift["fixed_sites"].items()}
        return cls(grow, DriftResult.from_dict(drift), moved, fitted_map)

    def _small(self, small_site: Site | str) -> str:
        name = Site.parse(small_site).name
        if name not in self.transported_to:
            raise KeyError(f"no reporter was fitted at {small_site!r} of the small model; sites: {list(self)}")
        return name

    def __iter__(self):
        """The small model's sites, shallow to deep."""
        return iter(self.step["small_auroc"])

    def small_auroc(self, small_site: Site | str) -> float:
        """The small model's reporter at ``small_site``: AUROC on Bob-hard disagreements before growing."""
        return self.step["small_auroc"][self._small(small_site)]

    def transported_auroc(self, small_site: Site | str, subset: str = "BH_disagree") -> list[float]:
        """AUROC per checkpoint of the reporter fitted at ``small_site`` and moved through the map."""
        return self.drift.fixed_auroc(_TRANSPORTED + self._small(small_site), subset)

    def cos_v_to_refit(self, small_site: Site | str) -> list[float]:
        """Cosine per checkpoint of the transported concept vector to the one refitted at its grown site."""
        return self.drift.cos_v_fixed_refit[_TRANSPORTED + self._small(small_site)]

    def cos_w_to_refit(self, small_site: Site | str, method: str) -> list[float]:
        """Cosine per checkpoint of the transported readout to ``method``'s refitted readout."""
        return self.drift.cos_fixed_refit[_TRANSPORTED + self._small(small_site)][method]

    def from_small(self, grown_site: Site | str) -> str | None:
        """The small-model site whose reporter was transported to ``grown_site``, or None."""
        name = Site.parse(grown_site).name
        return next((small for small, site in self.transported_to.items() if site == name), None)

    def to_dict(self) -> dict:
        return {
            "step": self.step,
            "drift": self.drift.to_dict(),
            "transported_to": self.transported_to,
            "fitted_map": self.fitted_map,
        }

    def save(self, path: str | Path) -> Path:
        """One checksummed JSON file, written atomically."""
        return save_result(path, _KIND, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "GrowthResult":
        """A saved result, verified (kind, format, checksum, every field)."""
        data = load_result(path, _KIND, ("step", "drift", "transported_to", "fitted_map"))
        return cls(data["step"], DriftResult.from_dict(data["drift"]), data["transported_to"], data["fitted_map"])
