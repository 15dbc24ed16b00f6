"""Activation cache: exactness, reuse without a forward, laziness, keying, damage, resumption."""

import logging

import pytest
import torch
from transformer_lens.model_bridge import TransformerBridge

import elk_lens.capturing as capture_mod
from elk_lens.capturing import capture
from elk_lens.quirky.data import quirky_arithmetic
from elk_lens.quirky.recipe import QUIRKY_VOCAB, build_tokenizer

SITES = ["blocks.1.hook_resid_pre", "blocks.0.hook_resid_mid"]
BATCH = 4
SHARD = 8  # 20 statements -> shards of 8, 8, 4 rows = 2 + 2 + 1 forward batches
N_BATCHES = 5

CFG = dict(d_model=32, d_head=8, n_layers=2, n_ctx=24, d_vocab=len(QUIRKY_VOCAB), act_fn="gelu", seed=0)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def model(tok):
    return TransformerBridge.boot_native(dict(CFG), tokenizer=tok).eval()


@pytest.fixture(scope="module")
def stmts():
    return quirky_arithmetic(10, split="test", seed=0)


@pytest.fixture(scope="module")
def reference(model, stmts):
    return capture(model, stmts, SITES, batch_size=BATCH)


def cached(model, stmts, cache_dir, **kwargs):
    return capture(model, stmts, SITES, batch_size=BATCH, cache_dir=cache_dir, shard_rows=SHARD, **kwargs)


@pytest.fixture
def forward_calls(monkeypatch):
    """Count forward batches; set ``fail_at`` to make that call (1-based) raise, as a killed run would stop."""
    real = capture_mod._forward_batch
    state = {"calls": 0, "fail_at": None}

    def counting(*args, **kwargs):
        state["calls"] += 1
        if state["calls"] == state["fail_at"]:
            raise KeyboardInterrupt("simulated kill")
        return real(*args, **kwargs)

    monkeypatch.setattr(capture_mod, "_forward_batch", counting)
    return state


def entry_dir(cache_dir):
    (entry,) = [p for p in cache_dir.iterdir() if p.is_dir()]
    return entry


def test_reference_matches_run_with_cache(model, stmts, reference):
    """The oracle the cache is compared against is itself exact (same batches, last token)."""
    for start in range(0, len(stmts), BATCH):
        toks = model.to_tokens(stmts.texts[start : start + BATCH])
        _, cache = model.run_with_cache(toks)
        for i, name in enumerate(SITES):
            assert torch.equal(reference.values[start : start + BATCH, i], cache[name][:, -1])


def test_cached_capture_equals_uncached(model, stmts, reference, tmp_path):
    acts = cached(model, stmts, tmp_path)
    assert torch.equal(acts.values, reference.values)
    assert acts.sites == reference.sites and acts.position == reference.position
    assert len(acts) == len(reference) == len(stmts)
    assert {k: v for k, v in acts.meta.items() if k != "n_rows"} == reference.meta


def test_second_call_reads_shards_without_running_model(model, stmts, reference, tmp_path, forward_calls):
    cached(model, stmts, tmp_path)
    assert forward_calls["calls"] == N_BATCHES
    forward_calls["fail_at"] = N_BATCHES + 1  # any forward from here on raises
    again = cached(model, stmts, tmp_path)
    assert forward_calls["calls"] == N_BATCHES
    assert torch.equal(again.values, reference.values)


def test_cached_activations_are_lazy(model, stmts, reference, tmp_path):
    acts = cached(model, stmts, tmp_path)
    assert acts._values is None
    assert len(acts) == len(stmts)
    assert acts._values is None  # len() reads the manifest meta, not the shards
    for site in (0, 1, -1, SITES[1], "resid_pre.1"):
        assert torch.equal(acts.at(site), reference.values[:, acts.site_index(site)])
    assert acts._values is None  # at() loads one site without materializing all of them
    assert torch.equal(acts.values, reference.values)
    assert acts._values is not None
    for i in range(len(SITES)):
        assert torch.equal(acts.at(i), acts.values[:, i])


def _perturbed_model(model, tok):
    other = TransformerBridge.boot_native(dict(CFG, seed=1), tokenizer=tok).eval()
    other.load_state_dict(model.state_dict())
    w = other.state_dict()["blocks.1.mlp.out.weight"]  # one ulp in one weight of the last block
    w.view(-1)[0] = torch.nextafter(w.view(-1)[0], torch.tensor(float("inf")))
    return other


@pytest.mark.parametrize(
    "change", ["sites", "site_order", "position", "dtype", "data", "weights", "padding_side", "tokenizer"]
)
def test_cache_key_covers_everything_that_determines_values(model, tok, stmts, tmp_path, change):
    base = tmp_path / "base"
    cached(model, stmts, base)
    cached(model, stmts, base)  # same arguments, same directory
    assert len(list(base.iterdir())) == 1

    other_dir = tmp_path / "other"
    args = dict(model=model, stmts=stmts, cache_dir=other_dir)
    if change == "sites":
        capture(model, stmts, SITES[:1], batch_size=BATCH, cache_dir=other_dir, shard_rows=SHARD)
    elif change == "site_order":
        capture(model, stmts, SITES[::-1], batch_size=BATCH, cache_dir=other_dir, shard_rows=SHARD)
    elif change == "position":
        cached(**args, position=-2)
    elif change == "dtype":
        cached(**args, dtype=torch.float16)
    elif change == "data":
        cached(model, quirky_arithmetic(10, split="test", seed=1), other_dir)
    elif change == "weights":
        same = TransformerBridge.boot_native(dict(CFG, seed=1), tokenizer=tok).eval()
        same.load_state_dict(model.state_dict())  # a different object with equal weights: same key
        cached(same, stmts, tmp_path / "same")
        assert entry_dir(tmp_path / "same").name == entry_dir(base).name
        cached(_perturbed_model(model, tok), stmts, other_dir)
    elif change == "padding_side":
        cached(**args, padding_side="left")
    elif change == "tokenizer":  # equal weights, "Bob:" read as two tokens instead of one
        retok = build_tokenizer(tmp_path / "tok", fused_name_colon=False)
        same = TransformerBridge.boot_native(dict(CFG, seed=1), tokenizer=retok).eval()
        same.load_state_dict(model.state_dict())
        cached(same, stmts, other_dir)
    assert entry_dir(other_dir).name != entry_dir(base).name


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_values(path):
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # one bit inside the last float: the file still parses, only the checksum can tell
    path.write_bytes(bytes(data))


def _flip_header(path):
    data = bytearray(path.read_bytes())
    data[12] ^= 0xFF  # inside the JSON header
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _flip_values, _flip_header], ids=["truncated", "flipped", "header"])
def test_damaged_shard_is_detected_and_recomputed(model, stmts, reference, tmp_path, forward_calls, caplog, damage):
    cached(model, stmts, tmp_path)
    shard = entry_dir(tmp_path) / "shard_00001.safetensors"
    damage(shard)
    forward_calls["calls"] = 0
    with caplog.at_level(logging.WARNING, logger="elk_lens.store"):
        acts = cached(model, stmts, tmp_path)
    assert forward_calls["calls"] == SHARD // BATCH  # only the damaged shard's batches ran again
    assert "shard_00001" in caplog.text and "recomputing" in caplog.text
    assert torch.equal(acts.values, reference.values)
    forward_calls["calls"] = 0
    cached(model, stmts, tmp_path)  # the rewritten shard is valid again
    assert forward_calls["calls"] == 0


@pytest.mark.parametrize("damage", [_truncate, _flip_values, _flip_header], ids=["truncated", "flipped", "header"])
@pytest.mark.parametrize("read", ["values", "at"])
def test_shard_damaged_after_capture_fails_loudly_on_every_lazy_read(model, stmts, reference, tmp_path, damage, read):
    """The lazy read verifies each shard as capture does: a flipped bit in a value used to come back as a
    value off by orders of magnitude. Re-running capture recomputes the shard."""
    acts = cached(model, stmts, tmp_path)
    damage(entry_dir(tmp_path) / "shard_00002.safetensors")
    with pytest.raises(RuntimeError, match=r"shard_00002\.safetensors .*re-run capture"):
        _ = acts.values if read == "values" else acts.at(1)
    assert torch.equal(cached(model, stmts, tmp_path).values, reference.values)


def test_a_shard_of_another_entry_is_recomputed(model, stmts, reference, tmp_path, forward_calls, caplog):
    """Shards carry their entry's key: one copied in from another entry (same rows, valid checksum) is refused."""
    cached(model, stmts, tmp_path)
    (own,) = [p for p in tmp_path.iterdir()]
    cached(model, quirky_arithmetic(10, split="test", seed=1), tmp_path)
    (other,) = [p for p in tmp_path.iterdir() if p != own]
    (own / "shard_00000.safetensors").write_bytes((other / "shard_00000.safetensors").read_bytes())
    forward_calls["calls"] = 0
    with caplog.at_level(logging.WARNING, logger="elk_lens.store"):
        acts = cached(model, stmts, tmp_path)
    assert "belongs to another cache entry" in caplog.text and forward_calls["calls"] == SHARD // BATCH
    assert torch.equal(acts.values, reference.values)


def test_an_edited_manifest_is_refused_on_a_lazy_read(model, stmts, reference, tmp_path):
    acts = cached(model, stmts, tmp_path)
    manifest = entry_dir(tmp_path) / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"position": "last"', '"position": -2'))
    with pytest.raises(RuntimeError, match=r"manifest\.json does not match this cache entry"):
        _ = acts.values
    assert torch.equal(cached(model, stmts, tmp_path).values, reference.values)  # capture rewrites it


def test_killed_capture_resumes_from_finished_shards(model, stmts, reference, tmp_path, forward_calls):
    forward_calls["fail_at"] = SHARD // BATCH + 2  # dies in the middle of the second shard
    with pytest.raises(KeyboardInterrupt, match="simulated kill"):
        cached(model, stmts, tmp_path)
    entry = entry_dir(tmp_path)
    assert sorted(p.name for p in entry.iterdir()) == ["manifest.json", "shard_00000.safetensors"]
    # a hard kill (SIGKILL) can leave a half-written temporary sibling; it must not be mistaken for a shard
    (entry / ".shard_00001.safetensors.abc123.tmp").write_bytes(b"\x00" * 10)

    forward_calls.update(calls=0, fail_at=None)
    acts = cached(model, stmts, tmp_path)
    assert forward_calls["calls"] == N_BATCHES - SHARD // BATCH  # the finished shard was not recomputed
    assert torch.equal(acts.values, reference.values)


def test_a_capture_finds_the_shards_a_dead_rank_left_wherever_they_lie(
    model, stmts, reference, tmp_path, forward_calls
):
    """Under torchrun shards are dealt in turn (rank 0: 0, 2; rank 1: 1): a rank that dies leaves gaps, not a
    prefix. A rerun, in any number of processes, computes the missing shards only (issue 19)."""
    cached(model, stmts, tmp_path)
    entry = entry_dir(tmp_path)
    for i in (0, 2):  # rank 0 died before writing its shards; rank 1 finished shard 1
        (entry / f"shard_{i:05d}.safetensors").unlink()
    forward_calls["calls"] = 0
    acts = cached(model, stmts, tmp_path)
    assert forward_calls["calls"] == N_BATCHES - SHARD // BATCH  # shard 1 (2 batches) was not recomputed
    assert torch.equal(acts.values, reference.values)


def test_no_temp_files_after_success(model, stmts, tmp_path):
    cached(model, stmts, tmp_path)
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    entry = entry_dir(tmp_path).name
    assert files == [f"{entry}/manifest.json"] + [f"{entry}/shard_{i:05d}.safetensors" for i in range(3)]


def test_position_all_with_cache_dir_raises(model, stmts, tmp_path):
    with pytest.raises(ValueError, match=r"position='all' cannot be cached.*'last' or an int"):
        capture(model, stmts, SITES, position="all", cache_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_shard_rows_must_be_positive(model, stmts, tmp_path):
    with pytest.raises(ValueError, match=r"shard_rows must lie in \[1, inf\); got 0"):
        capture(model, stmts, SITES, cache_dir=tmp_path, shard_rows=0)


# Tokenization runs in chunks so that its per-text objects never exist for every statement at once
# (flat memory with cache_dir); the chunked result must equal one tokenizer call exactly.
MIXED = ["1+2=3.Bob:", "12+345=0357.Alice:", "7=7.Alice:", "100+200=0300.Bob:", "5.Bob:", "0+0=0.Alice:", "9:"]


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_chunked_tokenization_equals_one_call(model, monkeypatch, padding_side):
    from transformer_lens.utilities.tokenize_utils import get_attention_mask

    ids = model.to_tokens(MIXED, padding_side=padding_side, truncate=False, move_to_device=False)
    mask = get_attention_mask(model.tokenizer, ids, True, padding_side=padding_side)
    monkeypatch.setattr(capture_mod, "_TOKENIZE_CHUNK", 3)  # chunks of different widths
    tokens = capture_mod.tokenize(model, MIXED, padding_side)
    assert torch.equal(tokens.ids, ids) and torch.equal(tokens.mask, mask.long())


@pytest.mark.parametrize("position", ["last", 1, "all"])
def test_capture_is_independent_of_the_tokenization_chunk(model, monkeypatch, position):
    one = capture(model, MIXED, SITES, position=position, batch_size=2, padding_side="left")
    monkeypatch.setattr(capture_mod, "_TOKENIZE_CHUNK", 3)
    chunked = capture(model, MIXED, SITES, position=position, batch_size=2, padding_side="left")
    assert torch.equal(chunked.values, one.values)
    assert (chunked.mask is None and one.mask is None) or torch.equal(chunked.mask, one.mask)


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_batch_rows_drop_exactly_the_all_padding_columns(model, padding_side):
    tokens = capture_mod.tokenize(model, MIXED, padding_side)
    for start, stop in [(0, 2), (2, 5), (4, 7), (0, 7)]:
        batch = tokens.rows(start, stop)
        keep = tokens.mask[start:stop].any(0)
        assert torch.equal(batch.ids, tokens.ids[start:stop][:, keep])
        assert torch.equal(batch.mask, tokens.mask[start:stop][:, keep])
        assert batch.ids.is_contiguous() and batch.mask.is_contiguous()


def test_shard_size_is_part_of_the_key(model, stmts, reference, tmp_path, forward_calls):
    cached(model, stmts, tmp_path)
    capture(model, stmts, SITES, batch_size=BATCH, cache_dir=tmp_path, shard_rows=2 * SHARD)
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2
    forward_calls["calls"] = 0  # neither layout overwrote the other's shards
    assert torch.equal(cached(model, stmts, tmp_path).values, reference.values)
    assert forward_calls["calls"] == 0
