"""Bad inputs to trajectories: damaged checkpoints and trajectory files, paths that leave the trajectory's
directory, and checkpoints that cannot be put in order.

A damaged file is named in the error with the checkpoint's index and step; a truncated checkpoint that
did not is the battery's finding (issue 13).
"""

import json
from pathlib import Path

import torch
from conftest import boot_native

from bad_inputs import Case, Env
from elk_lens.data.statements import StatementSet
from elk_lens.drift_study import trajectory_drift
from elk_lens.models import save_model
from elk_lens.train import FineTuneConfig, fine_tune
from elk_lens.trajectory import Checkpoint, Trajectory

TEXTS = [f"{a} plus {b} is {a + b}." for a in range(3) for b in range(3)]
TRUTH = torch.tensor([i % 3 == 0 for i in range(len(TEXTS))])
CONFIG = FineTuneConfig(steps=2, lr=3e-3, warmup=1, batch_size=4, answers=("y", "n"), checkpoints=(0, 2))


def _trained(env: Env) -> Path:
    """A two-checkpoint trajectory (steps 0 and 2) on a saved tiny base model."""
    base, out = env.tmp / "base", env.tmp / "run"
    save_model(boot_native(env.tok_dir), base)
    fine_tune(boot_native(env.tok_dir), StatementSet(TEXTS, TRUTH), TRUTH, out, base_spec=str(base), config=CONFIG)
    return out


def _truncated_checkpoint(env: Env):
    out = _trained(env)
    data = (out / "step_2.safetensors").read_bytes()
    (out / "step_2.safetensors").write_bytes(data[: len(data) // 2])
    Trajectory.load(out).model_at(1)


def _changed_checkpoint(env: Env):
    """Weights swapped after saving (a file of the right size and format): its recorded checksum refuses it."""
    out = _trained(env)
    (out / "step_2.safetensors").write_bytes((out / "step_0.safetensors").read_bytes())
    Trajectory.load(out).model_at(1)


def _edit_json(env: Env, edit) -> Trajectory:
    """A trajectory.json written by hand: ``edit(meta)`` changes a valid one."""
    meta = {"base_spec": "base", "info": {}, "checkpoints": [{"step": 0, "weights": "step_0.safetensors"}]}
    edit(meta)
    (env.tmp / "trajectory.json").write_text(json.dumps(meta))
    return Trajectory.load(env.tmp)


def _set_checkpoint(key: str, value):
    return lambda meta: meta["checkpoints"][0].__setitem__(key, value)


def _drift(**changes):
    """trajectory_drift with one argument changed; the checkpoint is never loaded (the checks come first)."""
    data = StatementSet(TEXTS, TRUTH)
    kwargs = dict(
        trajectory=Trajectory([Checkpoint(0, spec="never-loaded")]),
        train=data,
        evals={"eval": data},
        sites=["blocks.1.hook_resid_pre"],
        answers=("y", "n"),
    )
    return trajectory_drift(**{**kwargs, **changes})


def _not_json(env: Env):
    (env.tmp / "trajectory.json").write_text('{"base_spec": "base", "checkpoints": [{"step": 0, "weig')
    Trajectory.load(env.tmp)


CASES = [
    Case(
        "trajectories/truncated-checkpoint-names-the-file",
        _truncated_checkpoint,
        error=ValueError,
        match=r"checkpoint 1 \(step 2\).*step_2\.safetensors",
        finding=True,
    ),
    Case(
        "trajectories/changed-checkpoint-fails-its-checksum",
        _changed_checkpoint,
        error=ValueError,
        match=r"checkpoint 1 \(step 2\).*step_2\.safetensors.*checksum",
    ),
    Case(
        "trajectories/trajectory-json-not-json",
        _not_json,
        error=ValueError,
        match=r"trajectory\.json is not valid JSON",
    ),
    Case(
        "trajectories/trajectory-json-missing-checkpoints",
        lambda env: _edit_json(env, lambda m: m.pop("checkpoints")),
        error=ValueError,
        match=r"trajectory\.json is missing \['checkpoints'\]",
    ),
    Case(
        "trajectories/checkpoint-with-an-unknown-key",
        lambda env: _edit_json(env, _set_checkpoint("wieghts", "x")),
        error=ValueError,
        match=r"trajectory\.json: checkpoint 0 has unknown keys \['wieghts'\].*valid",
    ),
    Case(
        "trajectories/checkpoint-step-not-an-int",
        lambda env: _edit_json(env, _set_checkpoint("step", "2")),
        error=ValueError,
        match=r"trajectory\.json: checkpoint 0.*step must be an int; got '2'",
    ),
    Case(
        "trajectories/weights-path-escapes-the-directory",
        lambda env: _edit_json(env, _set_checkpoint("weights", "../../elsewhere/w.safetensors")),
        error=ValueError,
        match=r"checkpoint 0 \(step 0\): weights '\.\./\.\./elsewhere/w\.safetensors' leaves",
    ),
    Case(
        "trajectories/growth-path-escapes-the-directory",
        lambda env: _edit_json(env, _set_checkpoint("growth", "../map")),
        error=ValueError,
        match=r"checkpoint 0 \(step 0\): growth '\.\./map' leaves",
    ),
    Case(
        "trajectories/steps-not-increasing",
        lambda env: Trajectory([Checkpoint(2, spec="x"), Checkpoint(1, spec="y")]),
        error=ValueError,
        match=r"strictly increasing.*\[2, 1\]",
    ),
    Case(
        "trajectories/checkpoint-step-negative",
        lambda env: Checkpoint(-1, spec="x"),
        error=ValueError,
        match=r"Checkpoint\.step must lie in \[0, inf\); got -1",
    ),
    Case(
        "trajectories/checkpoint-without-weights-or-spec",
        lambda env: Checkpoint(3),
        error=ValueError,
        match=r"checkpoint at step 3 needs exactly one of spec .* or weights",
    ),
    Case(
        "trajectories/from-dirs-missing-dir",
        lambda env: Trajectory.from_dirs([env.tmp / "missing_step_3"]),
        error=FileNotFoundError,
        match=r"checkpoint directory .*missing_step_3 does not exist",
    ),
    Case(
        "trajectories/from-dirs-steps-of-another-length",
        lambda env: Trajectory.from_dirs([env.tmp, env.tmp], steps=[1]),
        error=ValueError,
        match=r"steps has 1 entries for 2 directories",
    ),
    Case(
        "trajectories/from-dirs-bare-string",
        lambda env: Trajectory.from_dirs(str(env.tmp)),
        error=TypeError,
        match=r"dirs must be a list of directories.*got a single str",
    ),
    Case(
        "trajectories/drift-sites-bare-string",
        lambda env: _drift(sites="blocks.1.hook_resid_pre"),
        error=TypeError,
        match=r"sites must be a non-empty list of names; got 'blocks\.1\.hook_resid_pre'",
    ),
    Case(
        "trajectories/drift-no-evaluation-sets",
        lambda env: _drift(evals={}),
        error=TypeError,
        match=r"evals must be a non-empty dict of name -> StatementSet; got \{\}",
    ),
    Case(
        "trajectories/drift-one-resample",
        lambda env: _drift(floor_resamples=1),
        error=ValueError,
        match=r"floor_resamples must lie in \[2, inf\); got 1",
    ),
]
