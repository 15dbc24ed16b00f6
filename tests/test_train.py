"""Fine-tuning: checkpoints on schedule, resume after a kill reaches the same weights, trajectories load."""

import hashlib
import json

import pytest
import torch
from conftest import boot_native

from elk_lens.data.statements import StatementSet
from elk_lens.models import save_model
from elk_lens.train import FineTuneConfig, checkpoint_steps, fine_tune
from elk_lens.trajectory import Checkpoint, Trajectory

ANSWERS = ("y", "n")  # the char tokenizer's single-character answers
TEXTS = [f"{a} plus {b} is {a + b}." for a in range(6) for b in range(6)]
CONFIG = FineTuneConfig(steps=12, lr=3e-3, warmup=2, batch_size=8, seed=0, answers=ANSWERS, lm_loss_weight=0.5)


class Killed(Exception):
    pass


@pytest.fixture
def base(tmp_path, char_tok_dir):
    path = tmp_path / "base"
    save_model(boot_native(char_tok_dir), path)
    return path


def _data():
    truth = torch.tensor([i % 3 == 0 for i in range(len(TEXTS))])
    return StatementSet(TEXTS, truth), truth


def _load(path):
    from elk_lens.models import load_model

    return load_model(str(path))


def test_checkpoint_steps_are_log_then_linear():
    assert checkpoint_steps(100, n_linear=4) == [0, 1, 2, 4, 8, 16, 25, 50, 75, 100]
    assert checkpoint_steps(3, n_linear=8) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="total steps must be >= 1"):
        checkpoint_steps(0)


def test_fine_tune_writes_a_loadable_trajectory(base, tmp_path):
    data, labels = _data()
    model = _load(base)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    traj = fine_tune(model, data, labels, tmp_path / "run", base_spec=str(base), config=CONFIG)
    assert traj.steps == checkpoint_steps(CONFIG.steps)
    first, last = traj.model_at(0), traj.model_at(len(traj) - 1)
    assert all(torch.equal(first.state_dict()[k], before[k]) for k in before)  # step 0 is the untouched model
    assert all(torch.equal(last.state_dict()[k], model.state_dict()[k]) for k in before)
    assert any(not torch.equal(last.state_dict()[k], before[k]) for k in before)
    assert Trajectory.load(tmp_path / "run").steps == traj.steps


def test_resume_after_a_kill_reaches_the_same_weights(base, tmp_path):
    data, labels = _data()
    reference = _load(base)
    fine_tune(reference, data, labels, tmp_path / "whole", base_spec=str(base), config=CONFIG)

    def kill_at_7(step, loss):
        if step == 7:  # after the step-4 checkpoint, before the step-8 one: steps 5-7 are redone
            raise Killed

    killed = _load(base)
    with pytest.raises(Killed):
        fine_tune(killed, data, labels, tmp_path / "resumed", base_spec=str(base), config=CONFIG, on_step=kill_at_7)
    resumed = _load(base)  # a fresh process would start from the base weights again
    fine_tune(resumed, data, labels, tmp_path / "resumed", base_spec=str(base), config=CONFIG)
    for k, v in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k


def test_same_seed_same_weights_other_seed_differs(base, tmp_path):
    data, labels = _data()
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        model = _load(base)
        cfg = FineTuneConfig(**{**CONFIG.__dict__, "seed": seed})
        fine_tune(model, data, labels, tmp_path / name, base_spec=str(base), config=cfg)
        runs[name] = model.state_dict()
    assert all(torch.equal(runs["a"][k], runs["b"][k]) for k in runs["a"])
    assert any(not torch.equal(runs["a"][k], runs["c"][k]) for k in runs["a"])


def test_frozen_parameters_do_not_move(base, tmp_path):
    data, labels = _data()
    model = _load(base)
    frozen = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("blocks.0.", "embed."))}
    cfg = FineTuneConfig(**{**CONFIG.__dict__, "frozen": ("blocks.0.", "embed.")})
    fine_tune(model, data, labels, tmp_path / "run", base_spec=str(base), config=cfg)
    assert frozen and all(torch.equal(model.state_dict()[k], v) for k, v in frozen.items())
    assert any(not torch.equal(model.state_dict()[k], v) for k, v in _load(base).state_dict().items())


def test_bad_input_is_a_clear_error(base, tmp_path):
    data, labels = _data()
    with pytest.raises(ValueError, match="one label per statement"):
        fine_tune(_load(base), data, labels[:3], tmp_path / "a", base_spec=str(base), config=CONFIG)
    with pytest.raises(ValueError, match="match no parameter"):
        cfg = FineTuneConfig(**{**CONFIG.__dict__, "frozen": ("nonexistent.",)})
        fine_tune(_load(base), data, labels, tmp_path / "b", base_spec=str(base), config=cfg)
    fine_tune(_load(base), data, labels, tmp_path / "c", base_spec=str(base), config=CONFIG)
    other = FineTuneConfig(**{**CONFIG.__dict__, "lr": 1e-2})
    with pytest.raises(ValueError, match="other settings, data or anchor"):
        fine_tune(_load(base), data, labels, tmp_path / "c", base_spec=str(base), config=other)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Trajectory.from_dirs([tmp_path / "missing_step_3"])
    with pytest.raises(ValueError, match="strictly increasing"):
        Trajectory([Checkpoint(2, spec="x"), Checkpoint(1, spec="y")])


def test_an_offloaded_model_is_refused_before_any_work(llama_dir, tmp_path):
    from elk_lens.models import load_model

    model = load_model(str(llama_dir), device_map="auto", max_memory={"cpu": "1KB"}, offload_folder=tmp_path)
    data, labels = _data()
    with pytest.raises(ValueError, match=r"fine_tune trains weights in memory; this model's \['model.embed"):
        fine_tune(model, data, labels, tmp_path / "run", base_spec=str(llama_dir), config=CONFIG)
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_of_another_architecture_is_refused(base, tmp_path, char_tok_dir):
    wide = tmp_path / "wide"
    save_model(boot_native(char_tok_dir, d_model=48), wide)
    from safetensors.torch import save_file

    model = _load(wide)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    traj = Trajectory([Checkpoint(0, weights="w.safetensors")], base_spec=str(base), root=tmp_path)
    with pytest.raises(ValueError, match="different architecture"):
        traj.model_at(0)


def test_trajectory_from_dirs_and_revisions(base, tmp_path):
    step_dirs = []
    for s in (10, 200):
        d = tmp_path / f"step{s}"
        save_model(_load(base), d)
        step_dirs.append(d)
    traj = Trajectory.from_dirs(step_dirs)
    assert traj.steps == [10, 200] and traj.model_at(1).cfg.d_model == _load(base).cfg.d_model
    revs = Trajectory.from_revisions("EleutherAI/pythia-70m", ["step1000", "step2000"])
    assert revs.steps == [1000, 2000] and revs.checkpoints[0].revision == "step1000"
    with pytest.raises(ValueError, match="step<N>"):
        Trajectory.from_revisions("EleutherAI/pythia-70m", ["main"])


def test_an_hf_model_fine_tunes_and_its_checkpoints_reload(gpt2_dir, tmp_path):
    """A HuggingFace GPT-2 bridge trains through the same path; checkpoints load onto its architecture."""
    data, labels = _data()
    model = _load(gpt2_dir)
    cfg = FineTuneConfig(**{**CONFIG.__dict__, "steps": 3, "frozen": ("blocks.0.",)})
    traj = fine_tune(model, data, labels, tmp_path / "run", base_spec=str(gpt2_dir), config=cfg)
    last = traj.model_at(len(traj) - 1)
    assert all(torch.equal(last.state_dict()[k], v) for k, v in model.state_dict().items())
    base = _load(gpt2_dir).state_dict()
    moved = [k for k, v in model.state_dict().items() if not torch.equal(base[k], v)]
    assert moved and not any(k.startswith("blocks.0.") for k in moved)


def test_a_trajectory_records_checksums_and_reads_absolute_paths_as_join_writes_them(base, tmp_path):
    """fine_tune records each weights file's SHA-256; a trajectory.json naming files by absolute path (as a
    saved `Trajectory.join` does) loads from anywhere, and the checksum still guards the file."""
    data, labels = _data()
    cfg = FineTuneConfig(**{**CONFIG.__dict__, "steps": 2, "checkpoints": (0, 2)})
    traj = fine_tune(_load(base), data, labels, tmp_path / "run", base_spec=str(base), config=cfg)
    for c in traj.checkpoints:
        assert c.sha256 == hashlib.sha256((tmp_path / "run" / c.weights).read_bytes()).hexdigest()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    meta = json.loads((tmp_path / "run" / "trajectory.json").read_text())
    for c in meta["checkpoints"]:
        c["weights"] = str((tmp_path / "run" / c["weights"]).resolve())
    (elsewhere / "trajectory.json").write_text(json.dumps(meta))
    moved = Trajectory.load(elsewhere)
    assert all(torch.equal(moved.model_at(1).state_dict()[k], v) for k, v in traj.model_at(1).state_dict().items())
    (tmp_path / "run" / "step_2.safetensors").write_bytes((tmp_path / "run" / "step_0.safetensors").read_bytes())
    with pytest.raises(ValueError, match=r"checkpoint 1 \(step 2\): weights file .*step_2\.safetensors fails its"):
        moved.model_at(1)
