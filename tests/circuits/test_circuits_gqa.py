"""Circuit scores on SmolLM2's architecture (Llama: grouped-query attention, RMSNorm pre-norm, rotary,
SwiGLU): components are *query* heads, patching one changes that head's write and nothing else, direct
attribution still decomposes the score, and attribution patching is exact patching's derivative.

A tiny random HF Llama in float64 (4 query heads on 2 key/value heads, so heads 0-1 and 2-3 share their
keys and values); the toy's twins and named tolerances (``test_circuits.py``).
"""

import pytest
import torch
from test_circuits import (
    CLEAN,
    CORRUPT,
    FP64_TOL,
    _reporter,
    assert_ap_is_the_derivative,
    assert_direct_attribution_is_exact,
)

from elk_lens.capturing import tokenize
from elk_lens.circuits import (
    attribution_patching,
    direct_attribution,
    edge_attribution_patching,
    exact_patching,
    upstream_components,
)
from elk_lens.models import load_model

HEAD = 1  # shares its key/value head with head 0
# The rotary attention bridge takes its softmax in float32 even in a float64 model
# (transformer_lens position_embeddings_attention.py, as HF's eager Llama attention), so a patched score
# carries ~3e-9 of float32 rounding and a difference quotient ~3e-9 / eps of it: the measured gap to AP
# grows as eps shrinks (3.1e-6 at eps = 1e-2, 2.4e-5 at 1e-4, 2.9e-4 at 1e-5), the signature of
# rounding, where a wrong derivative would stay put. So the derivative check uses eps = 1e-2, where the
# O(eps^2) truncation and the rounding both stay far below this tolerance.
AP_EPS = 1e-2
AP_RTOL = 1e-4


@pytest.fixture(scope="module")
def llama64(llama_dir):
    return load_model(str(llama_dir), dtype=torch.float64)


def _at(model, tokens, hook: str, edit=None) -> torch.Tensor:
    """The activation at ``hook`` on ``tokens``, after ``edit`` (a hook on ``blocks.0.attn.hook_z``)."""
    seen = {}
    hooks = [("blocks.0.attn.hook_z", edit)] if edit else []
    hooks.append((hook, lambda t, hook: seen.setdefault("t", t.detach().clone())))
    with torch.no_grad():
        model.run_with_hooks(tokens.ids, attention_mask=tokens.mask, fwd_hooks=hooks)
    return seen["t"]


def test_components_are_the_query_heads(llama64):
    cfg = llama64.cfg
    assert (cfg.n_heads, cfg.n_key_value_heads) == (4, 2)
    z = _at(llama64, tokenize(llama64, CLEAN), "blocks.0.attn.hook_z")
    assert z.shape[2:] == (cfg.n_heads, cfg.d_head)
    assert llama64.blocks[0].attn.W_O.shape == (cfg.n_heads, cfg.d_head, cfg.d_model)
    heads = [f"L0H{h}" for h in range(4)]
    assert upstream_components(llama64, "blocks.1.hook_resid_pre") == ["embed", *heads, "L0MLP"]


@pytest.mark.parametrize("site", ["blocks.1.hook_resid_pre", "blocks.1.hook_resid_mid", "blocks.1.hook_resid_post"])
def test_direct_attribution_reconstructs_the_score(llama64, site):
    """RMSNorm sits inside each block, so the residual is still a plain sum of writes."""
    assert_direct_attribution_is_exact(llama64, site)


def test_patching_one_query_head_changes_only_its_write(llama64):
    tokens = tokenize(llama64, CLEAN + CORRUPT)
    clean, corrupt = tokens.rows(0, len(CLEAN)), tokens.rows(len(CLEAN), 2 * len(CLEAN))
    z_clean, z_twin = (_at(llama64, t, "blocks.0.attn.hook_z") for t in (clean, corrupt))

    def patch(t, hook):
        t = t.clone()
        t[:, :, HEAD] = z_twin[:, :, HEAD]
        return t

    z = _at(llama64, clean, "blocks.0.attn.hook_z", patch)
    others = [h for h in range(4) if h != HEAD]
    assert torch.equal(z[:, :, others], z_clean[:, :, others])  # head 0 shares HEAD's keys and values
    assert float((z[:, :, HEAD] - z_clean[:, :, HEAD]).abs().max()) > 1e-3
    # the residual after the attention moves by exactly that head's write
    moved = _at(llama64, clean, "blocks.0.hook_resid_mid", patch) - _at(llama64, clean, "blocks.0.hook_resid_mid")
    write = (z_twin[:, :, HEAD] - z_clean[:, :, HEAD]) @ llama64.blocks[0].attn.W_O[HEAD].detach()
    err = float((moved - write).abs().max())
    assert err < FP64_TOL, f"patched residual off the head's write by {err:.2e}"
    # and exact patching scores it as the change in its direct attribution
    reporter = _reporter(llama64, "blocks.0.hook_resid_mid")
    name = f"L0H{HEAD}"
    exact = exact_patching(llama64, reporter, CLEAN, CORRUPT, components=[name])[name]
    da = direct_attribution(llama64, reporter, CORRUPT)[name] - direct_attribution(llama64, reporter, CLEAN)[name]
    assert float((exact - da).abs().max()) < FP64_TOL and float(exact.abs().max()) > 1e-3


def test_attribution_patching_is_the_derivative_of_exact_patching(llama64):
    """Patch a + eps (a' - a): the central difference quotient must equal AP for every component."""
    assert_ap_is_the_derivative(llama64, eps=AP_EPS, rtol=AP_RTOL)


def test_attribution_patching_is_exact_for_writes_straight_into_the_site(llama64):
    reporter = _reporter(llama64, "blocks.1.hook_resid_mid")  # layer 1's heads write into it directly
    names = [f"L1H{h}" for h in range(4)]
    exact = exact_patching(llama64, reporter, CLEAN, CORRUPT, components=names)
    ap = attribution_patching(llama64, reporter, CLEAN, CORRUPT, components=names)
    errors = {n: float((ap[n] - exact[n]).abs().max()) for n in names}
    assert max(errors.values()) < FP64_TOL, errors


def test_edge_scores_refuse_grouped_query_attention(llama64):
    """Edges are not needed by the circuits analysis; on a GQA model they refuse rather than misread."""
    reporter = _reporter(llama64, "blocks.1.hook_resid_pre")
    with pytest.raises(ValueError, match="grouped-query attention"):
        edge_attribution_patching(llama64, reporter, CLEAN, CORRUPT)
