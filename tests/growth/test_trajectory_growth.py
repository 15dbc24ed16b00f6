"""A trajectory that grows mid-run: joined segments load their own architectures, and the growth maps
between checkpoints compose (exact at the growth step, structural across training)."""

import pytest
import torch
from conftest import boot_native

from elk_lens.data.statements import StatementSet
from elk_lens.growth import insert_blocks, widen_d_model
from elk_lens.models import load_model, save_model
from elk_lens.train import FineTuneConfig, fine_tune
from elk_lens.trajectory import Checkpoint, Trajectory

TEXTS = [f"{a} plus {b} is {a + b}." for a in range(6) for b in range(6)]
CONFIG = FineTuneConfig(steps=2, lr=3e-3, warmup=1, batch_size=8, answers=("y", "n"), checkpoints=(0, 2))


def _segment(model, spec, out):
    truth = torch.tensor([i % 3 == 0 for i in range(len(TEXTS))])
    return fine_tune(model, StatementSet(TEXTS, truth), truth, out, base_spec=spec, config=CONFIG)


@pytest.fixture(scope="module")
def joined(tmp_path_factory, char_tok_dir):
    root = tmp_path_factory.mktemp("grown_run")
    save_model(boot_native(char_tok_dir), root / "small")
    small = load_model(str(root / "small"))
    before = _segment(small, str(root / "small"), root / "before")
    grown, growth = widen_d_model(small, 48)  # small is now the trained step-2 model
    save_model(grown, root / "wide")
    growth.save(root / "map1")
    middle = _segment(grown, str(root / "wide"), root / "middle")
    deeper, growth2 = insert_blocks(grown, [1])
    save_model(deeper, root / "deep")
    growth2.save(root / "map2")
    after = _segment(deeper, str(root / "deep"), root / "after")
    return Trajectory.join(Trajectory.join(before, root / "map1", middle), root / "map2", after), growth, growth2


def test_steps_continue_and_each_checkpoint_loads_its_own_architecture(joined):
    traj, _, _ = joined
    assert traj.steps == [0, 2, 2, 4, 4, 6]
    shapes = [(m.cfg.d_model, m.cfg.n_layers) for m in (traj.model_at(i) for i in range(len(traj)))]
    assert shapes == [(32, 2), (32, 2), (48, 2), (48, 2), (48, 3), (48, 3)]


def test_growth_maps_compose_exact_at_the_step_and_structural_across_training(joined):
    traj, growth, growth2 = joined
    at_step = traj.growth_map(1, 2)
    assert at_step.exact and torch.equal(at_step.P, growth.P)
    assert traj.growth_map(0, 1) is None
    whole = traj.growth_map(0, 5)
    assert not whole.exact and whole.ops == (*growth.ops, "trained", *growth2.ops)
    assert torch.equal(whole.P, growth2.P.double() @ growth.P.double())
    assert whole.layers == (0, 2)  # old block 1 sits behind the block inserted before it
    assert not traj.growth_map(1, 3).exact  # the growth, then training on the grown model


def test_equal_steps_need_a_growth_and_indices_are_checked(joined):
    traj, _, _ = joined
    with pytest.raises(ValueError, match="equal only at a growth step"):
        Trajectory([Checkpoint(0, spec="a"), Checkpoint(0, spec="b")])
    with pytest.raises(ValueError, match="need 0 <= i <= j"):
        traj.growth_map(3, 1)
