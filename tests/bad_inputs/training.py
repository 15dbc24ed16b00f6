"""Bad inputs to fine-tuning: hyperparameters, labels, anchors, and the training state a rerun resumes from.

Hyperparameters are refused when the config is built and labels before any training step; a training
state is read only as safetensors + JSON, its tensors checked against the SHA-256 in the JSON. The old
pickled state (``.train_state.pt``, and the recipe's ``.<stage>.ckpt``) is never unpickled: a crafted
one could run code (the battery's finding, issue 13), so it is refused with a message, not loaded.
"""

import dataclasses
import json
from pathlib import Path

import torch
from conftest import boot_native

from bad_inputs import Case, Env
from elk_lens.data.statements import StatementSet
from elk_lens.quirky.recipe import QuirkyRecipe, train_quirky
from elk_lens.reporters import Reporter
from elk_lens.token_stream import TokenStream
from elk_lens.train import FineTuneConfig, anchor_to, fine_tune

TEXTS = [f"{a} plus {b} is {a + b}." for a in range(3) for b in range(3)]
TRUTH = torch.tensor([i % 3 == 0 for i in range(len(TEXTS))])
CONFIG = FineTuneConfig(steps=2, lr=3e-3, warmup=1, batch_size=4, answers=("y", "n"), checkpoints=(0, 2))
SITE = "blocks.1.hook_resid_pre"
TINY_RECIPE = dict(
    n_layers=2,
    quirk_frozen_blocks=1,
    d_model=32,
    d_head=8,
    batch_size=8,
    base_max_steps=4,
    base_cooldown=2,
    base_warmup=1,
    eval_every=2,
    eval_rows=16,
    ckpt_every=2,
    threads=1,
    stages=["base"],
)


class _Plant:
    """Pickles to a call of ``open(marker, "w")``: loading it creates ``marker``, as a crafted file could run
    any code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _data() -> StatementSet:
    return StatementSet(TEXTS, TRUTH)


def _train(env: Env, out: Path, labels=TRUTH, config: FineTuneConfig = CONFIG, **kwargs):
    """A two-step fine-tune of a fresh tiny model (the shared one must not change)."""
    return fine_tune(boot_native(env.tok_dir), _data(), labels, out, base_spec="base", config=config, **kwargs)


def _config(**changes) -> FineTuneConfig:
    return dataclasses.replace(CONFIG, **changes)


def _refuses_without_running(run, marker: Path):
    """``run()``, asserting afterwards (error or not) that the planted pickle did not run."""
    try:
        return run()
    finally:
        assert not marker.exists(), f"a pickle was unpickled: {marker} was created"


def _crafted_train_state(env: Env):
    out, marker = env.tmp / "run", env.tmp / "ran"
    out.mkdir()
    torch.save(_Plant(marker), out / ".train_state.pt")
    _refuses_without_running(lambda: _train(env, out), marker)


def _crafted_recipe_checkpoint(env: Env):
    out, marker = env.tmp / "zoo", env.tmp / "ran"
    out.mkdir()
    torch.save(_Plant(marker), out / ".base.ckpt")
    _refuses_without_running(lambda: train_quirky(QuirkyRecipe(**TINY_RECIPE), out, log=lambda m: None), marker)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _state_tensors(out: Path) -> Path:
    """The tensors file of a saved training state (whatever the format wrote beside its JSON)."""
    (path,) = [p for p in out.iterdir() if p.name.startswith(".train_state") and p.suffix != ".json"]
    return path


def _truncated_state(env: Env):
    out = env.tmp / "run"
    _train(env, out)
    _truncate(_state_tensors(out))
    _train(env, out)


def _truncated_state_json(env: Env):
    out = env.tmp / "run"
    _train(env, out)
    _truncate(out / ".train_state.json")
    _train(env, out)


def _state_json_escapes(env: Env):
    """A state JSON naming a tensors file outside its directory is refused before the file is opened."""
    out = env.tmp / "run"
    _train(env, out)
    meta = json.loads((out / ".train_state.json").read_text())
    meta["tensors"] = "../elsewhere.safetensors"
    (out / ".train_state.json").write_text(json.dumps(meta))
    _train(env, out)


def _mismatched_state_pair(env: Env):
    """The tensors of another run beside this run's JSON: the JSON's checksum refuses them."""
    out, other = env.tmp / "run", env.tmp / "other"
    _train(env, out)
    _train(env, other, config=_config(seed=1))
    _state_tensors(out).write_bytes(_state_tensors(other).read_bytes())
    _train(env, out)


def _statement_reporter(env: Env, width: int | None = None) -> Reporter:
    w = torch.ones(width or env.model.cfg.d_model, dtype=torch.float64)
    return Reporter(w, 0.0, w.clone(), "logistic", SITE)


CASES = [
    Case(
        "training/crafted-pickle-state-is-never-unpickled",
        _crafted_train_state,
        error=ValueError,
        match=r"\.train_state\.pt.*old pickle format.*new directory",
        finding=True,
    ),
    Case(
        "training/crafted-pickle-recipe-checkpoint-is-never-unpickled",
        _crafted_recipe_checkpoint,
        error=ValueError,
        match=r"\.base\.ckpt.*old pickle format",
        finding=True,
    ),
    Case(
        "training/truncated-state-names-the-file",
        _truncated_state,
        error=ValueError,
        match=r"\.train_state\.[0-9a-f]+\.safetensors.*checksum",
        finding=True,
    ),
    Case(
        "training/truncated-state-json-names-the-file",
        _truncated_state_json,
        error=ValueError,
        match=r"\.train_state\.json.*not valid JSON",
    ),
    Case(
        "training/state-tensors-path-escapes-the-directory",
        _state_json_escapes,
        error=ValueError,
        match=r"\.train_state\.json.*'\.\./elsewhere\.safetensors'.*not a tensors file",
    ),
    Case(
        "training/state-of-another-run-fails-its-checksum",
        _mismatched_state_pair,
        error=ValueError,
        match=r"\.train_state\.[0-9a-f]+\.safetensors.*checksum",
    ),
    Case(
        "training/lr-zero",
        lambda env: _config(lr=0.0),
        error=ValueError,
        match=r"FineTuneConfig\.lr must lie in \(0, inf\); got 0\.0",
    ),
    Case(
        "training/lr-nan",
        lambda env: _config(lr=float("nan")),
        error=ValueError,
        match=r"FineTuneConfig\.lr must be finite; got nan",
    ),
    Case(
        "training/steps-zero",
        lambda env: _config(steps=0, checkpoints=None),
        error=ValueError,
        match=r"FineTuneConfig\.steps must lie in \[1, inf\); got 0",
    ),
    Case(
        "training/steps-float",
        lambda env: _config(steps=2.5, checkpoints=None),
        error=TypeError,
        match=r"FineTuneConfig\.steps must be an int; got 2\.5",
    ),
    Case(
        "training/batch-size-zero",
        lambda env: _config(batch_size=0),
        error=ValueError,
        match=r"FineTuneConfig\.batch_size must lie in \[1, inf\); got 0",
    ),
    Case(
        "training/warmup-negative",
        lambda env: _config(warmup=-1),
        error=ValueError,
        match=r"FineTuneConfig\.warmup must lie in \[0, inf\); got -1",
    ),
    Case(
        "training/weight-decay-negative",
        lambda env: _config(weight_decay=-0.1),
        error=ValueError,
        match=r"FineTuneConfig\.weight_decay must lie in \[0, inf\); got -0\.1",
    ),
    Case(
        "training/lm-loss-weight-negative",
        lambda env: _config(lm_loss_weight=-1.0),
        error=ValueError,
        match=r"FineTuneConfig\.lm_loss_weight must lie in \[0, inf\); got -1\.0",
    ),
    Case(
        "training/seed-negative",
        lambda env: _config(seed=-1),
        error=ValueError,
        match=r"FineTuneConfig\.seed must lie in \[0, inf\); got -1",
    ),
    Case(
        "training/checkpoint-past-the-last-step",
        lambda env: _config(checkpoints=(0, 3)),
        error=ValueError,
        match=r"FineTuneConfig\.checkpoints must be steps in 0\.\.2; got \(0, 3\)",
    ),
    Case(
        "training/frozen-bare-string",
        lambda env: _config(frozen="blocks.0."),
        error=TypeError,
        match=r"FineTuneConfig\.frozen must be a tuple of parameter-name prefixes.*'blocks\.0\.'",
    ),
    Case(
        "training/answers-not-a-pair",
        lambda env: _config(answers=("y",)),
        error=ValueError,
        match=r"FineTuneConfig\.answers must be two different strings \(true, false\); got \('y',\)",
    ),
    Case(
        "training/labels-two",
        lambda env: _train(env, env.tmp / "run", labels=TRUTH.long() * 2),
        error=ValueError,
        match=r"labels must be bool or 0/1; got 2 at index 0",
    ),
    Case(
        "training/labels-wrong-length",
        lambda env: _train(env, env.tmp / "run", labels=TRUTH[:3]),
        error=ValueError,
        match=r"one label per statement: 3 labels for 9 statements",
    ),
    Case(
        "training/labels-with-a-token-stream",
        lambda env: fine_tune(
            boot_native(env.tok_dir),
            TokenStream.from_texts(env.model, TEXTS),
            TRUTH,
            env.tmp / "run",
            base_spec="base",
            config=CONFIG,
        ),
        error=ValueError,
        match=r"token stream trains on its next tokens: pass labels=None",
    ),
    Case(
        "training/anchor-weight-negative",
        lambda env: anchor_to(env.model, _data(), _statement_reporter(env), weight=-1.0),
        error=ValueError,
        match=r"anchor weight must lie in \[0, inf\); got -1\.0",
    ),
    Case(
        "training/anchor-rows-wrong-length",
        lambda env: anchor_to(env.model, _data(), _statement_reporter(env), rows=[True, False]),
        error=ValueError,
        match=r"anchor rows must be a boolean mask of shape \(9,\), got torch\.bool \(2,\)",
    ),
    Case(
        "training/anchor-reporter-of-another-width",
        lambda env: anchor_to(env.model, _data(), _statement_reporter(env, width=7)),
        error=ValueError,
        match=r"reporter reads d_model=7 but the model's d_model is 32",
    ),
]
