"""`Trajectory`: an ordered list of model checkpoints (training steps) that drift analyses walk along.

A trajectory is either written by :func:`elk_lens.train.fine_tune` (a base model spec plus one
weights file per checkpoint, loaded onto the base architecture) or assembled from checkpoints that
already exist: local model directories, or hub revisions such as Pythia's ``step{N}``.
"""

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
    state dict loaded onto the trajectory's base model.
    """

    step: int
    spec: str | None = None
    revision: str | None = None
    weights: str | None = None


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
        if steps != sorted(set(steps)):
            raise ValueError(f"checkpoint steps must be strictly increasing, got {steps}")
        if any(c.weights is not None for c in self.checkpoints) and self.base_spec is None:
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
        model = load_model(self.base_spec, **load_kwargs)
        state = load_file(str(path))
        own = model.state_dict()
        if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
            raise ValueError(
                f"checkpoint {i} (step {c.step}) does not fit the base model {self.base_spec}: a different "
                f"architecture (a grown model needs a growth map, not a plain trajectory)"
            )
        model.load_state_dict(state, strict=True)
        return model.eval()

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
