"""`load_model` / `save_model` / `fingerprint`: specs, round trips, parity with HF, and error messages."""

import json
import re
import shutil

import pytest
import torch
from conftest import D_MODEL, NATIVE_CFG, boot_native
from transformers import AutoModelForCausalLM

import elk_lens.models
from elk_lens.models import (
    HF_MARKER_FILE,
    NATIVE_CONFIG_FILE,
    HubUnreachableError,
    fingerprint,
    load_model,
    loading_device,
    save_model,
)
from elk_lens.zoo import zoo_names

# Bridge vs HF eager forward on the same weights: the bridge re-implements some components, measured
# max |diff| 3.9e-7 (GPT-2) and 0 (NeoX) in docs/methods/transformer_lens_4_3.md §4.1.
HF_PARITY_TOL = 1e-5
# Offline, a hub name must fail at once (not after huggingface_hub's ~23 s of retries).
TEXTS = ["hello world", "ab", "the cat sat."]

# Native configs whose function depends on more than the weights (each one was lost by save_model
# before, silently for rotary / bidirectional / soft caps / attn_scale / default_prepend_bos).
NATIVE_VARIANTS = {
    "standard": {},
    "rotary": dict(positional_embedding_type="rotary", rotary_dim=4, rotary_base=100),
    "rms_gated": dict(normalization_type="RMS", gated_mlp=True, act_fn="silu", final_rms=True),
    "attn_only": dict(attn_only=True),
    "gqa": dict(n_key_value_heads=2),
    "bidirectional": dict(attention_dir="bidirectional"),
    "soft_caps": dict(attn_scores_soft_cap=5.0, output_logits_soft_cap=3.0, attn_scale=2.0),
    "no_bos": dict(default_prepend_bos=False),
}


def perturbed(model):
    """Make LN weights/biases non-trivial, so a lost config field cannot hide behind init values."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model


# --------------------------------------------------------------------------- zoo


def test_unknown_zoo_name_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"unknown zoo model 'no-such-model'; embedded models: ") as err:
        load_model("zoo:no-such-model")
    assert str(zoo_names()) in str(err.value)


# --------------------------------------------------------------------------- native save / load


def test_loading_device_is_where_models_go_unless_a_call_names_one(monkeypatch):
    """The plumbing of ``elk-lens run --device``: every load_model without ``device=`` inside the context
    (here the meta device stands in for a GPU this machine lacks) receives the context's device."""
    seen = []
    monkeypatch.setattr(elk_lens.models, "_load_native", lambda path, device, dtype: seen.append(device))
    load_model("zoo:quirky-arith")
    with loading_device("meta") as device:
        load_model("zoo:quirky-arith")
        load_model("zoo:quirky-arith", device="cpu")
    load_model("zoo:quirky-arith")
    assert device == "meta" and seen == ["cpu", "meta", "cpu", "cpu"]


@pytest.mark.parametrize("variant", list(NATIVE_VARIANTS))
def test_save_load_round_trip_is_bit_identical(char_tok_dir, tmp_path, variant):
    model = perturbed(boot_native(char_tok_dir, **NATIVE_VARIANTS[variant]))
    path = save_model(model, tmp_path / "m", card={"note": "test"})
    loaded = load_model(str(path))
    assert not loaded.training
    tokens = model.to_tokens(TEXTS)
    assert torch.equal(loaded.to_tokens(TEXTS), tokens), "tokenizer or BOS rule not restored"
    with torch.no_grad():
        assert torch.equal(loaded(tokens), model(tokens)), f"{variant}: logits differ after the round trip"
    assert fingerprint(loaded) == fingerprint(model)
    meta = json.loads((path / NATIVE_CONFIG_FILE).read_text())
    assert meta["fingerprint"] == fingerprint(model)
    assert json.loads((path / "card.json").read_text()) == {"note": "test"}


def test_the_fingerprint_is_hashed_once_per_set_of_weights_and_sees_every_counted_change(char_tok_dir, monkeypatch):
    from elk_lens import _fingerprint

    model = boot_native(char_tok_dir)
    calls = []
    hash_weights = _fingerprint.weights_fingerprint
    monkeypatch.setattr(_fingerprint, "weights_fingerprint", lambda *a: calls.append(1) or hash_weights(*a))
    first = fingerprint(model)
    assert fingerprint(model) == first and len(calls) == 1, "unchanged weights are not hashed again"
    seen = {first}

    def changed(what):
        got = fingerprint(model)
        assert got not in seen and got == hash_weights(model.cfg, model.state_dict()), what
        seen.add(got)

    with torch.no_grad():
        model.blocks[0].mlp.W_in[0, 0] += 1.0
    changed("an in-place write under no_grad")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(model.to_tokens(["ab"])).sum().backward()
    opt.step()
    changed("an optimizer step")
    model.load_state_dict(boot_native(char_tok_dir, seed=3).state_dict())
    changed("load_state_dict")
    param = next(p for name, p in model.named_parameters() if name.startswith("layers.1."))
    param.data = param.data * 2
    changed("a parameter's tensor replaced")
    model.cfg.default_prepend_bos = not model.cfg.default_prepend_bos
    changed("a fingerprinted config field")
    param.data.add_(1.0)  # PyTorch does not count writes through .data: documented
    assert fingerprint(model) != hash_weights(model.cfg, model.state_dict())


def test_the_tokenizer_fingerprint_is_kept_until_the_tokenizer_changes(char_tok_dir, monkeypatch):
    """Serializing a 49k-token tokenizer cost 0.3 s per capture call (issue 18): hashed once, and again after
    an added token, a changed special token or a changed post-processor (the BOS template)."""
    from tokenizers import processors

    from elk_lens import _fingerprint

    model = boot_native(char_tok_dir)
    calls = []
    spec_hash = _fingerprint._spec_hash
    monkeypatch.setattr(_fingerprint, "_spec_hash", lambda *a: calls.append(1) or spec_hash(*a))
    first = _fingerprint.tokenizer_fingerprint(model)
    assert _fingerprint.tokenizer_fingerprint(model) == first and len(calls) == 1
    seen = {first}

    def changed(what):
        got = _fingerprint.tokenizer_fingerprint(model)
        _fingerprint._TOKENIZER_HASHED.clear()
        assert got not in seen and got == _fingerprint.tokenizer_fingerprint(model), what
        seen.add(got)

    model.tokenizer.add_tokens(["<new>"])
    changed("an added token")
    model.tokenizer.pad_token = "<new>"
    changed("another pad token")
    model.tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<new> $A", special_tokens=[("<new>", model.tokenizer.convert_tokens_to_ids("<new>"))]
    )
    changed("a post-processor that prepends a token")


def test_fingerprint_is_stable_across_boots_and_sees_one_weight(char_tok_dir):
    a, b = boot_native(char_tok_dir), boot_native(char_tok_dir)
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) == fingerprint(a), "computing it twice must not change it"
    with torch.no_grad():
        w = b.blocks[1].mlp.W_out
        w[3, 5] = torch.nextafter(w[3, 5], torch.tensor(float("inf")))  # one ulp in one weight
    assert fingerprint(b) != fingerprint(a)
    assert fingerprint(boot_native(char_tok_dir, seed=1)) != fingerprint(a)


@pytest.mark.parametrize("field, value", [("rotary_base", 100), ("attention_dir", "bidirectional")])
def test_fingerprint_sees_config_that_changes_the_function_with_the_same_weights(char_tok_dir, field, value):
    base = {"positional_embedding_type": "rotary", "rotary_dim": 4}
    a = boot_native(char_tok_dir, **base)
    b = boot_native(char_tok_dir, **base, **{field: value})
    b.load_state_dict(a.state_dict())
    tokens = a.to_tokens(TEXTS)
    with torch.no_grad():
        assert not torch.equal(a(tokens), b(tokens))  # same weights, different function ...
    assert fingerprint(a) != fingerprint(b)  # ... so the cache key must differ


def test_an_hf_booted_model_saves_as_an_hf_directory_that_loads_back_verified(gpt2_model, tmp_path):
    path = save_model(gpt2_model, tmp_path / "m")
    assert (path / "config.json").is_file() and (path / HF_MARKER_FILE).is_file()
    back = load_model(path)
    tokens = gpt2_model.to_tokens(TEXTS)
    with torch.no_grad():
        assert torch.equal(back(tokens), gpt2_model(tokens))
    assert fingerprint(back) == fingerprint(gpt2_model)
    assert back.cfg.default_prepend_bos == gpt2_model.cfg.default_prepend_bos
    with pytest.raises(FileExistsError):  # an existing save is never replaced unasked
        save_model(gpt2_model, path)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + bytes(8))
    with pytest.raises(ValueError, match=r"model.safetensors"):
        load_model(path)


# --------------------------------------------------------------------------- local directories


@pytest.mark.parametrize("spec", ["{tmp}/missing", "./definitely-missing-dir"])
def test_missing_local_directory(tmp_path, spec):
    spec = spec.format(tmp=tmp_path)
    name = re.escape(spec.rsplit("/", 1)[-1])
    with pytest.raises(FileNotFoundError, match=rf"model directory '[^']*{name}' does not exist; give an existing"):
        load_model(spec)


def test_directory_without_model_files(tmp_path):
    with pytest.raises(ValueError, match=r"holds neither elk_lens\.json \(elk-lens format\) nor config\.json"):
        load_model(str(tmp_path))


def test_hf_dir_without_tokenizer_files_asks_for_tokenizer(gpt2_notok_dir):
    with pytest.raises(ValueError, match=r"has no tokenizer files .*pass tokenizer=DIR"):
        load_model(str(gpt2_notok_dir))


def test_tokenizer_argument_supplies_the_tokenizer(gpt2_notok_dir, char_tok_dir, gpt2_model):
    model = load_model(str(gpt2_notok_dir), tokenizer=str(char_tok_dir))
    assert model.tokenizer.get_vocab() == gpt2_model.tokenizer.get_vocab()
    assert torch.equal(model.to_tokens(TEXTS), gpt2_model.to_tokens(TEXTS))
    assert model.to_tokens("ab").tolist() == [[1, 4, 5]]  # <bos> a b, not a 1-token junk tokenizer


def test_revision_with_a_local_path_is_refused(gpt2_dir):
    with pytest.raises(ValueError, match=r"revision='step1000' applies to hub names only"):
        load_model(str(gpt2_dir), revision="step1000")


def test_relative_dir_named_like_a_transformerlens_alias_loads_the_local_model(gpt2_dir, tmp_path, monkeypatch):
    """TransformerLens maps the bare name "gpt2-small" to the hub model "gpt2"; a local dir must win."""
    shutil.copytree(gpt2_dir, tmp_path / "gpt2-small")
    monkeypatch.chdir(tmp_path)
    model = load_model("gpt2-small")
    assert model.cfg.d_model == D_MODEL


@pytest.mark.parametrize("name", ["gpt2", "neox"])
def test_hf_local_dir_matches_transformers(request, name):
    """Logits and every layer's residual equal HF's own eager forward on the same directory."""
    model = request.getfixturevalue(f"{name}_model")
    assert not model.training
    ref = AutoModelForCausalLM.from_pretrained(str(request.getfixturevalue(f"{name}_dir")), attn_implementation="eager")
    ref.eval()
    tokens = model.to_tokens(TEXTS[0])
    with torch.no_grad():
        out = ref(tokens, output_hidden_states=True)
        logits, cache = model.run_with_cache(tokens)
    drift = (logits - out.logits).abs().max().item()
    assert drift < HF_PARITY_TOL, f"{name}: logits drift {drift:.2e}"
    for layer in range(model.cfg.n_layers):  # per layer: compensating errors can cancel at the logits
        drift = (cache[f"blocks.{layer}.hook_resid_pre"] - out.hidden_states[layer]).abs().max().item()
        assert drift < HF_PARITY_TOL, f"{name}: resid_pre of layer {layer} drifts {drift:.2e}"


def test_native_model_loads_from_its_saved_dir_with_the_same_fingerprint_as_the_fixture(native_model, tmp_path):
    save_model(native_model, tmp_path / "m")
    assert fingerprint(load_model(str(tmp_path / "m"))) == fingerprint(native_model)
    assert json.loads((tmp_path / "m" / NATIVE_CONFIG_FILE).read_text())["config"]["seed"] == NATIVE_CFG["seed"]


# --------------------------------------------------------------------------- hub names


def test_hub_name_offline_fails_fast_and_names_the_alternatives(monkeypatch):
    """With HF_HUB_OFFLINE set no connection is even attempted (so no ~23 s of retries)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("a network connection was attempted while HF_HUB_OFFLINE is set")

    monkeypatch.setattr("socket.create_connection", no_network)
    with pytest.raises(HubUnreachableError, match=r"'elk-lens-tests/no-such-model' looks like a hub model name") as err:
        load_model("elk-lens-tests/no-such-model")
    assert isinstance(err.value, OSError)
    message = str(err.value)
    assert "HF_HUB_OFFLINE is set" in message
    assert "pass the local directory instead" in message and "snapshot_download" in message


def test_hub_name_without_network_says_the_hub_cannot_be_reached(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    def unreachable(*args, **kwargs):
        raise OSError("no route to host")

    monkeypatch.setattr("socket.create_connection", unreachable)
    with pytest.raises(HubUnreachableError, match=r"huggingface\.co cannot be reached \(OSError\)"):
        load_model("elk-lens-tests/no-such-model")


@pytest.mark.parametrize("device_map", ["auto", {"": "cpu"}])
def test_a_device_map_places_an_hf_model_and_capture_steering_and_attribution_read_the_same(
    llama_dir, device_map, monkeypatch
):
    """load_model(device_map=...) goes through the bridge to HF accelerate (issue 19). On a machine without
    GPUs every block lands on the CPU (transformers then dispatches nothing): the values must equal a plain
    device='cpu' load's exactly. Blocks offloaded beside others: the next test; blocks on several GPUs are
    untested here (docs/guide/scaling-out.md)."""
    from transformer_lens.model_bridge import TransformerBridge

    from elk_lens.capturing import capture, tokenize
    from elk_lens.circuits import attribution_patching
    from elk_lens.interventions import steer
    from elk_lens.reporters import Reporter

    plain = load_model(str(llama_dir))
    boots = []
    boot = TransformerBridge.boot_transformers
    monkeypatch.setattr(TransformerBridge, "boot_transformers", lambda *a, **k: boots.append(k) or boot(*a, **k))
    mapped = load_model(str(llama_dir), device_map=device_map)
    assert boots[0]["device_map"] == device_map and "device" not in boots[0]
    site = "blocks.1.hook_resid_pre"
    assert torch.equal(capture(plain, TEXTS, [site]).values, capture(mapped, TEXTS, [site]).values)
    tokens = tokenize(plain, TEXTS)
    last = tokens.mask.sum(1) - 1
    logits = []
    for model in (plain, mapped):
        with torch.no_grad(), steer(model, site, torch.ones(model.cfg.d_model), alpha=0.5, positions=last):
            logits.append(model(tokens.ids, attention_mask=tokens.mask))
    assert torch.equal(logits[0], logits[1])
    w = torch.linspace(-1, 1, plain.cfg.d_model)
    reporter = Reporter(w, 0.3, w, "random", "blocks.1.hook_resid_post")
    clean, corrupt = ["the cat sat", "a dog ran"], ["the cow sat", "a cat ran"]
    ap = [attribution_patching(m, reporter, clean, corrupt, allow_other_model=True) for m in (plain, mapped)]
    assert ap[0].keys() == ap[1].keys() and all(torch.equal(ap[0][k], ap[1][k]) for k in ap[0])


# block 1 on disk beside everything else on the CPU; then all of it on disk, as "auto" places a model larger
# than the memory it is given
SPLIT = {f"model.{m}": "cpu" for m in ("embed_tokens", "layers.0", "norm", "rotary_emb")} | {
    "model.layers.1": "disk",
    "lm_head": "cpu",
}


@pytest.mark.parametrize("placement", [dict(device_map=SPLIT), dict(device_map="auto", max_memory={"cpu": "1KB"})])
def test_weights_offloaded_to_disk_give_the_same_model_and_the_same_numbers(llama_dir, tmp_path, placement):
    """The CPU's own multi-place dispatch (issue 19): accelerate keeps offloaded weights on the meta device and
    brings them in for each forward. Forwards (capture, steering, attribution) need nothing; what reads
    weights outside one — the fingerprint, save_model, W_O for circuit scores, W_U for answer logits — reads
    them back (elk_lens._placement). Every number equals a plain load's, exactly; the offload folder elk-lens
    made is removed when the model is freed, and nothing else in offload_folder is touched."""
    import gc

    from elk_lens.capturing import capture, tokenize
    from elk_lens.circuits import attribution_patching, direct_attribution
    from elk_lens.interventions import steer
    from elk_lens.lm_output import output_log_odds
    from elk_lens.reporters import Reporter

    (tmp_path / "offload").mkdir()
    (tmp_path / "offload" / "index.json").write_text("mine")  # a user's file, where accelerate writes its index
    plain = load_model(str(llama_dir))
    mapped = load_model(str(llama_dir), **placement, offload_folder=tmp_path / "offload")
    assert any(p.is_meta for p in mapped.parameters()), "nothing was offloaded: the test would test nothing"
    (made,) = [p for p in (tmp_path / "offload").iterdir() if p.is_dir()]
    assert fingerprint(mapped) == fingerprint(plain)
    sites = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    assert torch.equal(capture(plain, TEXTS, sites).values, capture(mapped, TEXTS, sites).values)
    tokens = tokenize(plain, TEXTS)
    last = tokens.mask.sum(1) - 1
    logits = []
    for model in (plain, mapped):
        with torch.no_grad(), steer(model, sites[1], torch.ones(D_MODEL), alpha=0.5, positions=last):
            logits.append(model(tokens.ids, attention_mask=tokens.mask))
    assert torch.equal(logits[0], logits[1])
    w = torch.linspace(-1, 1, D_MODEL)
    reporter = Reporter(w, 0.3, w, "random", sites[1])
    clean, corrupt = ["the cat sat", "a dog ran"], ["the cow sat", "a cat ran"]
    for scores in (
        [attribution_patching(m, reporter, clean, corrupt, allow_other_model=True) for m in (plain, mapped)],
        [direct_attribution(m, reporter, clean, allow_other_model=True) for m in (plain, mapped)],
        [{"log_odds": output_log_odds(m, clean, answers=("a", "b"))} for m in (plain, mapped)],
    ):
        assert scores[0].keys() == scores[1].keys() and all(torch.equal(scores[0][k], scores[1][k]) for k in scores[0])
    saved = save_model(mapped, tmp_path / "saved")
    assert fingerprint(load_model(str(saved))) == fingerprint(plain)
    del mapped, model
    gc.collect()
    assert not made.exists() and (tmp_path / "offload" / "index.json").read_text() == "mine"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(device_map="everywhere"), r"device_map 'everywhere' is not one of \['auto'"),
        (dict(offload_folder="off"), r"offload_folder='off' applies with device_map"),
        (dict(max_memory={0: "1GiB"}), r"max_memory=\{0: '1GiB'\} applies with device_map"),
        (dict(device_map="auto", max_memory={0: 1.5}), "max_memory must be a dict of device -> size"),
        (dict(device_map={"model.layers.0": "disk"}), "device_map sends weights to 'disk': give offload_folder="),
        (dict(device_map={"model.layers.0": 1.5}), "device_map must be one of"),
        (dict(device_map="auto", device="cpu"), "give device or device_map, not both"),
    ],
)
def test_a_bad_device_map_is_refused_before_loading(llama_dir, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_model(str(llama_dir), **kwargs)


def test_a_native_model_refuses_a_device_map(char_tok_dir, tmp_path):
    path = save_model(boot_native(char_tok_dir), tmp_path / "native")
    with pytest.raises(ValueError, match="device_map applies to HF models"):
        load_model(str(path), device_map="auto")
