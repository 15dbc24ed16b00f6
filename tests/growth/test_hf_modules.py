"""Growth on HF modules (`elk_lens.growth.hf_modules`): Gemma 3 and GPT-NeoX, which have no exact native copy.

Oracles: the source model's own logits and residuals. In float64 (with `float64_norms`, since transformers'
Gemma3RMSNorm computes in float32 whatever the dtype) the grown model must agree to ``F64_RTOL`` of the
logits' size; in float32 to ``TOL_FACTOR`` × the source's own float32-vs-float64 gap, as the randomized
native check does (tests/growth/test_growth_property.py).
"""

import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM

from elk_lens.growth import (
    add_heads,
    float64_norms,
    grow,
    grow_d_head,
    insert_blocks,
    stack_blocks,
    to_native,
    widen_d_model,
    widen_mlp,
)
from elk_lens.models import fingerprint, load_model, save_model

F64_RTOL = 1e-12  # float64 |Δlogit| / max|logit| (measured <= 6e-16 on these fixtures)
TOL_FACTOR = 8.0  # float32 |Δlogit| <= this × the source's float32-vs-float64 gap (the property test's factor)
TEXTS = ["the cat sat on the mat", "a b c d e f g h i j"]

# each operator on each architecture: (name, call)
GEMMA_OPS = [
    ("insert_blocks", lambda m: insert_blocks(m, [0, 3, 3], seed=1)),
    ("widen_mlp split", lambda m: widen_mlp(m, 80, seed=2)),
    ("widen_mlp zero", lambda m: widen_mlp(m, 80, mode="zero", seed=2)),
    ("add_heads in groups", lambda m: add_heads(m, 8, seed=3)),
    ("add_heads new groups", lambda m: add_heads(m, 8, n_key_value_heads=4, seed=3)),
    ("grow", lambda m: grow(m, n_layers=5, d_mlp=100, n_heads=8, seed=4)),
]
NEOX_OPS = [
    ("insert_blocks", lambda m: insert_blocks(m, [1, 2], seed=1)),
    ("widen_mlp split", lambda m: widen_mlp(m, 200, seed=2)),
    ("widen_mlp zero", lambda m: widen_mlp(m, 200, mode="zero", seed=2)),
    ("grow", lambda m: grow(m, n_layers=4, d_mlp=160, seed=4)),
]


def _perturbed(src, dst):
    """The fixture's HF model with every weight moved off its init (norm gains off 1, o_proj off 0.02 scale),
    so that no operator passes by the weights being trivial."""
    model = AutoModelForCausalLM.from_pretrained(str(src))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    model.save_pretrained(str(dst))
    for f in src.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(f, dst / f.name)
    return dst


@pytest.fixture(scope="module")
def dirs(gemma3_dir, neox_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_grow")
    return {"gemma3": _perturbed(gemma3_dir, root / "gemma3"), "neox": _perturbed(neox_dir, root / "neox")}


def _logits(model, norms64=False):
    tokens = model.to_tokens(TEXTS)
    with torch.no_grad():
        if norms64:
            with float64_norms(model):
                return model(tokens)
        return model(tokens)


CASES = [("gemma3", *op) for op in GEMMA_OPS] + [("neox", *op) for op in NEOX_OPS]
CASE_IDS = [f"{arch}-{name}" for arch, name, _ in CASES]


@pytest.mark.parametrize(("arch", "name", "op"), CASES, ids=CASE_IDS)
def test_growth_on_hf_modules_keeps_the_function_and_maps_every_old_block(dirs, arch, name, op):
    small = load_model(str(dirs[arch]), dtype="float64")
    grown, growth = op(small)
    assert growth.exact and type(grown.original_model) is type(small.original_model)
    want, got = _logits(small, norms64=True), _logits(grown, norms64=True)
    assert (got - want).abs().max() <= F64_RTOL * want.abs().max(), name
    tokens = small.to_tokens(TEXTS)
    sites = [f"blocks.{i}.hook_resid_pre" for i in range(small.cfg.n_layers)]
    with torch.no_grad(), float64_norms(small), float64_norms(grown):
        _, before = small.run_with_cache(tokens, names_filter=sites)
        _, after = grown.run_with_cache(tokens, names_filter=[growth.site(s) for s in sites])
    for s in sites:
        assert (after[growth.site(s)] - before[s]).abs().max() <= F64_RTOL * before[s].abs().max(), s


@pytest.mark.parametrize(("arch", "name", "op"), CASES, ids=CASE_IDS)
def test_growth_on_hf_modules_in_float32_stays_within_the_models_own_rounding(dirs, arch, name, op):
    small32, small64 = load_model(str(dirs[arch])), load_model(str(dirs[arch]), dtype="float64")
    gap = (_logits(small32).double() - _logits(small64)).abs().max()
    grown32, _ = op(small32)
    assert (_logits(grown32) - _logits(small32)).abs().max() <= TOL_FACTOR * gap, name


def test_new_heads_leave_the_old_heads_attention_where_the_map_says(dirs):
    small = load_model(str(dirs["gemma3"]), dtype="float64")
    grown, growth = add_heads(small, 16, n_key_value_heads=4, seed=0)  # 2 groups of 2 -> 4 groups of 4
    assert growth.heads == (0, 1, 4, 5)
    assert grown.original_model.config.num_key_value_heads == 4
    tokens = small.to_tokens(TEXTS)
    hook = "blocks.1.attn.hook_pattern"
    with torch.no_grad():
        a = small.run_with_cache(tokens, names_filter=[hook])[1][hook]
        b = grown.run_with_cache(tokens, names_filter=[hook])[1][hook]
    assert b.shape[1] == 16
    torch.testing.assert_close(b[:, list(growth.heads)], a, rtol=0, atol=1e-12)


def test_a_new_gemma3_block_attends_like_the_old_block_after_it(dirs):
    small = load_model(str(dirs["gemma3"]))
    assert small.original_model.config.layer_types == ["sliding_attention", "full_attention", "sliding_attention"]
    grown, growth = insert_blocks(small, [1, 3], seed=0)
    assert growth.layers == (0, 2, 3)
    assert grown.original_model.config.layer_types == [
        "sliding_attention",
        "full_attention",  # new, before old block 1 (full)
        "full_attention",
        "sliding_attention",
        "sliding_attention",  # new, at the end: the last block's kind
    ]


def test_a_grown_hf_model_saves_and_loads_back_verified(dirs, tmp_path):
    small = load_model(str(dirs["gemma3"]))
    grown, _ = grow(small, n_layers=4, d_mlp=80, n_heads=8, seed=0)
    path = save_model(grown, tmp_path / "grown")
    back = load_model(str(path))
    assert fingerprint(back) == fingerprint(grown)
    assert back.original_model.config.num_hidden_layers == 4
    torch.testing.assert_close(_logits(back), _logits(grown), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("arch", "call", "message"),
    [
        ("neox", lambda m: add_heads(m, 8), r"add_heads cannot grow an HF GPTNeoXForCausalLM: HF GPT-NeoX derives"),
        ("neox", lambda m: grow(m, n_heads=8), r"add_heads cannot grow an HF GPTNeoXForCausalLM: HF GPT-NeoX"),
        ("gemma3", lambda m: grow_d_head(m, 16), r"grow_d_head cannot grow an HF Gemma3ForCausalLM: its q/k norms"),
        ("gemma3", lambda m: widen_d_model(m, 64), r"widen_d_model cannot grow an HF Gemma3ForCausalLM: its embed"),
        ("gemma3", lambda m: grow(m, d_model=64), r"widen_d_model cannot grow an HF Gemma3ForCausalLM"),
        ("gemma3", lambda m: stack_blocks(m), r"stack_blocks cannot grow an HF Gemma3ForCausalLM: it is built for"),
        ("neox", lambda m: widen_d_model(m, 64, mode="mean"), r"supported on GPTNeoXForCausalLM: grow, insert_bl"),
        ("gemma3", lambda m: add_heads(m, 6, n_key_value_heads=4), r"add_heads: 6 query heads in 4 key/value groups"),
        ("gemma3", lambda m: widen_mlp(m, 64), r"d_mlp can only grow: 64 -> 64"),
        (
            "gemma3",
            lambda m: add_heads(m, 6),
            r"add_heads: transformers refuses Gemma3TextConfig .* hidden size \(32\) is not a multiple of .* \(6\)",
        ),
        ("neox", lambda m: insert_blocks(m, [5]), r"insert positions must lie in 0..2"),
    ],
)
def test_what_cannot_grow_exactly_on_hf_modules_is_refused_with_the_reason(dirs, arch, call, message):
    with pytest.raises(ValueError, match=message):
        call(load_model(str(dirs[arch])))


@pytest.mark.parametrize("arch", ["gemma3", "neox"])
def test_to_native_points_these_architectures_to_growth_on_their_modules(dirs, arch):
    with pytest.raises(ValueError, match=r"grow it on its HF modules"):
        to_native(load_model(str(dirs[arch])))
