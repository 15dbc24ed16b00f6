"""Token streams: windows are exact slices of the stream, the held-out loss matches a per-window
recomputation, and `fine_tune` trains on a stream (resumable, anchorable) like it does on statements."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import boot_native

from elk_lens.capturing import capture
from elk_lens.data.statements import StatementSet
from elk_lens.models import load_model, save_model
from elk_lens.reporters import fit_logistic
from elk_lens.token_stream import TokenStream, stream_loss
from elk_lens.train import FineTuneConfig, anchor_to, fine_tune

DOCS = [f"{a} plus {b} is {a + b}." for a in range(8) for b in range(8)]
CONFIG = FineTuneConfig(steps=12, lr=3e-3, warmup=2, batch_size=8, seed=0)
# float32 logits of one window computed inside a batch of 8 vs alone: summation order only.
BATCH_TOL = 1e-5


class Killed(Exception):
    pass


@pytest.fixture
def base(tmp_path, char_tok_dir):
    path = tmp_path / "base"
    save_model(boot_native(char_tok_dir), path)
    return path


def test_from_texts_joins_documents_with_eos_and_records_their_starts(native_model):
    tok = native_model.tokenizer
    stream = TokenStream.from_texts(native_model, DOCS[:3], context=8)
    ids = [tok(d, add_special_tokens=False)["input_ids"] for d in DOCS[:3]]
    expected = [t for doc in ids for t in (*doc, tok.eos_token_id)]
    assert stream.ids.tolist() == expected
    assert stream.starts.tolist() == [0, len(ids[0]) + 1, len(ids[0]) + len(ids[1]) + 2]
    assert stream.bos == tok.bos_token_id and stream.span == 7


def test_windows_are_bos_then_exact_stream_slices(native_model):
    stream = TokenStream.from_texts(native_model, DOCS, context=8, aligned=False)
    offsets = stream.sample(np.random.default_rng(0), 16)
    windows = stream.windows(offsets)
    assert windows.shape == (16, 9)
    assert (windows[:, 0] == stream.bos).all()
    for offset, window in zip(offsets.tolist(), windows, strict=True):
        assert window[1:].tolist() == stream.ids[offset : offset + 8].tolist()


def test_aligned_windows_start_at_document_starts(native_model):
    stream = TokenStream.from_texts(native_model, DOCS, context=8)
    offsets = stream.sample(np.random.default_rng(0), 64)
    assert set(offsets.tolist()) <= set(stream.starts.tolist())
    assert (offsets <= stream.last_start).all()


def test_stream_loss_equals_a_per_window_recomputation(native_model):
    stream = TokenStream.from_texts(native_model, DOCS, context=12)
    offsets = stream.tiling()
    per_window = []
    with torch.no_grad():
        for offset in offsets.tolist():  # one window at a time, its own cross-entropy
            w = stream.windows(torch.tensor([offset]))[0]
            logits = native_model(w[None, :-1])[0]
            per_window.append(F.cross_entropy(logits, w[1:]).item())
    assert stream_loss(native_model, stream, batch_size=8) == pytest.approx(np.mean(per_window), abs=BATCH_TOL)


def test_fine_tune_on_a_stream_lowers_its_loss_and_resumes_to_the_same_weights(base, tmp_path):
    model = load_model(str(base))
    stream = TokenStream.from_texts(model, DOCS, context=12)
    before = stream_loss(model, stream)
    fine_tune(model, stream, None, tmp_path / "whole", base_spec=str(base), config=CONFIG)
    assert stream_loss(model, stream) < before - 1.0  # measured 4.32 -> 1.15 nats in 12 steps

    def kill_at_5(step, loss):
        if step == 5:
            raise Killed

    with pytest.raises(Killed):
        fine_tune(
            load_model(str(base)),
            stream,
            None,
            tmp_path / "resumed",
            base_spec=str(base),
            config=CONFIG,
            on_step=kill_at_5,
        )
    resumed = load_model(str(base))
    fine_tune(resumed, stream, None, tmp_path / "resumed", base_spec=str(base), config=CONFIG)
    assert all(torch.equal(resumed.state_dict()[k], v) for k, v in model.state_dict().items())


def test_anchoring_a_stream_run_holds_the_reporter_reading(base, tmp_path):
    """The anchor's statements are not the stream: each step draws an anchor batch beside the stream batch."""
    site = "blocks.1.hook_resid_post"
    truth = torch.tensor([i % 3 == 0 for i in range(len(DOCS))])
    statements = StatementSet(DOCS, truth)
    model = load_model(str(base))
    reporter = fit_logistic(capture(model, statements, [site]).at(0), truth, site=site)
    reference = reporter(capture(model, statements, [site], dtype=torch.float64).at(0))
    stream = TokenStream.from_texts(model, DOCS, context=12)
    config = FineTuneConfig(steps=20, lr=3e-3, warmup=10, batch_size=8, seed=0)

    def drift(anchor):
        trained = load_model(str(base))
        fine_tune(
            trained, stream, None, tmp_path / str(anchor is None), base_spec=str(base), config=config, anchor=anchor
        )
        after = reporter(capture(trained, statements, [site], dtype=torch.float64).at(0))
        return float((after - reference).square().mean())

    plain = drift(None)
    anchored = drift(anchor_to(model, statements, reporter, weight=10.0))
    assert anchored < 0.1 * plain, (anchored, plain)  # measured 0.46 vs 14.0 (squared reading change)


def test_bad_stream_input_is_refused(base, native_model, tmp_path):
    with pytest.raises(ValueError, match="1-D integer tensor"):
        TokenStream(torch.zeros(20), context=8)
    with pytest.raises(ValueError, match="context must be >= 2"):
        TokenStream(torch.arange(20), context=1)
    with pytest.raises(ValueError, match="one window of context 30 needs 31"):
        TokenStream(torch.arange(20), context=30)
    stream = TokenStream.from_texts(native_model, DOCS, context=12)
    model = load_model(str(base))
    with pytest.raises(ValueError, match="pass labels=None"):
        fine_tune(model, stream, torch.ones(3), tmp_path / "a", base_spec=str(base), config=CONFIG)
    too_long = TokenStream.from_texts(native_model, DOCS, context=model.cfg.n_ctx + 1)
    with pytest.raises(ValueError, match="exceeds the model's n_ctx"):
        fine_tune(model, too_long, None, tmp_path / "b", base_spec=str(base), config=CONFIG)
    out_of_vocab = TokenStream(torch.full((40,), model.cfg.d_vocab), context=8)
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        fine_tune(model, out_of_vocab, None, tmp_path / "e", base_spec=str(base), config=CONFIG)
    with pytest.raises(ValueError, match="need answer labels"):
        fine_tune(
            model,
            StatementSet(DOCS, torch.zeros(len(DOCS), dtype=torch.bool)),
            None,
            tmp_path / "c",
            base_spec=str(base),
            config=CONFIG,
        )
    with pytest.raises(TypeError, match="StatementSet or a TokenStream"):
        fine_tune(model, DOCS, None, tmp_path / "d", base_spec=str(base), config=CONFIG)
    assert not (tmp_path / "a").exists()  # refused before anything is written
