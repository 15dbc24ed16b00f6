"""`Trajectory`: an ordered list of model checkpoints (training steps) that drift analyses walk along.

A trajectory is either written by :func:`elk_lens.train.fine_tune` (a base model spec plus one
weights file per checkpoint, loaded onto the base architecture) or assembled from checkpoints that
already exist: local model directories, or hub revisions such as Pythia's ``step{N}``. A model that
grows mid-run joins two trajectories (:meth:`Trajectory.join`): the first checkpoint after the growth
records the `GrowthMap` from the architecture before it, and :meth:`Trajectory.growth_map` composes
the maps between any two checkpoints.
"""

import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from safetensors.torch import load_file
from transformer_lens.model_bridge import TransformerBridge

from elk_lens.models import load_model

__all__ = ["Checkpoint", "Trajectory"]

TRAJECTORY_FILE = "trajectory.json"


@dataclass(frozen=True)
class Checkpoint:
    """One point of a trajectory: its training step and where its weights come from.

    Either ``spec`` (+ ``revision``), loaded with :func:`load_model`, or ``weights``: a safetensors
    state dict loaded onto ``base`` (default: the trajectory's base model). ``growth``: the directory of
    the `GrowthMap` from the previous checkpoint's architecture to this one's, where the model grew.
    """

    step: int
    spec: str | None = None
    revision: str | None = None
    weights: str | None = None
    base: str | None = None
    growth: str | None = None


@dataclass
class Trajectory:
    """Checkpoints in step order; ``model_at(i)`` loads checkpoint ``i`` as a TransformerBridge."""

    checkpoints: list[Checkpoint]
    base_spec: str | None = None
    root: Path | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.checkpoints:
            raise ValueError("a trajectory needs at least one checkpoint")
        steps = [c.step for c in self.checkpoints]
        for before, c in zip(self.checkpoints, self.checkpoints[1:], strict=False):
            if c.step < before.step or (c.step == before.step and c.growth is None):
                raise ValueError(f"checkpoint steps must be strictly increasing (equal only at a growth step), "
                                 f"got {steps}")  # fmt: skip
        if any(c.weights is not None and c.base is None for c in self.checkpoints) and self.base_spec is None:
            raise ValueError("checkpoints given as weights files need the trajectory's base_spec to load onto")

    def __len__(self) -> int:
        return len(self.checkpoints)

    @property
    def steps(self) -> list[int]:
        return [c.step for c in self.checkpoints]

    def model_at(self, i: int, **load_kwargs) -> TransformerBridge:
        """Checkpoint ``i`` as a model (eval mode). Weights files must match the base architecture."""
        c = self.checkpoints[i]
        if c.weights is None:
            return load_model(c.spec, revision=c.revision, **load_kwargs)
        path = Path(c.weights) if self.root is None else self.root / c.weights
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {i} (step {c.step}): weights file {path} is missing")
        model = load_model(self._path(c.base) if c.base is not None else self.base_spec, **load_kwargs)
        state = load_file(str(path))
        own = model.state_dict()
        if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
            raise ValueError(
                f"checkpoint {i} (step {c.step}) does not fit the base model {self.base_spec}: a different "
                f"architecture (a grown model needs a growth map, not a plain trajectory)"
            )
        model.load_state_dict(state, strict=True)
        return model.eval()

    def _path(self, name: str) -> str:
        """A path stored relative to the trajectory's root, as a spec load_model can read."""
        return str(Path(name) if self.root is None else self.root / name)

    def growth_map(self, i: int, j: int):
        """The composed growth map from checkpoint ``i``'s architecture to checkpoint ``j``'s, or None if
        the model did not grow in between. Training between the growths is skipped over (the map is
        structural: which coordinates, blocks and heads correspond), so it is exact only at a growth step
        itself; ``exact`` says so."""
        from elk_lens.growth import GrowthMap

        if not 0 <= i <= j < len(self):
            raise ValueError(f"need 0 <= i <= j < {len(self)}, got i={i}, j={j}")
        composed = None
        for k in range(i + 1, j + 1):
            c = self.checkpoints[k]
            if c.growth is not None:
                step = GrowthMap.load(self._path(c.growth))
                composed = step if composed is None else composed.then(step, across_training=True)
        if composed is not None and self.checkpoints[i].step != self.checkpoints[j].step:  # trained in between
            composed = dataclasses.replace(composed, exact=False)
        return composed

    @classmethod
    def join(cls, before: "Trajectory", growth: str | Path, after: "Trajectory") -> "Trajectory":
        """``before``, then ``after`` (the grown model trained on), its steps continuing from ``before``'s last
        step; ``growth`` is the saved `GrowthMap` from ``before``'s last architecture to ``after``'s."""

        def absolute(t: "Trajectory", c: Checkpoint, offset: int) -> Checkpoint:
            weights = None if c.weights is None else t._path(c.weights)
            base = t._path(c.base) if c.base is not None else (t.base_spec if c.weights is not None else None)
            return Checkpoint(c.step + offset, c.spec, c.revision, weights, base,
                              None if c.growth is None else t._path(c.growth))  # fmt: skip

        last = before.checkpoints[-1].step
        first = [absolute(before, c, 0) for c in before.checkpoints]
        rest = [absolute(after, c, last) for c in after.checkpoints]
        rest[0] = Checkpoint(rest[0].step, rest[0].spec, rest[0].revision, rest[0].weights, rest[0].base,
                             str(Path(growth).resolve()))  # fmt: skip
        return cls(first + rest, before.base_spec, None, {"joined": [before.info, after.info]})

    def save(self, root: Path) -> Path:
        """Write ``trajectory.json`` (paths of weights files relative to ``root``)."""
        from elk_lens._atomic import atomic_write_text

        meta = {"base_spec": self.base_spec, "info": self.info,
                "checkpoints": [c.__dict__ for c in self.checkpoints]}  # fmt: skip
        atomic_write_text(Path(root) / TRAJECTORY_FILE, json.dumps(meta, indent=2))
        return Path(root)

    @classmethod
    def load(cls, root: str | Path) -> "Trajectory":
        root = Path(root)
        if not (root / TRAJECTORY_FILE).is_file():
            raise FileNotFoundError(f"{root} holds no {TRAJECTORY_FILE} (write one with elk_lens.train.fine_tune)")
        meta = json.loads((root / TRAJECTORY_FILE).read_text())
        return cls([Checkpoint(**c) for c in meta["checkpoints"]], meta["base_spec"], root, meta.get("info", {}))

    @classmethod
    def from_dirs(cls, dirs: Sequence[str | Path], steps: Sequence[int] | None = None) -> "Trajectory":
        """Existing model directories, one per checkpoint; steps default to a number in each name."""
        paths = [Path(d) for d in dirs]
        for p in paths:
            if not p.is_dir():
                raise FileNotFoundError(f"checkpoint directory {p} does not exist")
        if steps is None:
            found = [re.findall(r"\d+", p.name) for p in paths]
            if not all(found):
                raise ValueError("pass steps=...: not every directory name holds a step number")
            steps = [int(f[-1]) for f in found]
        return cls([Checkpoint(int(s), spec=str(p.resolve())) for s, p in zip(steps, paths, strict=True)])

    @classmethod
    def from_revisions(cls, name: str, revisions: Sequence[str]) -> "Trajectory":
        """Hub revisions of one model, e.g. Pythia's ``["step1000", "step2000"]`` (steps read from the names)."""
        steps = []
        for r in revisions:
            m = re.fullmatch(r"step(\d+)", r)
            if m is None:
                raise ValueError(f"revision {r!r} is not of the form 'step<N>'; build Checkpoint(...) objects instead")
            steps.append(int(m.group(1)))
        return cls([Checkpoint(s, spec=name, revision=r) for s, r in zip(steps, revisions, strict=True)])
