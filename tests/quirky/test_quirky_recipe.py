"""The zoo training recipe: token encoding, bridge conversion, determinism and resume."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from elk_lens.models import load_model
from elk_lens.quirky import recipe as quirky_recipe
from elk_lens.quirky.data import sample_rows
from elk_lens.quirky.recipe import QuirkyRecipe, build_tokenizer, encode_rows, train_quirky

# the bridge re-implements LN/attention: ~2e-6 apart (docs/methods/transformer_lens_4_3.md §9.15)
BRIDGE_VS_BARE_TOL = 1e-4

TINY = dict(
    n_layers=2,
    quirk_frozen_blocks=1,
    d_model=32,
    d_head=8,
    batch_size=16,
    base_max_steps=12,
    base_cooldown=4,
    base_warmup=2,
    quirk_max_steps=6,
    quirk_cooldown=2,
    quirk_warmup=2,
    eval_every=4,
    eval_rows=32,
    ckpt_every=4,
    threads=1,
)


def test_encoding_matches_the_tokenizer(tmp_path):
    tok = build_tokenizer(tmp_path)
    rows = sample_rows(np.random.default_rng(0), 6, "test")
    character = np.array(["Alice", "Bob", "Carol"] * 2, dtype=object)
    label = rows.c == rows.s
    ids = encode_rows(rows, character, label)
    for i in range(6):
        text = f"{rows.a[i]:03d}+{rows.b[i]:03d}={rows.c[i]:04d}.{character[i]}:{'True' if label[i] else 'False'};"
        assert [tok.bos_token_id, *tok(text, add_special_tokens=False)["input_ids"]] == ids[i].tolist()
    assert "<unk>" not in tok.convert_ids_to_tokens(ids.reshape(-1).tolist())


def test_training_is_deterministic_and_the_bridge_matches_the_bare_model(tmp_path):
    threads, rng = torch.get_num_threads(), torch.random.get_rng_state()
    a = train_quirky(QuirkyRecipe(seed=3, stages=["base", "quirk"], **TINY), tmp_path / "a", log=lambda m: None)
    assert torch.get_num_threads() == threads, "the recipe's thread count must not outlive the call"
    assert torch.equal(torch.random.get_rng_state(), rng), "nor its seed"
    b = train_quirky(QuirkyRecipe(seed=3, stages=["base", "quirk"], **TINY), tmp_path / "b", log=lambda m: None)
    for name in a:
        wa, wb = load_file(str(a[name] / "model.safetensors")), load_file(str(b[name] / "model.safetensors"))
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name
    assert set(a) == {"quirky-arith-base", "quirky-arith"}
    bridge = load_model(str(a["quirky-arith"]))
    bare = quirky_recipe._bare_model(QuirkyRecipe(**TINY).native_config())
    quirky_recipe._load_bare(bare, a["quirky-arith"])
    tokens = encode_rows(
        sample_rows(np.random.default_rng(1), 8, "test"), np.array(["Bob"] * 8, dtype=object), np.zeros(8, dtype=bool)
    )
    with torch.no_grad():
        assert (bridge(tokens) - bare.eval()(tokens)).abs().max() < BRIDGE_VS_BARE_TOL


def test_quirk_stage_freezes_the_lower_blocks(tmp_path):
    recipe = QuirkyRecipe(seed=0, stages=["base", "quirk"], **TINY)
    out = train_quirky(recipe, tmp_path, log=lambda m: None)
    base = load_file(str(out["quirky-arith-base"] / "model.safetensors"))
    quirk = load_file(str(out["quirky-arith"] / "model.safetensors"))
    for key in base:
        frozen = key.startswith(("embed.", "pos_embed.", "blocks.0."))
        assert torch.equal(base[key], quirk[key]) == frozen or key == "unembed.bias", key
    card = json.loads((out["quirky-arith"] / "card.json").read_text())
    assert card["positive_control"]["equal_to_base_through"] == "blocks.1.hook_resid_pre"  # TINY freezes block 0
    assert "positive control" in card["positive_control"]["reading"]


def test_recipe_rejects_bad_settings():
    with pytest.raises(ValueError, match="quirk_frozen_blocks must be in 0..1"):
        QuirkyRecipe(n_layers=2, quirk_frozen_blocks=2)
    with pytest.raises(ValueError, match=r"unknown stages \['quirck'\]"):
        QuirkyRecipe(stages=["base", "quirck"])


def test_a_killed_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    recipe = QuirkyRecipe(seed=5, stages=["base"], **TINY)
    full = train_quirky(recipe, tmp_path / "full", log=lambda m: None)["quirky-arith-base"]

    real_batch, calls = quirky_recipe._batch, []

    def dying_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 8:  # 1 eval batch + 7 training steps: after the step-4 checkpoint
            raise KeyboardInterrupt
        return real_batch(*args, **kwargs)

    monkeypatch.setattr(quirky_recipe, "_batch", dying_batch)
    with pytest.raises(KeyboardInterrupt):
        train_quirky(recipe, tmp_path / "resumed", log=lambda m: None)
    assert (tmp_path / "resumed" / ".base.state.json").is_file()
    monkeypatch.setattr(quirky_recipe, "_batch", real_batch)
    logs = []
    resumed = train_quirky(recipe, tmp_path / "resumed", log=logs.append)["quirky-arith-base"]
    assert any("resumed at step 4" in m for m in logs)
    wf, wr = load_file(str(full / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert all(torch.equal(wf[k], wr[k]) for k in wf)
    assert [p.name for p in (tmp_path / "resumed").glob(".base.state*")] == []  # the state and its tensors


def test_later_stages_reuse_a_finished_base(tmp_path):
    train_quirky(QuirkyRecipe(seed=1, stages=["base"], **TINY), tmp_path, log=lambda m: None)
    logs = []
    out = train_quirky(QuirkyRecipe(seed=1, stages=["base", "fullft"], **TINY), tmp_path, log=logs.append)
    assert any("[base] found" in m for m in logs)
    card = json.loads((out["quirky-arith-fullft"] / "card.json").read_text())
    assert card["training"]["base"]["steps"] == TINY["base_max_steps"]
    assert card["training"]["fullft"]["steps"] > 0
    assert "positive_control" not in card  # nothing frozen: no split is built in
