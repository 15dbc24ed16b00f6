"""Walking a trajectory: identical checkpoints show no drift; the transfer diagonal is the refit AUROC."""

import dataclasses
import json

import pytest
import torch
from conftest import boot_native

from elk_lens.data.statements import StatementSet
from elk_lens.drift_result import DriftResult
from elk_lens.drift_study import trajectory_drift
from elk_lens.models import save_model
from elk_lens.sites import Site
from elk_lens.train import FineTuneConfig, fine_tune
from elk_lens.trajectory import Checkpoint, Trajectory

ANSWERS = ("y", "n")
ROUNDING = 1.5e-4  # reported AUROCs are rounded to 4 places
SITES = ["blocks.1.hook_resid_pre", "blocks.1.hook_resid_post"]
TEXTS = [f"{a} plus {b} is {c}." for a in range(8) for b in range(8) for c in (a + b, a + b + 1)]


def _sets():
    truth = torch.tensor([int(t.split(" is ")[1][:-1]) == int(t[0]) + int(t.split(" plus ")[1][0]) for t in TEXTS])
    data = StatementSet(TEXTS, truth)
    held_out = torch.tensor([b % 2 == 1 for a in range(8) for b in range(8) for _ in range(2)])  # odd b: held out
    return data.subset(~held_out.numpy()), {"held_out": data.subset(held_out.numpy())}


@pytest.fixture(scope="module")
def base(tmp_path_factory, char_tok_dir):
    path = tmp_path_factory.mktemp("drift") / "base"
    save_model(boot_native(char_tok_dir), path)
    return path


def test_identical_checkpoints_show_no_drift(base):
    train, evals = _sets()
    traj = Trajectory([Checkpoint(0, spec=str(base)), Checkpoint(5, spec=str(base))])
    out = trajectory_drift(traj, train, evals, SITES, answers=ANSWERS, floor_resamples=3)
    for site in SITES:
        assert out.cos_v[site]["to_first"] == [1.0, 1.0]
        assert out.cka_to_first[site] == pytest.approx([1.0, 1.0], abs=1e-9)
        assert out.procrustes_to_first[site] == pytest.approx([0.0, 0.0], abs=1e-9)
        for method in out.methods:
            assert out.auroc_initial[method][site]["held_out"] == out.auroc_refit[method][site]["held_out"]
            assert out.cos_w[method][site]["to_first"] == pytest.approx([1.0, 1.0], abs=1e-9)


def test_transfer_diagonal_equals_the_refit_auroc_along_a_real_fine_tune(base, tmp_path):
    train, evals = _sets()
    from elk_lens.models import load_model

    config = FineTuneConfig(steps=4, lr=1e-2, warmup=1, batch_size=16, answers=ANSWERS, lm_loss_weight=0.5)
    traj = fine_tune(load_model(str(base)), train, train.truth, tmp_path / "run", base_spec=str(base), config=config)
    out = trajectory_drift(traj, train, evals, SITES, answers=ANSWERS, floor_resamples=3)
    assert out.steps == traj.steps
    for method in out.methods:
        for site in SITES:
            matrix = out.transfer[method][site]
            diagonal = [round(matrix[t][t], 4) for t in range(len(matrix))]
            # both sides are rounded to 4 places from float64 AUROCs computed two ways: one rounding step apart
            assert diagonal == pytest.approx(out.auroc_refit[method][site]["held_out"], abs=ROUNDING)
            row0 = [round(v, 4) for v in matrix[0]]
            assert row0 == pytest.approx(out.auroc_initial[method][site]["held_out"], abs=ROUNDING)
    assert out.cka_to_first[SITES[0]][-1] < 1.0  # the model did move


def test_bad_arguments_are_clear_errors(base):
    train, evals = _sets()
    traj = Trajectory([Checkpoint(0, spec=str(base))])
    with pytest.raises(ValueError, match="statement reporters without polarity"):
        trajectory_drift(traj, train, evals, SITES, methods=("ccs",), answers=ANSWERS)
    with pytest.raises(ValueError, match="is not one of the evaluation sets"):
        trajectory_drift(traj, train, evals, SITES, transfer_eval="nope", answers=ANSWERS)


def test_checkpoints_of_another_architecture_are_refused(base, tmp_path, char_tok_dir):
    wide = tmp_path / "wide"
    save_model(boot_native(char_tok_dir, d_model=48), wide)
    train, evals = _sets()
    traj = Trajectory([Checkpoint(0, spec=str(base)), Checkpoint(1, spec=str(wide))])
    with pytest.raises(ValueError, match="only through a growth map"):
        trajectory_drift(traj, train, evals, SITES, answers=ANSWERS)


def test_a_fixed_reporter_is_scored_at_every_checkpoint(base, tmp_path):
    """The step-0 refit passed as a fixed reporter scores as the initial reporter does, and its readout's
    cosine to the step-0 refit is 1."""
    from elk_lens.capturing import capture
    from elk_lens.models import load_model
    from elk_lens.reporters import fit_logistic

    train, evals = _sets()
    site = SITES[1]
    fixed = fit_logistic(capture(load_model(str(base)), train, [site]).at(0), train.truth, site=site)
    config = FineTuneConfig(steps=4, lr=1e-2, warmup=1, batch_size=16, answers=ANSWERS, lm_loss_weight=0.5)
    traj = fine_tune(load_model(str(base)), train, train.truth, tmp_path / "run", base_spec=str(base), config=config)
    out = trajectory_drift(
        traj,
        train,
        evals,
        SITES,
        methods=("logistic",),
        answers=ANSWERS,
        floor_resamples=3,
        fixed={"from step 0": fixed},
    )
    assert out.auroc_fixed["from step 0"]["held_out"] == out.auroc_initial["logistic"][site]["held_out"]
    cos = out.cos_fixed_refit["from step 0"]["logistic"]
    assert cos[0] == pytest.approx(1.0, abs=1e-9) and len(cos) == len(traj)
    assert out.cos_v_fixed_refit["from step 0"][0] == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="not among the drift sites"):
        trajectory_drift(traj, train, evals, SITES[:1], answers=ANSWERS, fixed={"x": fixed})


def test_the_result_saves_loads_and_looks_up_sites_by_any_name(base, tmp_path):
    train, evals = _sets()
    traj = Trajectory([Checkpoint(0, spec=str(base)), Checkpoint(5, spec=str(base))])
    out = trajectory_drift(traj, train, evals, [Site(1, "resid_post")], answers=ANSWERS, floor_resamples=3)
    assert out.sites == ["blocks.1.hook_resid_post"]  # stored canonical
    site = out.sites[0]
    assert out.auroc("logistic", "resid_post.1", "held_out") == out.auroc_refit["logistic"][site]["held_out"]
    assert out.cos_v_series(Site(1, "resid_post")) == out.cos_v[site]["to_first"]
    assert out.floor("cos_w", site, "logistic") == out.floors["cos_w"]["logistic"][site]
    with pytest.raises(KeyError, match="was not walked"):
        out.cka("blocks.1.hook_resid_pre")
    path = out.save(tmp_path / "drift.json")
    assert json.dumps(DriftResult.load(path).to_dict()) == json.dumps(out.to_dict())  # NaN != NaN: compare text
    path.write_text(path.read_text().replace('"steps": [', '"steps": [7, '))
    with pytest.raises(ValueError, match="fails its checksum"):
        DriftResult.load(path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.steps = []  # type: ignore[misc]
