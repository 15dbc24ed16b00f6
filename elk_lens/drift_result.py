"""What :func:`elk_lens.drift_study.trajectory_drift` measures, as a frozen, saveable result.

The numbers are nested by measure, then method, site and evaluation set, as ``metrics.json`` writes them
(:meth:`DriftResult.to_dict`); the lookups (:meth:`~DriftResult.auroc`, :meth:`~DriftResult.cos_v`, ...)
take a site as a :class:`~elk_lens.sites.Site` or any name :meth:`Site.parse <elk_lens.sites.Site.parse>`
reads, so callers stop indexing five levels deep with raw strings. The measures are defined in
``docs/methods/drift_growth_circuits.md``.
"""

from dataclasses import dataclass, fields
from pathlib import Path

from elk_lens._result_file import load_result, save_result
from elk_lens.sites import Site

__all__ = ["DriftResult"]

_KIND = "drift"
_REPORTERS = ("refit", "initial")


@dataclass(frozen=True)
class DriftResult:
    """Drift of every (method, site) along a trajectory; see the module docstring.

    Attributes:
        steps: The checkpoints' training steps.
        sites: Canonical site names (``blocks.L.hook_KIND``), in the order walked.
        methods: The reporters refitted at every checkpoint.
        transfer_eval: The evaluation set the transfer matrix and CKA are scored on.
        data: Fingerprints of the training set (``train``) and of each evaluation set.
        auroc_refit: method -> site -> set -> AUROC per step of the reporter refitted at that step.
        auroc_initial: The same for the step-0 reporter.
        output_auroc: set -> the model's own answer AUROC per step.
        auroc_fixed: fixed reporter -> set -> AUROC per step.
        cos_fixed_refit: fixed reporter -> method -> cosine of its readout to the refitted one, per step.
        cos_v_fixed_refit: fixed reporter -> cosine of its concept vector to the refitted one, per step.
        cos_w: method -> site -> ``to_first`` / ``to_previous`` -> readout cosine per step.
        cos_v: site -> ``to_first`` / ``to_previous`` -> concept-vector cosine per step.
        transfer: method -> site -> matrix (row: fitted at a step; column: scored at a step).
        subspace_angle_deg: site -> largest principal angle to step 0 of the methods' span, per step.
        cka_to_first: site -> linear CKA of the evaluation residuals to step 0's, per step.
        procrustes_to_first: site -> Procrustes distance to step 0's, per step.
        floors: Noise floors from step 0: ``cos_w`` (method -> site), ``cos_v`` and ``cka_final`` (site)
            -> quantiles (``q05``, ...).
    """

    steps: list[int]
    sites: list[str]
    methods: list[str]
    transfer_eval: str
    data: dict[str, str]
    auroc_refit: dict
    auroc_initial: dict
    output_auroc: dict[str, list[float]]
    auroc_fixed: dict
    cos_fixed_refit: dict
    cos_v_fixed_refit: dict[str, list[float]]
    cos_w: dict
    cos_v: dict
    transfer: dict
    subspace_angle_deg: dict[str, list[float]]
    cka_to_first: dict[str, list[float]]
    procrustes_to_first: dict[str, list[float]]
    floors: dict

    @property
    def end(self) -> int:
        """Index of the last checkpoint."""
        return len(self.steps) - 1

    def site(self, site: Site | str) -> str:
        """The canonical name of ``site``, refused unless the walk measured it."""
        name = Site.parse(site).name
        if name not in self.sites:
            raise KeyError(f"site {site!r} was not walked; sites: {self.sites}")
        return name

    def _method(self, method: str) -> str:
        if method not in self.methods:
            raise KeyError(f"method {method!r} was not refitted; methods: {self.methods}")
        return method

    def auroc(self, method: str, site: Site | str, subset: str, *, reporter: str = "refit") -> list[float]:
        """AUROC per step on evaluation set ``subset`` of the ``refit`` reporter (fitted at each step) or
        the ``initial`` one (fitted at step 0)."""
        if reporter not in _REPORTERS:
            raise ValueError(f"reporter {reporter!r}; valid: {_REPORTERS}")
        table = self.auroc_refit if reporter == "refit" else self.auroc_initial
        by_set = table[self._method(method)][self.site(site)]
        if subset not in by_set:
            raise KeyError(f"evaluation set {subset!r}; sets: {sorted(by_set)}")
        return by_set[subset]

    def fixed_auroc(self, name: str, subset: str) -> list[float]:
        """AUROC per step of the fixed reporter ``name`` (e.g. one transported through a growth map)."""
        if name not in self.auroc_fixed:
            raise KeyError(f"fixed reporter {name!r}; fixed: {sorted(self.auroc_fixed)}")
        return self.auroc_fixed[name][subset]

    def cos_v_series(self, site: Site | str, *, to: str = "first") -> list[float]:
        """Cosine per step of the concept vector (class-mean difference) to the first or previous step's."""
        return self.cos_v[self.site(site)][f"to_{to}"]

    def cos_w_series(self, method: str, site: Site | str, *, to: str = "first") -> list[float]:
        """Cosine per step of ``method``'s readout to the first or previous step's."""
        return self.cos_w[self._method(method)][self.site(site)][f"to_{to}"]

    def floor(self, measure: str, site: Site | str, method: str | None = None) -> dict[str, float]:
        """The noise floor's quantiles of ``measure`` (``cos_v``, ``cka_final``, or ``cos_w`` with a method)."""
        if measure == "cos_w":
            return self.floors["cos_w"][self._method(method or "")][self.site(site)]
        if measure not in ("cos_v", "cka_final"):
            raise ValueError(f"floor measure {measure!r}; valid: ('cos_v', 'cos_w', 'cka_final')")
        return self.floors[measure][self.site(site)]

    def transfer_matrix(self, method: str, site: Site | str) -> list[list[float]]:
        """Row: the reporter fitted at a step; column: scored at a step (on ``transfer_eval``)."""
        return self.transfer[self._method(method)][self.site(site)]

    def cka(self, site: Site | str) -> list[float]:
        """Linear CKA per step of the ``transfer_eval`` residuals to step 0's."""
        return self.cka_to_first[self.site(site)]

    def to_dict(self) -> dict:
        """The JSON data ``metrics.json`` holds, keys in field order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "DriftResult":
        """The result from :meth:`to_dict`'s data (other keys, e.g. a run's final accuracy, aside)."""
        missing = [f.name for f in fields(cls) if f.name not in data]
        if missing:
            raise ValueError(f"drift data lacks {missing}")
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    def save(self, path: str | Path) -> Path:
        """One checksummed JSON file, written atomically."""
        return save_result(path, _KIND, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "DriftResult":
        """A saved result, verified (kind, format, checksum, every field)."""
        return cls.from_dict(load_result(path, _KIND, [f.name for f in fields(cls)]))
