"""`Trajectory`: an ordered list of model checkpoints (training steps) that drift analyses walk along.

A trajectory is either written by :func:`elk_lens.train.fine_tune` (a base model spec plus one
weights file per checkpoint, loaded onto the base architecture) or assembled from checkpoints that
already exist: local model directories, or hub revisions such as Pythia's ``step{N}``. A model that
grows mid-run joins two trajectories (:meth:`Trajectory.join`): the first checkpoint after the growth
records the `GrowthMap` from the architecture before it, and :meth:`Trajectory.growth_map` composes
the maps between any two checkpoints.

``trajectory.json`` is data, checked when read: a damaged file, a missing key or a checkpoint of unknown
keys is an error naming the file (and the checkpoint). Files it names (weights, base, growth) are
relative to its directory and must stay inside it; an absolute path, as :meth:`Trajectory.join` writes
to name each segment's files where they lie, is taken as it is. A weights file is checked against the
SHA-256 :func:`elk_lens.train.fine_tune` recorded for it before it is loaded.
"""

import dataclasses
import json
import numbers
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file
from transformer_lens.model_bridge import TransformerBridge

from elk_lens._atomic import atomic_write_text, sha256_file
from elk_lens._checks import check_number
from elk_lens.models import load_model

__all__ = ["Checkpoint", "Trajectory"]

TRAJECTORY_FILE = "trajectory.json"


@dataclass(frozen=True)
class Checkpoint:
    """One point of a trajectory: its training step and where its weights come from.

    Either ``spec`` (+ ``revision``), loaded with :func:`load_model`, or ``weights``: a safetensors
    state dict loaded onto ``base`` (default: the trajectory's base model), checked against ``sha256``
    where one was recorded. ``growth``: the directory of the `GrowthMap` from the previous checkpoint's
    architecture to this one's, where the model grew.
    """

    step: int
    spec: str | None = None
    revision: str | None = None
    weights: str | None = None
    base: str | None = None
    growth: str | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        check_number("Checkpoint.step", self.step, kind=int, low=0)
        for f in dataclasses.fields(self)[1:]:
            value = getattr(self, f.name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"Checkpoint.{f.name} must be a str or None; got {value!r}")
        if (self.spec is None) == (self.weights is None):
            raise ValueError(
                f"checkpoint at step {self.step} needs exactly one of spec (a model to load) or weights (a "
                f"safetensors file); got spec={self.spec!r}, weights={self.weights!r}"
            )
        if self.spec is not None and (self.base, self.sha256) != (None, None):
            raise ValueError(f"checkpoint at step {self.step}: base and sha256 describe a weights file, not a spec")
        if self.weights is not None and self.revision is not None:
            raise ValueError(f"checkpoint at step {self.step}: a revision applies to a spec, not a weights file")


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
        bad = next((c for c in self.checkpoints if not isinstance(c, Checkpoint)), None)
        if bad is not None:
            raise TypeError(f"a trajectory's checkpoints must be Checkpoint objects; got {type(bad).__name__}")
        if self.base_spec is not None and not isinstance(self.base_spec, str):
            raise TypeError(f"base_spec must be a model spec (str) or None; got {self.base_spec!r}")
        steps = [c.step for c in self.checkpoints]
        for before, c in zip(self.checkpoints, self.checkpoints[1:], strict=False):
            if c.step < before.step or (c.step == before.step and c.growth is None):
                raise ValueError(
                    f"checkpoint steps must be strictly increasing (equal only at a growth step), got {steps}"
                )
        if any(c.weights is not None and c.base is None for c in self.checkpoints) and self.base_spec is None:
            raise ValueError("checkpoints given as weights files need the trajectory's base_spec to load onto")
        if self.root is not None:
            for i, c in enumerate(self.checkpoints):
                for key in ("weights", "base", "growth"):
                    name = getattr(c, key)
                    if name is not None and _leaves(name):
                        raise ValueError(
                            f"checkpoint {i} (step {c.step}): {key} {name!r} leaves the trajectory's directory "
                            f"{self.root}; relative paths in {TRAJECTORY_FILE} must stay inside it"
                        )

    def __len__(self) -> int:
        return len(self.checkpoints)

    @property
    def steps(self) -> list[int]:
        return [c.step for c in self.checkpoints]

    def model_at(self, i: int, **load_kwargs) -> TransformerBridge:
        """Checkpoint ``i`` as a model (eval mode). Weights files must match the base architecture."""
        if not isinstance(i, numbers.Integral) or not -len(self) <= i < len(self):
            raise IndexError(f"checkpoint index {i!r} is out of range: the trajectory has {len(self)} checkpoints")
        c = self.checkpoints[i]
        if c.weights is None:
            return load_model(c.spec, revision=c.revision, **load_kwargs)
        path = Path(self._path(c.weights))
        where = f"checkpoint {i} (step {c.step}): weights file {path}"
        if not path.is_file():
            raise FileNotFoundError(f"{where} is missing")
        if c.sha256 is not None and sha256_file(path) != c.sha256:
            raise ValueError(
                f"{where} fails its checksum (recorded in {TRAJECTORY_FILE}): it was changed or "
                f"damaged after it was saved"
            )
        try:
            state = load_file(str(path))
        except SafetensorError as e:
            raise ValueError(f"{where} is not a readable safetensors file (truncated or damaged?): {e}") from None
        model = load_model(self._path(c.base) if c.base is not None else self.base_spec, **load_kwargs)
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
            growth = None if c.growth is None else t._path(c.growth)
            return dataclasses.replace(c, step=c.step + offset, weights=weights, base=base, growth=growth)

        last = before.checkpoints[-1].step
        first = [absolute(before, c, 0) for c in before.checkpoints]
        rest = [absolute(after, c, last) for c in after.checkpoints]
        rest[0] = dataclasses.replace(rest[0], growth=str(Path(growth).resolve()))
        return cls(first + rest, before.base_spec, None, {"joined": [before.info, after.info]})

    def save(self, root: Path) -> Path:
        """Write ``trajectory.json`` (paths of weights files relative to ``root``)."""
        meta = {"base_spec": self.base_spec, "info": self.info, "checkpoints": [c.__dict__ for c in self.checkpoints]}
        atomic_write_text(Path(root) / TRAJECTORY_FILE, json.dumps(meta, indent=2))
        return Path(root)

    @classmethod
    def load(cls, root: str | Path) -> "Trajectory":
        """The trajectory in ``root``, every part of its ``trajectory.json`` checked (errors name the file)."""
        root = Path(root)
        file = root / TRAJECTORY_FILE
        if not file.is_file():
            raise FileNotFoundError(f"{root} holds no {TRAJECTORY_FILE} (write one with elk_lens.train.fine_tune)")
        try:
            meta = json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{file} is not valid JSON ({e}): the trajectory file is damaged") from None
        layout = "a JSON object with 'base_spec', 'checkpoints' (a list) and 'info' (an object)"
        if not isinstance(meta, dict):
            raise ValueError(f"{file} holds a {type(meta).__name__}; a trajectory file is {layout}")
        missing = [k for k in ("base_spec", "checkpoints") if k not in meta]
        if missing:
            raise ValueError(f"{file} is missing {missing}; a trajectory file is {layout}")
        if not isinstance(meta["checkpoints"], list) or not isinstance(meta.get("info", {}), dict):
            raise ValueError(f"{file} is malformed; a trajectory file is {layout}")
        fields = [f.name for f in dataclasses.fields(Checkpoint)]
        checkpoints = []
        for i, c in enumerate(meta["checkpoints"]):
            unknown = sorted(set(c) - set(fields)) if isinstance(c, dict) else None
            if unknown != []:
                raise ValueError(
                    f"{file}: checkpoint {i} has unknown keys {unknown} or is not an object; valid keys: {fields}"
                )
            try:
                checkpoints.append(Checkpoint(**c))
            except (TypeError, ValueError) as e:
                raise ValueError(f"{file}: checkpoint {i}: {e}") from None
        try:
            return cls(checkpoints, meta["base_spec"], root, meta.get("info", {}))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{file}: {e}") from None

    @classmethod
    def from_dirs(cls, dirs: Sequence[str | Path], steps: Sequence[int] | None = None) -> "Trajectory":
        """Existing model directories, one per checkpoint; steps default to a number in each name."""
        _refuse_single("dirs", dirs, "directories")
        paths = [Path(d) for d in dirs]
        for p in paths:
            if not p.is_dir():
                raise FileNotFoundError(f"checkpoint directory {p} does not exist")
        if steps is None:
            found = [re.findall(r"\d+", p.name) for p in paths]
            if not all(found):
                raise ValueError("pass steps=...: not every directory name holds a step number")
            steps = [int(f[-1]) for f in found]
        steps = list(steps)
        if len(steps) != len(paths):
            raise ValueError(f"steps has {len(steps)} entries for {len(paths)} directories")
        steps = [int(s) if isinstance(s, numbers.Integral) and not isinstance(s, bool) else s for s in steps]
        return cls([Checkpoint(s, spec=str(p.resolve())) for s, p in zip(steps, paths, strict=True)])

    @classmethod
    def from_revisions(cls, name: str, revisions: Sequence[str]) -> "Trajectory":
        """Hub revisions of one model, e.g. Pythia's ``["step1000", "step2000"]`` (steps read from the names)."""
        _refuse_single("revisions", revisions, "revision names")
        steps = []
        for r in revisions:
            m = re.fullmatch(r"step(\d+)", r)
            if m is None:
                raise ValueError(f"revision {r!r} is not of the form 'step<N>'; build Checkpoint(...) objects instead")
            steps.append(int(m.group(1)))
        return cls([Checkpoint(s, spec=name, revision=r) for s, r in zip(steps, revisions, strict=True)])


def _leaves(name: str) -> bool:
    """Whether a relative path goes above the directory it is relative to (``../x``, ``a/../../x``)."""
    return not Path(name).is_absolute() and Path(os.path.normpath(name)).parts[:1] == ("..",)


def _refuse_single(name: str, value: object, what: str) -> None:
    """A list is expected: a bare string (or path) would be read character by character, or not at all."""
    if isinstance(value, (str, bytes, Path)):
        raise TypeError(f"{name} must be a list of {what}; got a single {type(value).__name__} {str(value)!r}")
