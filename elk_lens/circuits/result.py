"""What the circuits analysis measures along a trajectory, as a frozen, saveable result.

At every checkpoint (:class:`CheckpointCircuit`): each upstream component's exact and attribution-
patching score, their rank agreement and the smallest faithful circuit. Along the trajectory
(:class:`CircuitTrajectory`): the noise floor from two disjoint halves of the pairs at the first
checkpoint (:class:`NoiseFloor`), the drift series of :func:`elk_lens.circuit_drift.circuit_series`, and
every checkpoint's scores as shares of its clean-vs-corrupt gap in the last checkpoint's names. The
measures are defined in docs/methods/drift_growth_circuits.md §2.2, §2.3, §3. :meth:`CircuitTrajectory.to_dict` is the
``circuits`` stage's JSON key for key, so a run resumes from the stage files it saved before and its
``metrics.json`` keeps its bytes; the lookups replace indexing that JSON by hand.
"""

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from elk_lens._result_file import load_result, save_result
from elk_lens.circuits.views import top_heads
from elk_lens.sites import Site

__all__ = ["CheckpointCircuit", "CircuitTrajectory", "NoiseFloor"]

_KIND = "circuits"
_SIMILARITIES = ("jaccard", "weighted_jaccard")
_TO = ("first", "prev")
_CONTAINERS = {"steps": list, "at": list, "drift": dict, "exact_in_final_names": list, "grown_at": list}


def _kwargs(cls, data: object, what: str) -> dict:
    """``cls``'s fields from ``data`` (a JSON object), refused by name when one is missing."""
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be a JSON object; got {type(data).__name__}")
    missing = [f.name for f in fields(cls) if f.name not in data]
    if missing:
        raise ValueError(f"{what} lacks {missing}")
    return {f.name: data[f.name] for f in fields(cls)}


@dataclass(frozen=True)
class CheckpointCircuit:
    """The scores and the smallest faithful circuit at one checkpoint.

    Attributes:
        exact: Component -> exact patching score (mean over pairs): the change of the reporter's score
            when that component's output is replaced by its output on the twin.
        ap: Component -> attribution patching's first-order estimate of it.
        spearman_ap: Rank agreement of ``ap`` with ``exact``.
        spearman_ig: Rank agreement of attribution patching with integrated gradients with ``exact``.
        circuit: The smallest circuit reaching the faithfulness target, by decreasing |exact|.
        size: ``len(circuit)``.
        m_diff: The full model's mean clean-minus-corrupt reporter score (the gap F is a share of).
        curve: ``curve[k]`` = F of the first k components by |exact| (k = 0..all).
    """

    exact: dict[str, float]
    ap: dict[str, float]
    spearman_ap: float
    spearman_ig: float
    circuit: list[str]
    size: int
    m_diff: float
    curve: list[float]

    @property
    def faithfulness_all(self) -> float:
        """F with every component kept (1 up to the interactions the ablation misses)."""
        return self.curve[-1]

    def shares(self, *, circuit_only: bool = False) -> dict[str, float]:
        """Exact scores as shares of ``m_diff``, which refitted reporters of different scale agree on;
        only the circuit's components with ``circuit_only``."""
        return {k: v / self.m_diff for k, v in self.exact.items() if not circuit_only or k in self.circuit}

    def top_heads(self, k: int) -> list[str]:
        """The ``k`` heads with the largest |exact score|."""
        return top_heads(self.exact, k)


@dataclass(frozen=True)
class NoiseFloor:
    """The drift measures between the circuits found on two disjoint halves of the pairs at the first
    checkpoint: a change along the trajectory counts only beyond these.

    Attributes:
        jaccard: Jaccard of the two halves' circuits.
        weighted_jaccard: Their weighted Jaccard on in-circuit shares of the gap.
        edit_distance: Components in one circuit and not the other.
        halves: The two circuits.
    """

    jaccard: float
    weighted_jaccard: float
    edit_distance: int
    halves: list[list[str]]


@dataclass(frozen=True)
class CircuitTrajectory:
    """Circuits along a trajectory; see the module docstring. Checkpoints are addressed by position
    (``at[t]``, ``labels[t]``), because a step repeats across a growth step (the small model's last
    step is the grown model's first).

    Attributes:
        steps: The checkpoints' training steps.
        site: The reporter's site in the first model (a :class:`~elk_lens.sites.Site` is stored by its
            name; a string as written, which the stage's JSON keeps); :attr:`site_name` is canonical.
        pairs: The number of clean/corrupt twin pairs scored.
        example: The first pair, ``[clean, corrupt]``.
        at: Per checkpoint, its scores and circuit.
        floor: The noise floor at the first checkpoint.
        drift: :func:`~elk_lens.circuit_drift.circuit_series` of the circuits in the last checkpoint's
            names: ``size``, ``{jaccard,weighted_jaccard,edit_distance}_{prev,first}``, ``ewma_change``.
        exact_in_final_names: Per checkpoint, every component's share of the gap
            (:meth:`CheckpointCircuit.shares`), named as the last checkpoint's model names it.
        grown_at: Positions of the checkpoints that follow a growth step.
    """

    steps: list[int]
    site: str
    pairs: int
    example: list[str]
    at: list[CheckpointCircuit]
    floor: NoiseFloor
    drift: dict[str, list[float]]
    exact_in_final_names: list[dict[str, float]]
    grown_at: list[int]

    def __post_init__(self) -> None:
        if isinstance(self.site, Site):
            object.__setattr__(self, "site", self.site.name)
        Site.parse(self.site)  # refuses a name that is no site
        n = len(self.steps)
        lengths = {"at": len(self.at), "exact_in_final_names": len(self.exact_in_final_names)}
        lengths |= {f"drift[{k!r}]": len(v) for k, v in self.drift.items()}
        wrong = {k: m for k, m in lengths.items() if m != n}
        if not n or wrong:
            raise ValueError(f"circuits result: {n} steps, but per-checkpoint lengths {wrong}")

    @property
    def end(self) -> int:
        """Position of the last checkpoint."""
        return len(self.steps) - 1

    @property
    def site_name(self) -> str:
        """The reporter's site, canonical (``blocks.L.hook_KIND``)."""
        return Site.parse(self.site).name

    @property
    def last_growth(self) -> int:
        """Position of the last growth step (0 without one): from here on every checkpoint has the last
        one's components."""
        return self.grown_at[-1] if self.grown_at else 0

    @property
    def labels(self) -> list[str]:
        """A label per checkpoint: its step, marked "(small)" before the last growth step."""
        return [f"{t} (small)" if i < self.last_growth else str(t) for i, t in enumerate(self.steps)]

    def similarity(self, measure: str = "jaccard", *, to: str = "first") -> list[float]:
        """Per checkpoint, the ``jaccard`` or ``weighted_jaccard`` similarity of its circuit to the
        ``first`` checkpoint's or to the ``prev`` (previous) one's."""
        if measure not in _SIMILARITIES or to not in _TO:
            raise ValueError(f"similarity({measure!r}, to={to!r}); measures: {_SIMILARITIES}, to: {_TO}")
        return self.drift[f"{measure}_{to}"]

    @property
    def change_rate(self) -> list[float]:
        """The EWMA change rate of the consecutive weighted Jaccard, per checkpoint."""
        return self.drift["ewma_change"]

    @property
    def final_components(self) -> list[str]:
        """The last checkpoint's components, in its order."""
        return list(self.exact_in_final_names[-1])

    def share_series(self, component: str) -> list[float]:
        """``component``'s share of the gap per checkpoint, in the last checkpoint's names (NaN where the
        model has no such component)."""
        return [a.get(component, math.nan) for a in self.exact_in_final_names]

    def to_dict(self) -> dict:
        """The ``circuits`` stage's JSON data (``metrics.json`` holds the same keys, in field order)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CircuitTrajectory":
        """The result from :meth:`to_dict`'s data (other keys, e.g. a run's ``fine_tune``, aside)."""
        kw = _kwargs(cls, data, "circuits data")
        for key, kind in _CONTAINERS.items():
            if not isinstance(kw[key], kind):
                raise ValueError(f"circuits data: {key!r} must be a {kind.__name__}; got {type(kw[key]).__name__}")
        kw["at"] = [
            CheckpointCircuit(**_kwargs(CheckpointCircuit, a, f"circuits data 'at'[{i}]"))
            for i, a in enumerate(kw["at"])
        ]
        kw["floor"] = NoiseFloor(**_kwargs(NoiseFloor, kw["floor"], "circuits data 'floor'"))
        return cls(**kw)

    def save(self, path: str | Path) -> Path:
        """One checksummed JSON file, written atomically."""
        return save_result(path, _KIND, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "CircuitTrajectory":
        """A saved result, verified (kind, format, checksum, every field, each checkpoint's fields)."""
        payload = load_result(path, _KIND, [f.name for f in fields(cls)])
        try:
            return cls.from_dict(payload)
        except (TypeError, ValueError) as e:  # TypeError: a value of the wrong JSON type
            raise ValueError(f"{path}: {e}") from None
