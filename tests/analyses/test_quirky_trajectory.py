"""The default analysis pointed at a checkpoint of a quirky fine-tune (``[model] trajectory``), the way the
real-LM quirky study reads its LoRA model (``analyses/smollm2_quirky.toml``); here a two-step LoRA run of
the toy base model, so the whole protocol runs in seconds."""

import json

import pytest
import torch
from tiny_specs import QUIRKY_SPEC

from elk_lens.lora import LoraConfig
from elk_lens.models import fingerprint, load_model
from elk_lens.quirky import quirky_arithmetic
from elk_lens.runner import load_spec, run_analysis
from elk_lens.train import FineTuneConfig, fine_tune
from elk_lens.trajectory import Trajectory

BASE = "zoo:quirky-arith-base"


@pytest.fixture(scope="module")
def trajectory(tmp_path_factory):
    out = tmp_path_factory.mktemp("quirky_lora") / "trajectory"
    train = quirky_arithmetic(200, split="train", seed=0)
    config = FineTuneConfig(steps=2, lr=1e-2, warmup=1, batch_size=16, seed=0, checkpoints=(0, 2))
    fine_tune(
        load_model(BASE),
        train,
        torch.as_tensor(train.column("label")),
        out,
        base_spec=BASE,
        config=config,
        lora=LoraConfig(rank=2, targets=("attn.q", "attn.v")),
    )
    return out


def _spec(trajectory, *, base=BASE, checkpoint=-1) -> str:
    """The default analysis's small test spec, pointed at the trajectory's checkpoint, on a third of its rows;
    causal checks at every second site; no real-LM glance."""
    model = f'spec = "{base}"\ntrajectory = "{trajectory}"\ncheckpoint = {checkpoint}\n'
    text = QUIRKY_SPEC.replace('name = "quirky-small"', 'name = "quirky-lora"')
    text = text.replace('spec = "zoo:quirky-arith"\n', model).replace("n_random = 2\n", "n_random = 2\nevery = 2\n")
    # fewer rows than the shared spec: this test asks which model was read, not what it knows
    for key, rows in (("train_rows", 1500), ("test_rows", 400), ("test_rows", 300)):
        text = text.replace(f"{key} = {rows}\n", f"{key} = {rows // 3}\n")
    return text + '[real_lm]\nspec = ""\n'


def test_the_analysis_reads_the_trajectorys_checkpoint(tmp_path, trajectory):
    spec = tmp_path / "spec.toml"
    spec.write_text(_spec(trajectory))
    run = run_analysis(spec, runs_root=tmp_path / "runs")
    metrics = json.loads((run / "metrics.json").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    last = Trajectory.load(trajectory).model_at(-1)
    assert manifest["fingerprints"]["model"] == fingerprint(last) != fingerprint(load_model(BASE))
    assert manifest["trajectory"] == manifest["settings"]["model.trajectory"] == str(trajectory)
    assert "fine-tuned (" in (run / "report.html").read_text() and "step 2)" in (run / "report.html").read_text()
    # causal checks at every second site past the embedding, and the last
    sites = {r["site"] for r in metrics["causal"]["rows"]}
    assert sites == {"blocks.1.hook_resid_pre", "blocks.3.hook_resid_pre", "blocks.3.hook_resid_post"}


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"checkpoint": 2}, r"'model.checkpoint' = 2 is out of range: trajectory .* has 2 checkpoints"),
        ({"base": "zoo:quirky-arith"}, r"'model.spec' = 'zoo:quirky-arith', but trajectory .* was fine-tuned from "),
    ],
)
def test_a_trajectory_that_does_not_fit_is_refused_before_any_work(tmp_path, trajectory, change, error):
    spec = tmp_path / "spec.toml"
    spec.write_text(_spec(trajectory, **change))
    with pytest.raises(ValueError, match=error):
        run_analysis(spec, runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_a_missing_trajectory_is_named(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(_spec(tmp_path / "nowhere"))
    with pytest.raises(
        ValueError, match=r"'model.trajectory' = '.*nowhere' cannot be read .*: .* holds no trajectory.json"
    ):
        load_spec(spec)
