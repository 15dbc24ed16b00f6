"""Concept anchoring in fine-tuning: `anchor_to`, `Anchor` and the anchor term `_anchor_loss`.

The anchor adds ``weight * mean((w . h_t - (ref - b))^2) / Var(ref over anchored rows)`` over the
anchored rows of each batch, where ``ref = reporter(h_0)`` is read from the model before training.
Everything runs on the tiny native model of conftest (d_model 32, 2 layers) with the char tokenizer.
"""

import numpy as np
import pytest
import torch
from conftest import boot_native

from elk_lens._hooks import loud_hooks
from elk_lens.capturing import capture, tokenize
from elk_lens.data.statements import StatementSet
from elk_lens.models import load_model, save_model
from elk_lens.reporters import Reporter, fit_logistic
from elk_lens.train import STATE_FILE, FineTuneConfig, _anchor_loss, _rows, anchor_to, fine_tune

ANSWERS = ("y", "n")  # the char tokenizer's single-character answers
SITE = "blocks.1.hook_resid_post"  # the last residual: the answer loss pushes it hardest
# Two templates, interleaved (even rows "plus", odd rows "times"), so that anchoring the even rows
# is a different constraint from anchoring all of them: with one template the reporter's reading moves
# alike on every row, anchored or not (measured, one template, 15 steps, warmup 2: anchored/unanchored
# drift 0.64-1.46 over 4 seeds).
TEXTS = [t for a in range(6) for b in range(3) for t in (f"{a} plus {b} is {a + b}.", f"is {a * b} {a} times {b}?")]
TRUTH = torch.tensor([(i // 2) % 3 == 0 for i in range(len(TEXTS))])
EVEN = torch.arange(len(TEXTS)) % 2 == 0
# warmup 10: the anchor's gradient is zero at step 0, and with a short warmup AdamW's first full-size
# steps overshoot the anchor (at blocks.1.hook_resid_pre, mean-diff reporter, 15 steps, warmup 2, the
# anchored run's final drift was 3.7x the plain run's).
CONFIG = FineTuneConfig(steps=20, lr=3e-3, warmup=10, batch_size=8, seed=0, answers=ANSWERS, lm_loss_weight=0.5)
WEIGHT = 10.0
# ``_anchor_loss`` subtracts b from the reference and the reading lacks it: w.h - ((w.h + b) - b) is
# not exactly 0 in float64 (measured 3e-33 with bitwise-equal residuals), so "zero" means below this.
ZERO_TOL = 1e-25
# A training batch of 8 rows is narrower than the capture batch of all rows, so float32 residuals at
# the read position differ by ~5e-7 and the step-0 anchor term is ~1e-13, not 0. It is float32 noise:
# in float64, with a float64 reference, the same batch gives 7e-31.
FP32_BATCH_TOL = 1e-10


class Killed(Exception):
    pass


def _data() -> StatementSet:
    return StatementSet(TEXTS, TRUTH)


def _load(path):
    return load_model(str(path))


@pytest.fixture(scope="module")
def base(tmp_path_factory, char_tok_dir):
    path = tmp_path_factory.mktemp("anchor_base")
    save_model(boot_native(char_tok_dir), path)
    return path


@pytest.fixture(scope="module")
def reporter(base) -> Reporter:
    """A logistic reporter fitted on the base model's activations at ``SITE``."""
    return fit_logistic(capture(_load(base), _data(), [SITE]).at(0), TRUTH, site=SITE)


@pytest.fixture(scope="module")
def plain(base, tmp_path_factory):
    """The un-anchored run: its final weights and its loss history."""
    model = _load(base)
    traj = fine_tune(model, _data(), TRUTH, tmp_path_factory.mktemp("plain"), base_spec=str(base), config=CONFIG)
    return model.state_dict(), traj.info["history"]


def _grab(model, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The residual at ``SITE`` of a training forward on rows ``idx`` (batched as fine_tune does), and
    each row's last real token."""
    batch = _rows(tokenize(model, TEXTS), idx)
    store: dict[str, torch.Tensor] = {}

    def grab(resid, *, hook):
        store["resid"] = resid

    model.train()  # as during fine-tuning
    try:
        with loud_hooks(model, [(SITE, grab)]):
            model(batch.ids, attention_mask=batch.mask)
    finally:
        model.eval()
    return store["resid"], batch.mask.sum(1) - 1


def _fine_tune(base, out, anchor=None, **kwargs):
    model = _load(base)
    traj = fine_tune(model, _data(), TRUTH, out, base_spec=str(base), config=CONFIG, anchor=anchor, **kwargs)
    return model, traj


def _score_change(model, reporter: Reporter, before: torch.Tensor) -> torch.Tensor:
    """Squared change of each statement's reporter score."""
    return (reporter(capture(model, _data(), [SITE]).at(0)) - before).square()


def _all_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- anchor_to


def test_anchor_to_reads_the_reporter_on_the_model_before_training(base, reporter):
    model = _load(base)
    anchor = anchor_to(model, _data(), reporter, weight=2.5)
    expected = reporter(capture(model, _data(), [reporter.site]).at(0))
    assert torch.equal(anchor.reference, expected)
    assert not anchor.reference.requires_grad
    assert anchor.rows.dtype == torch.bool and anchor.rows.shape == (len(TEXTS),) and bool(anchor.rows.all())
    assert anchor.weight == 2.5 and anchor.reporter is reporter
    half = anchor_to(model, _data(), reporter, rows=EVEN.tolist())  # any bool array-like
    assert half.rows.dtype == torch.bool and torch.equal(half.rows, EVEN)
    assert torch.equal(half.reference, anchor.reference)  # rows choose what is anchored, not what is read


def test_anchor_to_refuses_a_contrast_reporter(base, reporter):
    contrast = Reporter(reporter.w, reporter.b, reporter.v, "ccs", SITE, reads="contrast")
    with pytest.raises(ValueError, match="needs a statement reporter"):
        anchor_to(_load(base), _data(), contrast)


def test_fine_tune_refuses_an_anchor_built_on_other_statements(base, reporter, tmp_path):
    model = _load(base)
    other = anchor_to(model, _data().subset(np.arange(10)), reporter)
    with pytest.raises(ValueError, match="reference scores must come from these statements"):
        fine_tune(model, _data(), TRUTH, tmp_path / "run", base_spec=str(base), config=CONFIG, anchor=other)
    assert not (tmp_path / "run" / STATE_FILE).exists()  # refused before anything was trained or saved


# ---------------------------------------------------------------- the anchor term


def test_anchor_term_is_zero_at_step_0(base, reporter):
    model = _load(base)
    anchor = anchor_to(model, _data(), reporter, weight=WEIGHT)
    every = np.arange(len(TEXTS))  # one batch of every row: the very forward the reference came from
    resid, last = _grab(model, every)
    assert torch.equal(resid[every, last].detach(), capture(model, _data(), [SITE]).at(0))
    loss = _anchor_loss(anchor, resid, last, every)
    assert loss.requires_grad and abs(loss.item()) < ZERO_TOL, f"step-0 anchor term {loss.item():.2e}"
    idx = np.random.default_rng(0).integers(0, len(TEXTS), 8)  # a training-size batch, with repeats
    resid, last = _grab(model, idx)
    loss = _anchor_loss(anchor, resid, last, idx)
    assert abs(loss.item()) < FP32_BATCH_TOL, f"step-0 anchor term {loss.item():.2e} on a batch of 8"


def test_anchor_term_matches_the_formula(base, reporter, char_tok_dir):
    rows = torch.arange(len(TEXTS)) % 3 != 1
    anchor = anchor_to(_load(base), _data(), reporter, rows=rows, weight=2.5)
    other = boot_native(char_tok_dir, seed=1)  # h_t != h_0: a nonzero anchor term
    idx = np.array([0, 1, 4, 4, 7, 9, 12, 30])  # anchored and unanchored rows, one repeated
    resid, last = _grab(other, idx)
    loss = _anchor_loss(anchor, resid, last, idx)

    h = resid[torch.arange(len(idx)), last].detach().double().numpy()
    w, b, ref, keep = reporter.w.double().numpy(), reporter.b, anchor.reference.double().numpy(), rows.numpy()
    err = (h @ w - (ref[idx] - b))[keep[idx]]
    expected = 2.5 * np.mean(err**2) / np.var(ref[keep], ddof=1)  # torch's var: unbiased
    assert expected > 1e-3  # not a tautology between two zeros
    assert loss.item() == pytest.approx(expected, rel=1e-6), f"drift {abs(loss.item() / expected - 1):.2e}"


def test_anchor_term_ignores_unanchored_rows(base, reporter, char_tok_dir):
    anchor = anchor_to(_load(base), _data(), reporter, rows=EVEN)
    idx = np.array([0, 1, 2, 3, 5])  # even rows are anchored
    resid, last = _grab(boot_native(char_tok_dir, seed=1), idx)
    resid = resid.detach().requires_grad_(True)
    _anchor_loss(anchor, resid, last, idx).backward()
    at_read = resid.grad[torch.arange(len(idx)), last]
    anchored = torch.as_tensor(idx % 2 == 0)
    assert bool((at_read[anchored] != 0).any(1).all()), "anchored rows must get a gradient"
    assert bool((at_read[~anchored] == 0).all()), "unanchored rows must get none"
    odd = np.array([1, 3, 5])  # a batch with no anchored row: zero, and still differentiable
    resid, last = _grab(boot_native(char_tok_dir, seed=1), odd)
    loss = _anchor_loss(anchor, resid, last, odd)
    assert loss.item() == 0 and loss.requires_grad


# ---------------------------------------------------------------- anchored training


def test_anchored_training_keeps_the_reporters_reading(base, reporter, plain, tmp_path):
    before = reporter(capture(_load(base), _data(), [SITE]).at(0))
    plain_model = _load(base)
    plain_model.load_state_dict(plain[0])
    moved_plain = _score_change(plain_model, reporter, before)
    assert moved_plain.mean() > before.var(), "the plain run must move the reading for the test to mean much"

    model = _load(base)
    anchored, _ = _fine_tune(base, tmp_path / "all", anchor_to(model, _data(), reporter, weight=WEIGHT))
    moved = _score_change(anchored, reporter, before)
    ratio = (moved.mean() / moved_plain.mean()).item()
    assert ratio < 0.2, f"anchored/plain mean squared score change {ratio:.3f} (measured 0.009)"

    half, _ = _fine_tune(base, tmp_path / "half", anchor_to(model, _data(), reporter, rows=EVEN, weight=WEIGHT))
    moved = _score_change(half, reporter, before)
    vs_plain = (moved[EVEN].mean() / moved_plain[EVEN].mean()).item()
    assert vs_plain < 0.2, f"anchored rows: change {vs_plain:.3f} x the plain run's (measured 0.016)"
    vs_free = (moved[EVEN].mean() / moved[~EVEN].mean()).item()
    assert vs_free < 0.7, f"anchored rows moved {vs_free:.3f} x the unanchored rows (measured 0.38)"


def test_weight_zero_is_exactly_the_plain_run(base, reporter, plain, tmp_path):
    trained, traj = _fine_tune(base, tmp_path / "w0", anchor_to(_load(base), _data(), reporter, weight=0.0))
    assert _all_equal(trained.state_dict(), plain[0])
    assert traj.info["history"] == plain[1]


def test_no_anchored_rows_is_refused(base, reporter):
    with pytest.raises(ValueError, match="at least 2 anchored statements"):
        anchor_to(_load(base), _data(), reporter, rows=torch.zeros(len(TEXTS), dtype=torch.bool))


def test_resume_with_an_anchor_reaches_the_same_weights(base, reporter, plain, tmp_path):
    def anchor():  # a fresh process would rebuild the anchor from the base model
        return anchor_to(_load(base), _data(), reporter, rows=EVEN, weight=WEIGHT)

    whole, _ = _fine_tune(base, tmp_path / "whole", anchor())
    assert not _all_equal(whole.state_dict(), plain[0])  # the anchor changed the run

    def kill_at_7(step, loss):
        if step == 7:  # after the step-6 checkpoint, before the step-9 one: steps 7-9 are redone
            raise Killed

    with pytest.raises(Killed):
        _fine_tune(base, tmp_path / "resumed", anchor(), on_step=kill_at_7)
    resumed, traj = _fine_tune(base, tmp_path / "resumed", anchor())
    assert _all_equal(resumed.state_dict(), whole.state_dict())
    assert traj.steps[-1] == CONFIG.steps


# ---------------------------------------------------------------- bad input


def test_rows_of_the_wrong_length_are_a_clear_error(base, reporter, tmp_path):
    model = _load(base)
    with pytest.raises(ValueError, match="rows"):
        anchor = anchor_to(model, _data(), reporter, rows=np.flatnonzero(EVEN.numpy()))
        fine_tune(model, _data(), TRUTH, tmp_path / "run", base_spec=str(base), config=CONFIG, anchor=anchor)


def test_a_single_anchored_row_does_not_poison_training(base, reporter, tmp_path):
    model = _load(base)
    rows = torch.zeros(len(TEXTS), dtype=torch.bool)
    rows[int(np.random.default_rng(CONFIG.seed).integers(0, len(TEXTS), CONFIG.batch_size)[0])] = True  # in batch 1
    try:
        anchor = anchor_to(model, _data(), reporter, rows=rows)
    except ValueError:
        return  # refusing a single anchored row would be a fix too
    trained, _ = _fine_tune(base, tmp_path / "run", anchor)
    assert all(bool(torch.isfinite(v).all()) for v in trained.state_dict().values() if v.is_floating_point())


def test_resuming_with_another_anchor_is_refused(base, reporter, tmp_path):
    def kill_at_7(step, loss):
        if step == 7:
            raise Killed

    with pytest.raises(Killed):
        _fine_tune(base, tmp_path / "run", None, on_step=kill_at_7)
    anchor = anchor_to(_load(base), _data(), reporter, weight=WEIGHT)
    with pytest.raises(ValueError, match="other settings, data or anchor"):
        _fine_tune(base, tmp_path / "run", anchor)


def test_the_reference_keeps_a_float64_models_precision(char_tok_dir):
    model = boot_native(char_tok_dir, dtype=torch.float64)
    acts = capture(model, _data(), [SITE], dtype=torch.float64).at(0)
    rep = fit_logistic(acts, TRUTH, site=SITE)
    anchor = anchor_to(model, _data(), rep)
    every = np.arange(len(TEXTS))
    resid, last = _grab(model, every)
    loss = _anchor_loss(anchor, resid, last, every).item()
    assert abs(loss) < ZERO_TOL, f"step-0 anchor term {loss:.2e} on a float64 model"
    assert torch.equal(anchor.reference, rep(acts))
