"""Length batching in `capture`: rows are grouped by token length inside each shard and put back in order.

Oracles: ``run_with_cache`` on each length batch padded *by hand* (exact: the same shapes run), and
the unbatched capture (one batch holding every statement, which runs exactly as before length
batching) within float32 rounding, and within float64 rounding on a float64 model.
"""

import io

import pytest
import torch
from conftest import boot_native
from gguf_files import write_tiny_llama_gguf
from hypothesis import given
from hypothesis import strategies as st
from test_capture import pad_by_hand

import elk_lens._progress as progress_mod
import elk_lens.capturing as capture_mod
from elk_lens.capturing import capture, length_batches, tokenize
from elk_lens.models import load_model

# Shuffled lengths (1 to 22 characters; the char tokenizer's n_ctx is 24), so batches of 3 in the given
# order mix short and long rows and length batching changes every batch.
TEXTS = (
    "the cat sat on the mat.",
    "ab",
    "hello world",
    "x",
    "one two three four",
    "cat.",
    "a b c d e f g",
    "paris is big.",
    "no",
    "seven ate nine",
)
BATCH = 3
SIDES = ("right", "left")
POSITIONS = ("last", 1, -2, "all")
# A row run in a batch of another width runs matmuls of other shapes, summed in another order: the
# measured drift between length-batched and unbatched capture over every side and position is 4.8e-7
# (native) and 1.2e-6 (tiny Llama) in float32, and 1.1e-15 in float64 (native), so the gap is
# rounding, not a changed computation.
F32_TOL = 1e-5
F64_TOL = 1e-12


@pytest.fixture(scope="module")
def llama_model(tmp_path_factory):
    """A tiny random Llama (GQA, RoPE, SwiGLU: SmolLM2's architecture and attention bridge) from GGUF."""
    root = tmp_path_factory.mktemp("llama")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ELK_LENS_CACHE", str(root / "cache"))
        return load_model(str(write_tiny_llama_gguf(root / "tiny.gguf")))


@pytest.fixture(params=["native", "llama"])
def model(request):
    return request.getfixturevalue(f"{request.param}_model")


def sites(model) -> list[str]:
    return [f"blocks.{layer}.hook_{kind}" for layer in range(model.cfg.n_layers) for kind in ("resid_pre", "resid_mid")]


def real(values: torch.Tensor, mask: torch.Tensor, position) -> torch.Tensor:
    """Only the real tokens' rows of ``position="all"`` values, as [tokens, n_sites, d_model]."""
    return values.transpose(1, 2)[mask.bool()] if position == "all" else values


# --------------------------------------------------------------------------- the batches


@given(st.lists(st.integers(1, 30), min_size=1, max_size=60), st.integers(1, 8))
def test_length_batches_cover_each_row_once_shortest_first(lengths, batch_size):
    mask = (torch.arange(30)[None] < torch.tensor(lengths)[:, None]).long()
    batches = list(length_batches(mask, batch_size))
    assert sorted(torch.cat(batches).tolist()) == list(range(len(lengths)))
    assert [len(b) for b in batches[:-1]] == [batch_size] * (len(batches) - 1)
    length = torch.tensor(lengths)
    for a, b in zip(batches, batches[1:], strict=False):
        assert length[a].max() <= length[b].min(), "a later batch holds a shorter row"
    for b in batches:
        assert torch.equal(b, b.sort().values), "a batch lists its rows in the statements' order"


def test_a_set_that_fits_one_batch_runs_in_its_own_order():
    mask = (torch.arange(9)[None] < torch.tensor([5, 2, 9, 1])[:, None]).long()
    (batch,) = length_batches(mask, 4)
    assert batch.tolist() == [0, 1, 2, 3]


def test_length_batches_cut_the_padding(native_model, monkeypatch):
    """Each forward batch is as wide as its longest row, and the batches run shortest first."""
    widths = []
    real_forward = capture_mod._forward_batch

    def recording(model, tokens, *args, **kwargs):
        widths.append((len(tokens), tokens.ids.shape[1], int(tokens.mask.sum())))
        assert torch.equal(tokens.mask.sum(1).max(), torch.tensor(tokens.ids.shape[1]))
        return real_forward(model, tokens, *args, **kwargs)

    monkeypatch.setattr(capture_mod, "_forward_batch", recording)
    capture(native_model, TEXTS, ["blocks.0.hook_resid_pre"], batch_size=BATCH)
    assert [w for _, w, _ in widths] == sorted(w for _, w, _ in widths)
    padded = sum(n * w - r for n, w, r in widths)
    mask = tokenize(native_model, TEXTS).mask
    in_order = sum(len(m) * int(m.sum(1).max()) - int(m.sum()) for m in mask.split(BATCH))
    assert padded < in_order / 3, f"length batching pads {padded} tokens, batches in order pad {in_order}"


# --------------------------------------------------------------------------- the values


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("side", SIDES)
def test_each_row_equals_run_with_cache_on_its_length_batch(model, side, position):
    names = sites(model)
    acts = capture(model, TEXTS, names, position=position, padding_side=side, batch_size=BATCH)
    ids, mask = pad_by_hand(model, TEXTS, side)
    assert acts.values.shape[0] == len(TEXTS)
    if position == "all":
        assert torch.equal(acts.mask, mask) and acts.values.shape[2] == ids.shape[1]
    for index in length_batches(mask, BATCH):
        sub_ids, sub_mask = pad_by_hand(model, [TEXTS[i] for i in index], side)
        with torch.no_grad():
            _, cache = model.run_with_cache(sub_ids, attention_mask=sub_mask, names_filter=names)
        ref = torch.stack([cache[n] for n in names], 1)  # [batch, n_sites, pos, d_model]
        for r, row in enumerate(index.tolist()):
            cols = sub_mask[r].nonzero().squeeze(1)
            if position == "all":
                got, want = acts.values[row][:, mask[row].bool()], ref[r][:, cols]
            else:
                want = ref[r][:, cols[-1] if position == "last" else cols[position]]
                got = acts.values[row]
            assert torch.equal(got, want), f"{side}/{position}: row {row} ({TEXTS[row]!r}) differs from its batch"


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("side", SIDES)
def test_length_batched_equals_unbatched_capture(model, side, position):
    names = sites(model)
    batched = capture(model, TEXTS, names, position=position, padding_side=side, batch_size=BATCH)
    whole = capture(model, TEXTS, names, position=position, padding_side=side, batch_size=len(TEXTS))
    mask = tokenize(model, TEXTS, side).mask
    if position == "all":
        assert torch.equal(batched.mask, whole.mask)
        pads = ~mask.bool()
        assert torch.equal(batched.values.transpose(1, 2)[pads], torch.zeros_like(batched.values.transpose(1, 2)[pads]))
    drift = (real(batched.values, mask, position) - real(whole.values, mask, position)).abs().max().item()
    assert drift < F32_TOL, f"{side}/{position}: length-batched capture drifts {drift:.2e} from one batch"


@pytest.mark.parametrize("position", POSITIONS)
def test_length_batched_equals_unbatched_capture_in_float64(char_tok_dir, position):
    model = boot_native(char_tok_dir, dtype=torch.float64)
    names = sites(model)
    batched = capture(model, TEXTS, names, position=position, padding_side="left", batch_size=BATCH, dtype="float64")
    whole = capture(model, TEXTS, names, position=position, padding_side="left", batch_size=99, dtype="float64")
    mask = tokenize(model, TEXTS, "left").mask
    drift = (real(batched.values, mask, position) - real(whole.values, mask, position)).abs().max().item()
    assert drift < F64_TOL, f"{position}: float64 drift {drift:.2e}"


@pytest.mark.parametrize("position", ["last", -2])
@pytest.mark.parametrize("side", SIDES)
def test_cache_dir_runs_the_same_batches_as_no_cache(model, tmp_path, side, position):
    """Rows are sorted within each shard, with or without a cache: the values are equal, bit for bit."""
    names = sites(model)
    kwargs = dict(position=position, padding_side=side, batch_size=BATCH, shard_rows=4)
    plain = capture(model, TEXTS, names, **kwargs)
    cached = capture(model, TEXTS, names, cache_dir=tmp_path, **kwargs)
    again = capture(model, TEXTS, names, cache_dir=tmp_path, **kwargs)  # read from the shards
    assert torch.equal(cached.values, plain.values) and torch.equal(again.values, plain.values)
    whole = capture(model, TEXTS, names, position=position, padding_side=side, batch_size=len(TEXTS))
    drift = (plain.values - whole.values).abs().max().item()
    assert drift < F32_TOL, f"{side}/{position}: shard-wise length batching drifts {drift:.2e} from one batch"


def test_a_shard_only_batches_its_own_rows(native_model, monkeypatch):
    """Sorting never crosses a shard boundary: a shard is the unit of resumption."""
    real_take = capture_mod.Tokens.take
    taken = []

    def logging_take(self, index):
        taken.append(index.tolist())
        return real_take(self, index)

    monkeypatch.setattr(capture_mod.Tokens, "take", logging_take)
    capture(native_model, TEXTS, ["blocks.0.hook_resid_pre"], batch_size=BATCH, shard_rows=4)
    shard_of = [i // 4 for i in range(len(TEXTS))]
    for rows in taken:
        assert len({shard_of[i] for i in rows}) == 1, f"batch {rows} crosses a shard boundary (shards of 4)"
    assert sorted(i for rows in taken for i in rows) == list(range(len(TEXTS)))


@pytest.mark.parametrize("cache", [False, True])
def test_the_progress_bar_counts_each_statement_once(native_model, tmp_path, monkeypatch, cache):
    """The bar moves per batch while a shard is computed and per shard when it is read from the cache."""
    bars = []

    class Recording(progress_mod.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "file": io.StringIO()})
            bars.append(self)

    monkeypatch.setattr(progress_mod, "tqdm", Recording)
    kwargs = dict(batch_size=BATCH, shard_rows=4, progress=True, cache_dir=tmp_path if cache else None)
    for _ in range(2):  # with a cache, the second run reads every shard
        capture(native_model, TEXTS, ["blocks.0.hook_resid_pre"], **kwargs)
    assert [bar.n for bar in bars] == [len(TEXTS), len(TEXTS)]


def test_without_a_terminal_capture_reports_progress_as_lines(native_model, caplog):
    """pytest's stderr is no terminal: the default (progress=None) writes lines, not a hidden bar."""
    with caplog.at_level("INFO", logger="elk_lens.progress"):
        capture(native_model, TEXTS, ["blocks.0.hook_resid_pre"], batch_size=BATCH, shard_rows=4)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[-1].startswith(f"capture: done {len(TEXTS)}/{len(TEXTS)} stmt, ") and "\r" not in "".join(lines)
    assert 2 <= len(lines) <= 11, lines  # a line per tenth at most, and the last one


def test_a_cached_capture_reads_its_shards_without_tokenizing_again(native_model, tmp_path, monkeypatch):
    """The cache key holds the model, tokenizer, texts and settings: a complete entry needs no tokens (issue 18);
    a damaged shard is recomputed from fresh tokens."""
    calls = []
    real = capture_mod.tokenize
    monkeypatch.setattr(capture_mod, "tokenize", lambda *a, **k: calls.append(1) or real(*a, **k))
    kwargs = dict(batch_size=BATCH, shard_rows=4, cache_dir=tmp_path)
    first = capture(native_model, TEXTS, ["blocks.1.hook_resid_pre"], **kwargs).values
    assert len(calls) == 1
    again = capture(native_model, TEXTS, ["blocks.1.hook_resid_pre"], **kwargs).values
    assert len(calls) == 1 and torch.equal(again, first)
    shard = sorted(tmp_path.rglob("shard_00001.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[:-4] + b"\0\0\0\0")
    assert torch.equal(capture(native_model, TEXTS, ["blocks.1.hook_resid_pre"], **kwargs).values, first)
    assert len(calls) == 2
