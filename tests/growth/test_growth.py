"""Growth operators and `GrowthMap` against their definitions.

Oracles: a function-preserving operator leaves the logits unchanged (max |Δlogit| against the source
model on random tokens, on random models of several shapes and on the trained zoo model); the grown
residual at the mapped hook equals ``P @`` the source residual; a transported reporter scores the grown
model's residuals as the original scores the source's. Composition is checked against growing step by
step, fitted maps against planted affine maps, and trainability against the gradients a next-token
loss puts on the new weights.
"""

import contextlib
import functools

import pytest
import torch
from transformer_lens.model_bridge import TransformerBridge

from elk_lens.capturing import capture
from elk_lens.growth import (
    GrowthMap,
    add_heads,
    fit_growth_map,
    float64_norms,
    grow,
    grow_d_head,
    insert_blocks,
    operators,
    stack_blocks,
    widen_d_model,
    widen_mlp,
)
from elk_lens.models import fingerprint, load_model
from elk_lens.quirky.data import quirky_arithmetic
from elk_lens.reporters import Reporter, fit_logistic, fit_mean_diff

F32_TOL = 1e-4  # the bound in float32 (measured <= 1.1e-5: zoo model, grow_d_head)
F64_TOL = 1e-9  # the bound in float64 (measured <= 3.0e-14: zoo model, grow-all)
# TL 4.3's NativeRMSNorm computes in float32 whatever the model's dtype, so an RMS model widened in
# d_model (its norms see other inputs) is exact only to float32 rounding in float64 without
# `float64_norms` (measured 7.1e-7 on logits of size ~4 here); the float64 checks run inside it
# (measured <= 2.4e-15), and this bounds the library's own float32 norm, tested as such below.
LIBRARY_RMS_F64_BOUND = 1e-5
RESID_F64_TOL = 1e-10  # grown residual vs P @ source residual, float64, LayerNorm (measured <= 4.3e-15)
TRANSPORT_TOL = 1e-5  # the bound on transported scores in float32 (measured 7.8e-6, logits ~28)
ALGEBRA_TOL = 1e-12  # float64 identities on matrices of width <= 256 (e.g. w'ᵀP = wᵀ; measured ~1e-15)
BROKEN = 0.1  # a non-preserving growth moves the logits by more than this (the issue; measured >= 1.98)
# A gradient counts as nonzero above this: live ones measured >= 3e-4, dead ones exactly 0 (or ~1e-18
# where a zero is computed as a difference of equal terms).
GRAD_FLOOR = 1e-6
SHARE_TOL = 1e-4  # float32 gradients of a split neuron's two copies vs their share ratio (measured 4.6e-7)

COMMON = dict(n_ctx=32, d_vocab=50)
CONFIGS = {
    "ln-gelu": dict(
        d_model=64, d_head=16, n_heads=4, n_layers=2, d_mlp=256, act_fn="gelu", seed=1, normalization_type="LN"
    ),
    # n_heads * d_head != d_model: grow(d_model=...) adds no heads
    "ln-relu-3L": dict(
        d_model=48, d_head=8, n_heads=5, n_layers=3, d_mlp=96, act_fn="relu", seed=2, normalization_type="LN"
    ),
    "rms-silu": dict(
        d_model=32, d_head=8, n_heads=4, n_layers=2, d_mlp=64, act_fn="silu", seed=3, normalization_type="RMS"
    ),
    "ln-rotary": dict(
        d_model=32,
        d_head=8,
        n_heads=4,
        n_layers=2,
        d_mlp=80,
        act_fn="gelu_new",
        seed=4,
        normalization_type="LN",
        positional_embedding_type="rotary",
    ),
}
# the modern-LM layout (SmolLM2, Llama): ln-rotary with RMSNorm, SwiGLU and grouped-query attention
CONFIGS["llama"] = {
    **CONFIGS["ln-rotary"],
    **dict(n_key_value_heads=2, d_mlp=48, act_fn="silu", gated_mlp=True, seed=5, normalization_type="RMS"),
}
ZOO = "zoo:quirky-arith-base"  # trained: d_model 128, 4 layers, LayerNorm, vocab 26


def _boot(name: str, dtype: torch.dtype = torch.float32, **overrides) -> TransformerBridge:
    """A random native model with every weight (LN gains and biases included) moved off its init."""
    if name == "zoo":
        return load_model(ZOO, dtype=dtype)
    cfg = {**COMMON, **CONFIGS[name], **overrides}
    model = TransformerBridge.boot_native(cfg, dtype=dtype).eval()
    gen = torch.Generator().manual_seed(cfg["seed"])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype))
    return model


def _tokens(model: TransformerBridge, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, model.cfg.d_vocab, (4, 20), generator=torch.Generator().manual_seed(seed))


def _logits(model: TransformerBridge, tokens: torch.Tensor) -> torch.Tensor:
    """The logits, a float64 model's with its norms in float64 (`float64_norms`)."""
    with torch.no_grad(), float64_norms(model) if _is_f64(model) else contextlib.nullcontext():
        return model(tokens)


def _is_f64(model: TransformerBridge) -> bool:
    return next(model.parameters()).dtype == torch.float64


@functools.cache
def _source(name: str, dtype: torch.dtype) -> tuple[TransformerBridge, torch.Tensor, torch.Tensor]:
    """Shared source model, tokens and logits for the exactness tests (the operators copy the weights)."""
    model = _boot(name, dtype)
    tokens = _tokens(model)
    return model, tokens, _logits(model, tokens)


def _width_mode(model: TransformerBridge) -> str:
    return "mean" if model.cfg.normalization_type == "LN" else "zero"


OPS = {
    "insert_blocks": lambda m: insert_blocks(m, [0, m.cfg.n_layers // 2, m.cfg.n_layers]),
    # more than twice as wide: some neurons are split twice
    "widen_mlp-split": lambda m: widen_mlp(m, 2 * m.cfg.d_mlp + 5, mode="split"),
    "widen_mlp-zero": lambda m: widen_mlp(m, m.cfg.d_mlp + 7, mode="zero"),
    "add_heads": lambda m: add_heads(m, m.cfg.n_heads + 2),
    "grow_d_head": lambda m: grow_d_head(m, m.cfg.d_head + 4),
    "widen_d_model": lambda m: widen_d_model(m, m.cfg.d_model + 24, mode=_width_mode(m)),
    "grow-depth-width": lambda m: grow(
        m, n_layers=2 * m.cfg.n_layers, d_model=2 * m.cfg.d_model, d_model_mode=_width_mode(m)
    ),
    "grow-all": lambda m: grow(
        m,
        n_layers=m.cfg.n_layers + 1,
        d_model=m.cfg.d_model + 16,
        d_mlp=m.cfg.d_mlp + 16,
        n_heads=m.cfg.n_heads + 2,  # a multiple of the key/value groups (2) on llama
        d_head=m.cfg.d_head + 2,
        d_model_mode=_width_mode(m),
    ),
}
EXACT_CASES = [(model, op) for model in (*CONFIGS, "zoo") for op in OPS]


def _tolerance(dtype: torch.dtype) -> float:
    return F32_TOL if dtype == torch.float32 else F64_TOL


# ---------------------------------------------------------------- function preservation


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("model_name,op", EXACT_CASES)
def test_preserving_operators_keep_the_logits(model_name, op, dtype):
    model, tokens, before = _source(model_name, dtype)
    grown, growth = OPS[op](model)
    err = float((_logits(grown, tokens) - before).abs().max())
    assert err <= _tolerance(dtype), f"{op} on {model_name}: max |Δlogit| {err:.2e}"
    assert growth.exact
    assert (growth.source, growth.target) == (fingerprint(model), fingerprint(grown))
    assert growth.P.shape == (grown.cfg.d_model, model.cfg.d_model) and growth.P.dtype == torch.float64
    assert len(growth.layers) == model.cfg.n_layers and growth.layers[-1] < grown.cfg.n_layers
    # every old head somewhere, in order (grouped-query heads keep their group: tested below)
    assert len(growth.heads) == model.cfg.n_heads and list(growth.heads) == sorted(set(growth.heads))
    assert growth.heads[-1] < grown.cfg.n_heads


def test_grow_reaches_the_requested_shape():
    model = _boot("ln-gelu")
    grown, growth = grow(model, n_layers=4, d_model=128)
    # n_heads * d_head = d_model is kept: heads are added to fill the width
    assert (grown.cfg.n_layers, grown.cfg.d_model, grown.cfg.n_heads, grown.cfg.d_head) == (4, 128, 8, 16)
    assert growth.ops == ("add_heads(4->8)", "widen_d_model(64->128, mean)", "insert_blocks([1, 2])")
    odd = _boot("ln-relu-3L")  # 5 heads of 8 in d_model 48: no layout to keep
    assert grow(odd, d_model=64)[0].cfg.n_heads == 5


@pytest.mark.parametrize(
    "variant",
    [
        dict(gated_mlp=True, act_fn="gelu"),  # GeGLU
        dict(n_key_value_heads=2),
        dict(n_key_value_heads=4),
        dict(attn_only=True),
        dict(positional_embedding_type="rotary", rotary_dim=8),  # half of each head rotates
    ],
    ids=["geglu", "gqa", "kv-heads-set", "attn-only", "partial-rotary"],
)
def test_operators_on_attention_and_mlp_variants(variant):
    """Every operator that applies to the variant keeps the logits.

    Regressions: widen_d_model left a gated MLP's gate unpadded (a load_state_dict size error), and
    add_heads kept an explicit n_key_value_heads = n_heads at the old count (the same error).
    """
    model = _boot("ln-gelu", torch.float64, **variant)
    tokens = _tokens(model)
    before = _logits(model, tokens)
    ops = [lambda m: insert_blocks(m, 1), lambda m: widen_d_model(m, 80), lambda m: grow_d_head(m, 20)]
    ops += [lambda m: add_heads(m, 8), lambda m: add_heads(m, 8, n_key_value_heads=m.cfg.n_heads)]
    if not variant.get("attn_only"):
        ops += [lambda m: widen_mlp(m, 300), lambda m: widen_mlp(m, 300, mode="zero")]
    for op in ops:
        grown, growth = op(model)
        err = float((_logits(grown, tokens) - before).abs().max())
        assert err <= F64_TOL, f"{growth.ops}: max |Δlogit| {err:.2e}"


@pytest.mark.parametrize(
    "n_heads,n_kv,heads",
    [(6, None, (0, 1, 3, 4)), (8, 4, (0, 1, 2, 3)), (12, 4, (0, 1, 3, 4)), (8, 2, (0, 1, 4, 5))],
    ids=["heads-in-groups", "new-groups", "both", "one-group-more-queries"],
)
def test_add_heads_on_grouped_query_attention_keeps_each_head_with_its_key_value_head(n_heads, n_kv, heads):
    """4 query heads in 2 key/value groups: old head g·2 + j lands at g·r' + j; at that index, the grown
    model's query head attends as the old one did (the same pattern) and its K/V group holds the old
    group's weights."""
    model = _boot("llama", torch.float64)
    grown, growth = add_heads(model, n_heads, n_key_value_heads=n_kv)
    assert growth.heads == heads and growth.exact
    assert grown.cfg.n_key_value_heads == (n_kv or 2)
    tokens = _tokens(model)
    names = lambda n: n.endswith("hook_pattern")  # noqa: E731
    with torch.no_grad(), float64_norms(model), float64_norms(grown):
        _, old = model.run_with_cache(tokens, names_filter=names)
        _, new = grown.run_with_cache(tokens, names_filter=names)
    for name in old:
        err = float((new[name][:, list(heads)] - old[name]).abs().max())
        assert err <= RESID_F64_TOL, f"{name}: max |pattern gap| {err:.2e}"


def test_zero_padding_a_layernorm_model_with_centred_writers_is_exact():
    """Regression: the centred-writer check took the max over the writers' weights, not their means,
    so it refused every LayerNorm model (reporting a weight as the 'mean')."""
    model = _boot("ln-gelu", torch.float64)
    state = model.state_dict()
    for k, v in state.items():
        if k in ("embed.weight", "pos_embed.weight"):  # one write vector per row
            state[k] = v - v.mean(1, keepdim=True)
        elif k.endswith(("attn.o.weight", "mlp.out.weight", "attn.o.bias", "mlp.out.bias")):  # per column
            state[k] = v - v.mean(0, keepdim=True)
    model.load_state_dict(state, strict=True)
    tokens = _tokens(model)
    grown, growth = widen_d_model(model, 80, mode="zero")
    err = float((_logits(grown, tokens) - _logits(model, tokens)).abs().max())
    assert err <= F64_TOL, f"max |Δlogit| {err:.2e}"
    assert torch.equal(growth.P, torch.cat([torch.eye(64), torch.zeros(16, 64)]).double())


@pytest.mark.parametrize("model_name", ["ln-gelu", "zoo"])
def test_non_preserving_contrasts_break_the_function(model_name):
    model = _boot(model_name)
    tokens = _tokens(model)
    before = _logits(model, tokens)
    n = model.cfg.n_layers
    for grown, growth in (stack_blocks(model), insert_blocks(model, [1, n], preserve=False)):
        err = float((_logits(grown, tokens) - before).abs().max())
        assert err > BROKEN, f"{growth.ops}: max |Δlogit| only {err:.2e}"
        assert not growth.exact
    stacked, growth = stack_blocks(model)
    assert stacked.cfg.n_layers == 2 * n and growth.layers == tuple(range(n))
    assert torch.equal(stacked.state_dict()[f"blocks.{n}.mlp.in.weight"], model.state_dict()["blocks.0.mlp.in.weight"])


# ---------------------------------------------------------------- the residual embedding


def _residuals(model: TransformerBridge, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad(), float64_norms(model):
        _, cache = model.run_with_cache(
            tokens, names_filter=lambda n: n.endswith(("hook_resid_pre", "hook_resid_post"))
        )
    return dict(cache.items())


RESID_CASES = {
    "widen_d_model-mean": ("ln-gelu", lambda m: widen_d_model(m, 96, mode="mean")),
    "widen_d_model-zero-rms": ("rms-silu", lambda m: widen_d_model(m, 40, mode="zero")),
    "insert_blocks": ("ln-relu-3L", lambda m: insert_blocks(m, [0, 2, 2])),
    "grow-ln": ("ln-gelu", lambda m: grow(m, n_layers=4, d_model=128, d_mlp=300)),
    "grow-rms": ("rms-silu", lambda m: grow(m, n_layers=3, d_model=48, d_model_mode="zero")),
}


@pytest.mark.parametrize("case", RESID_CASES)
def test_grown_residual_is_P_times_the_source_residual(case):
    model_name, op = RESID_CASES[case]
    model = _boot(model_name, torch.float64)
    grown, growth = op(model)
    tokens = _tokens(model)
    source, target = _residuals(model, tokens), _residuals(grown, tokens)
    for name, x in source.items():
        err = float((target[growth.site(name)] - x @ growth.P.T).abs().max())
        assert err <= RESID_F64_TOL, f"{name} -> {growth.site(name)}: max |x' - P x| {err:.2e}"
    for j in sorted(set(range(grown.cfg.n_layers)) - set(growth.layers)):  # new blocks add nothing
        assert torch.equal(target[f"blocks.{j}.hook_resid_post"], target[f"blocks.{j}.hook_resid_pre"])


def test_the_library_rms_norm_bounds_float64_growth_without_float64_norms():
    """Without `float64_norms`, TL 4.3's float32 RMSNorm is all that separates a widened RMS model from its
    source in float64: the gap is float32 rounding (above F64_TOL, under LIBRARY_RMS_F64_BOUND), and
    inside the context it is float64 rounding. A LayerNorm model has no such norm to switch."""
    model = _boot("rms-silu", torch.float64)
    grown, _ = widen_d_model(model, 40, mode="zero")
    tokens = _tokens(model)
    with torch.no_grad():
        library = float((grown(tokens) - model(tokens)).abs().max())
    assert F64_TOL < library <= LIBRARY_RMS_F64_BOUND, f"library float32 RMSNorm: max |Δlogit| {library:.2e}"
    assert float((_logits(grown, tokens) - _logits(model, tokens)).abs().max()) <= F64_TOL
    with float64_norms(model) as n:  # ln1, ln2 of 2 blocks and ln_final
        assert n == 5
    with float64_norms(_boot("ln-gelu", torch.float64)) as n:
        assert n == 0


def test_float64_norms_refuses_a_float32_model_and_restores_the_library_norm():
    model = _boot("rms-silu", torch.float64)
    tokens = _tokens(model)
    with torch.no_grad():
        before = model(tokens)
        with pytest.raises(RuntimeError, match="boom"), float64_norms(model):
            raise RuntimeError("boom")
        assert torch.equal(model(tokens), before)  # the library's float32 norm is back after the raise
    with pytest.raises(ValueError, match=r"needs a float64 model.*torch\.float32"), float64_norms(_boot("rms-silu")):
        pass


def test_embedding_matrices_and_layer_maps():
    model = _boot("ln-relu-3L")
    d = model.cfg.d_model
    _, growth = widen_d_model(model, d + 8, mode="mean")
    expected = torch.cat([torch.eye(d, dtype=torch.float64), torch.ones(8, d, dtype=torch.float64) / d])
    assert torch.equal(growth.P, expected)
    gram = growth.P.T @ growth.P  # mean-padding is not orthogonal: PᵀP = I + (8/d²) 11ᵀ
    assert (gram - torch.eye(d).double() - 8 / d**2).abs().max() < ALGEBRA_TOL
    # before old block 0, and twice before old block 2: old blocks land at 1, 2, 5 of 6
    grown, growth = insert_blocks(model, [2, 0, 2])
    assert growth.layers == (1, 2, 5) and grown.cfg.n_layers == 6
    assert growth.site("blocks.2.hook_resid_pre") == "blocks.5.hook_resid_pre"
    assert growth.site("blocks.0.attn.hook_pattern") == "blocks.1.attn.hook_pattern"
    assert growth.site("hook_embed") == "hook_embed"  # not in a block: the name is kept
    assert insert_blocks(model, 3)[1].layers == (0, 1, 2)  # 3 = after the last block
    assert grow(model, n_layers=5)[1].layers == (0, 2, 3)  # one new block after old 0 and one after old 2


# ---------------------------------------------------------------- transporting reporters


@pytest.fixture(scope="module")
def zoo_transport():
    """Reporters fitted on the trained zoo model at blocks.2, and that model grown in every direction."""
    model = load_model(ZOO)
    data = quirky_arithmetic(100, split="val", seed=0)
    site = "blocks.2.hook_resid_pre"
    acts = capture(model, data, [site]).at(0)
    provenance = {"model": fingerprint(model)}
    reporters = [fit(acts, data.truth, site=site, provenance=provenance) for fit in (fit_logistic, fit_mean_diff)]
    grown, growth = grow(model, n_layers=6, d_model=192, d_mlp=600)
    return model, grown, growth, data, acts, reporters


def test_transported_reporters_score_as_the_originals(zoo_transport):
    model, grown, growth, data, acts, reporters = zoo_transport
    assert growth.site("blocks.2.hook_resid_pre") == "blocks.3.hook_resid_pre"  # old blocks at 0, 1, 3, 4
    for reporter in reporters:
        moved = growth.transport(reporter)
        assert moved.site == "blocks.3.hook_resid_pre" and moved.b == reporter.b
        grown_acts = capture(grown, data, [moved.site]).at(0)
        err = float((moved(grown_acts) - reporter(acts)).abs().max())
        assert err <= TRANSPORT_TOL, f"{reporter.method}: max |score' - score| {err:.2e}"
        assert (moved.v - growth.P @ reporter.v).abs().max() < ALGEBRA_TOL  # the concept vector: v' = P v
        assert (moved.w @ growth.P - reporter.w).abs().max() < ALGEBRA_TOL  # the readout: w'ᵀP = wᵀ
        assert moved.provenance["model"] == growth.target == fingerprint(grown)
        assert moved.provenance["transported_from"] == fingerprint(model)
        assert moved.provenance["growth"] == list(growth.ops) and moved.provenance["growth_exact"]


def test_the_readout_must_move_as_a_covector(zoo_transport):
    """Mean-padding has PᵀP ≠ I: P w is not the readout, and reading with it changes the scores."""
    _, grown, growth, data, acts, reporters = zoo_transport
    reporter = reporters[0]  # logistic
    grown_acts = capture(grown, data, [growth.site(reporter.site)]).at(0).double()
    as_vector = growth.vector(reporter.w)
    assert (growth.covector(reporter.w) - as_vector).abs().max() > 100 * ALGEBRA_TOL
    err = float((grown_acts @ as_vector + reporter.b - reporter(acts)).abs().max())
    assert err > 100 * TRANSPORT_TOL, f"P w as a readout is off by only {err:.2e}"


def test_transport_checks_the_reporter(zoo_transport):
    model, grown, growth, data, acts, reporters = zoo_transport
    reporter = reporters[0]
    other = Reporter(reporter.w, reporter.b, reporter.v, "logistic", reporter.site, {"model": "0123456789abcdef"})
    with pytest.raises(ValueError, match="fitted on model 0123456789abcdef, this map grows model"):
        growth.transport(other)
    narrow = Reporter(reporter.w[:64], 0.0, reporter.v[:64], "logistic", reporter.site, dict(reporter.provenance))
    with pytest.raises(ValueError, match="reporter reads d_model=64, this map starts from d_model=128"):
        growth.transport(narrow)
    anonymous = Reporter(reporter.w, reporter.b, reporter.v, "logistic", reporter.site, {})
    with pytest.raises(ValueError, match="records no model fingerprint.*allow_unverified=True"):
        growth.transport(anonymous)
    moved = growth.transport(anonymous, allow_unverified=True)
    assert torch.equal(moved.w, growth.transport(reporter).w) and moved.provenance["transported_from"] is None


# ---------------------------------------------------------------- composition


def _random_reporter(model: TransformerBridge, site: str, seed: int = 0) -> Reporter:
    gen = torch.Generator().manual_seed(seed)
    w, v = torch.randn(2, model.cfg.d_model, generator=gen, dtype=torch.float64)
    return Reporter(w, 0.3, v, "logistic", site, {"model": fingerprint(model)})


def test_composition_equals_growing_step_by_step():
    model = _boot("ln-gelu", torch.float64)
    grown, growth = grow(model, n_layers=4, d_model=128)
    # grow's steps and seeds (seed=0): heads with seed 1, width with 3, depth with 4
    g1, a = add_heads(model, 8, seed=1)
    g2, b = widen_d_model(g1, 128, seed=3)
    g3, c = insert_blocks(g2, [1, 2], seed=4)
    assert fingerprint(g3) == fingerprint(grown)
    composed = a.then(b).then(c)
    assert torch.equal(composed.P, growth.P)
    assert (composed.P - c.P @ b.P @ a.P).abs().max() < ALGEBRA_TOL
    assert composed.layers == growth.layers == tuple(c.layers[b.layers[i]] for i in a.layers) == (0, 2)
    assert composed.heads == growth.heads == (0, 1, 2, 3)
    assert (composed.source, composed.target) == (fingerprint(model), fingerprint(grown))
    assert composed.ops == growth.ops == a.ops + b.ops + c.ops and composed.exact
    other_order = a.then(b.then(c))
    assert torch.equal(other_order.P, composed.P) and other_order.layers == composed.layers

    reporter = _random_reporter(model, "blocks.1.hook_resid_post")
    at_once, stepwise = composed.transport(reporter), c.transport(b.transport(a.transport(reporter)))
    assert (at_once.w - stepwise.w).abs().max() < ALGEBRA_TOL
    assert (at_once.v - stepwise.v).abs().max() < ALGEBRA_TOL
    assert (at_once.site, at_once.b) == (stepwise.site, stepwise.b) == ("blocks.2.hook_resid_post", 0.3)


def test_then_refuses_maps_that_do_not_meet():
    model = _boot("ln-gelu")
    _, a = widen_d_model(model, 96)
    _, b = insert_blocks(model, 1)
    with pytest.raises(ValueError, match=f"this map ends at model {a.target}, the next starts at {b.source}"):
        a.then(b)
    wrong_width = GrowthMap(torch.eye(64, dtype=torch.float64), (0, 1), (0,), a.target, "x")
    with pytest.raises(ValueError, match="widths 96 and 64 differ"):
        a.then(wrong_width)


# ---------------------------------------------------------------- saving


def _assert_same_map(loaded: GrowthMap, saved: GrowthMap) -> None:
    assert torch.equal(loaded.P, saved.P) and loaded.P.dtype == torch.float64
    assert (loaded.offset is None) == (saved.offset is None)
    if saved.offset is not None:
        assert torch.equal(loaded.offset, saved.offset)
    for name in ("layers", "heads", "source", "target", "exact", "ops", "sites", "info"):
        assert getattr(loaded, name) == getattr(saved, name), name


def test_save_and_load_round_trip(tmp_path):
    model = _boot("ln-relu-3L")
    _, growth = grow(model, n_layers=4, d_model=64, d_mlp=128)
    _assert_same_map(GrowthMap.load(growth.save(tmp_path / "op")), growth)
    source, target, _ = _planted(seed=5)
    sites = dict(source_site="blocks.1.hook_resid_pre", target_site="blocks.2.hook_resid_pre")
    fitted = fit_growth_map(source, target, **sites, source_model="small", target_model="big")
    loaded = GrowthMap.load(fitted.save(tmp_path / "fitted"))
    _assert_same_map(loaded, fitted)
    assert loaded.site("blocks.1.hook_resid_pre") == "blocks.2.hook_resid_pre"
    with pytest.raises(FileNotFoundError, match="holds no saved growth map"):
        GrowthMap.load(tmp_path)


# ---------------------------------------------------------------- maps fitted on activations

N_FIT, D_SRC, D_TGT = 2000, 16, 24
NOISE = 1e-3  # std of the noise added to the planted targets
# An entry of the fitted G (or c) has standard error NOISE / sqrt(N_FIT) ≈ 2.2e-5 with unit-variance
# sources; the largest of ~400 entries lies within 4 of those: allow 10.
FIT_TOL = 10 * NOISE / N_FIT**0.5


def _planted(seed: int, d_tgt: int = D_TGT, orthogonal: bool = False):
    """Sources x ~ N(0, I), targets x' = G x + c + NOISE·ε, and (G, c)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N_FIT, D_SRC, generator=gen, dtype=torch.float64)
    G = torch.randn(d_tgt, D_SRC, generator=gen, dtype=torch.float64) / D_SRC**0.5
    if orthogonal:
        G = torch.linalg.qr(torch.randn(D_SRC, D_SRC, generator=gen, dtype=torch.float64)).Q
    c = torch.randn(d_tgt, generator=gen, dtype=torch.float64)
    noise = NOISE * torch.randn(N_FIT, d_tgt, generator=gen, dtype=torch.float64)
    return x, x @ G.T + c + noise, (G, c, noise)


def test_lstsq_recovers_a_planted_affine_map():
    x, y, (G, c, noise) = _planted(seed=0)
    fitted = fit_growth_map(
        x,
        y,
        source_site="blocks.0.hook_resid_post",
        target_site="blocks.1.hook_resid_post",
        source_model="a",
        target_model="b",
    )
    assert (fitted.P - G).abs().max() < FIT_TOL and (fitted.offset - c).abs().max() < FIT_TOL
    # the residual is the noise's share of the centred target (slightly less on the fitted rows)
    centred = y - y.mean(0)
    expected = float(torch.linalg.norm(noise - noise.mean(0)) / torch.linalg.norm(centred))
    assert 0.9 * expected < fitted.info["residual"] <= expected, (fitted.info["residual"], expected)
    assert not fitted.exact and fitted.layers == () and fitted.info["rows"] == N_FIT
    with pytest.raises(ValueError, match=r"holds at \['blocks.0.hook_resid_post'\] only"):
        fitted.site("blocks.1.hook_resid_post")
    ridged = fit_growth_map(x, y, source_site="s", target_site="t", source_model="a", target_model="b", ridge=1e-6)
    assert (ridged.P - G).abs().max() < FIT_TOL  # a tiny ridge barely moves a well-determined fit


def test_procrustes_recovers_a_planted_rotation():
    x, y, (Q, c, _) = _planted(seed=1, d_tgt=D_SRC, orthogonal=True)
    fitted = fit_growth_map(
        x, y, source_site="s", target_site="t", source_model="a", target_model="b", method="procrustes"
    )
    assert (fitted.P.T @ fitted.P - torch.eye(D_SRC, dtype=torch.float64)).abs().max() < ALGEBRA_TOL
    assert (fitted.P - Q).abs().max() < FIT_TOL and (fitted.offset - c).abs().max() < FIT_TOL


def test_reporters_transported_through_a_fitted_map_score_up_to_the_noise():
    x, y, _ = _planted(seed=2)
    fitted = fit_growth_map(
        x,
        y,
        source_site="blocks.0.hook_resid_post",
        target_site="blocks.3.hook_resid_post",
        source_model="small",
        target_model="big",
    )
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(D_SRC, generator=gen, dtype=torch.float64)
    reporter = Reporter(w, 0.5, w.clone(), "logistic", "blocks.0.hook_resid_post", {"model": "small"})
    moved = fitted.transport(reporter)
    assert moved.site == "blocks.3.hook_resid_post" and not moved.provenance["growth_exact"]
    # the score error is w'·(noise − fit error): Gaussian with std NOISE·|w'| and more; 6 std covers 2000 rows
    err = float((moved(y) - reporter(x)).abs().max())
    assert err < 6 * NOISE * float(moved.w.norm()), err
    # a contrast reporter reads x'_true − x'_false, where the offset cancels: its bias is not shifted
    contrast = Reporter(w, 0.5, w.clone(), "ccs", "blocks.0.hook_resid_post", {"model": "small"}, reads="contrast")
    moved_contrast = fitted.transport(contrast)
    assert moved_contrast.b == 0.5 and moved.b != 0.5
    err = float((moved_contrast(y[:1000], y[1000:]) - contrast(x[:1000], x[1000:])).abs().max())
    assert err < 6 * 2**0.5 * NOISE * float(moved.w.norm()), err


def test_fit_growth_map_refuses_bad_input():
    x, y, _ = _planted(seed=4)
    kw = dict(source_site="s", target_site="t", source_model="a", target_model="b")
    with pytest.raises(ValueError, match="procrustes needs equal widths, got 16 and 24"):
        fit_growth_map(x, y, method="procrustes", **kw)
    with pytest.raises(ValueError, match="16 pairs cannot determine a 16-wide least-squares map"):
        fit_growth_map(x[:16], y[:16], **kw)
    fit_growth_map(x[:16], y[:16], ridge=0.1, **kw)  # a ridge makes it determined
    with pytest.raises(ValueError, match=r"method must be one of \('lstsq', 'procrustes'\), got 'pca'"):
        fit_growth_map(x, y, method="pca", **kw)
    with pytest.raises(ValueError, match="a growth map goes to a model at least as wide: 24 -> 16"):
        fit_growth_map(y, x, **kw)
    with pytest.raises(ValueError, match="need paired"):
        fit_growth_map(x, y[:-1], **kw)


# ---------------------------------------------------------------- trainability


def _backward(model: TransformerBridge) -> dict[str, torch.Tensor]:
    """Gradients of a next-token loss on random tokens, by state-dict name."""
    model.zero_grad()
    tokens = _tokens(model, seed=1)
    logits = model(tokens)
    torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten()).backward()
    return {k: p.grad.clone() for k, p in model.state_dict(keep_vars=True).items() if p.grad is not None}


def _live(grad: torch.Tensor) -> bool:
    return float(grad.abs().max()) > GRAD_FLOOR


def test_new_writers_and_split_neurons_get_gradients():
    model = _boot("ln-gelu")
    n, d_mlp, width = model.cfg.n_layers, model.cfg.d_mlp, model.cfg.n_heads * model.cfg.d_head
    grad = _backward(insert_blocks(model, 1)[0])  # new block 1: zero writers, random readers
    assert _live(grad["blocks.1.attn.o.weight"]) and _live(grad["blocks.1.mlp.out.weight"])
    grad = _backward(widen_mlp(model, d_mlp + 16, mode="zero")[0])
    assert all(_live(grad[f"blocks.{i}.mlp.out.weight"][:, d_mlp:]) for i in range(n))
    grad = _backward(add_heads(model, 6)[0])
    assert all(_live(grad[f"blocks.{i}.attn.o.weight"][:, width:]) for i in range(n))
    grad = _backward(grow_d_head(model, 20)[0])  # the new value dimensions' zero output columns
    assert all(_live(grad[f"blocks.{i}.attn.o.weight"].unflatten(1, (4, 20))[:, :, 16:]) for i in range(n))

    grown, _ = widen_mlp(model, d_mlp + 8, mode="split")
    grad, state = _backward(grown), grown.state_dict()
    for i in range(n):
        w_in, g_in = state[f"blocks.{i}.mlp.in.weight"], grad[f"blocks.{i}.mlp.in.weight"]
        w_out = state[f"blocks.{i}.mlp.out.weight"]
        for k in range(d_mlp, d_mlp + 8):
            src = int((w_in[:d_mlp] - w_in[k]).abs().amax(1).argmin())
            assert torch.equal(w_in[src], w_in[k])  # a copy of an old neuron's input weights
            # the two copies see the same input, so their W_in gradients are in the ratio of their output
            # weights, (1 - α) / α: unequal unless α = 1/2
            share = float(w_out[:, k] @ w_out[:, src] / w_out[:, src].square().sum())
            assert float((g_in[k] - share * g_in[src]).norm() / g_in[k].norm()) < SHARE_TOL
            assert abs(share - 1) > 10 * SHARE_TOL, f"layer {i}: neuron {src} split equally"


@pytest.mark.parametrize("model_name,mode", [("ln-gelu", "mean"), ("rms-silu", "zero")])
def test_widened_residual_coordinates_can_train(model_name, mode):
    """The new residual coordinates' norm output is zero at growth (that is what hides them), so their
    gains and reader columns have zero gradient at first; the new writer rows must get one, different
    per coordinate, and after one step the gains and readers get theirs.

    Regression: with zero gains on the new coordinates, every new weight of an RMS model had gradient
    exactly 0 (a saddle), and an LN model's new writer rows all got the same gradient.
    """
    model = _boot(model_name)
    d = model.cfg.d_model
    grown, _ = widen_d_model(model, d + 16, mode=mode)
    grad = _backward(grown)
    writers = {"embed.weight": grad["embed.weight"][:, d:].T}
    for i in range(model.cfg.n_layers):
        for k in ("attn.o.weight", "mlp.out.weight"):
            writers[f"blocks.{i}.{k}"] = grad[f"blocks.{i}.{k}"][d:]
    for name, g in writers.items():  # rows: new coordinates
        assert _live(g), f"{name}: no gradient on the new coordinates"
        assert _live(g - g.mean(0)), f"{name}: the same gradient on every new coordinate"
    with torch.no_grad():
        for p in grown.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    grad = _backward(grown)
    gains = ["ln_final.weight"] + [
        f"blocks.{i}.{ln}.weight" for i in range(model.cfg.n_layers) for ln in ("ln1", "ln2")
    ]
    kinds = ("attn.q.weight", "attn.k.weight", "attn.v.weight", "mlp.in.weight")
    readers = ["unembed.weight"] + [f"blocks.{i}.{k}" for i in range(model.cfg.n_layers) for k in kinds]
    for name in gains:
        assert _live(grad[name][d:]), f"{name}: no gradient on the new coordinates after a step"
    for name in readers:
        assert _live(grad[name][:, d:]), f"{name}: no gradient on the new columns after a step"


# ---------------------------------------------------------------- bad input


def test_dimensions_only_grow():
    model = _boot("ln-gelu")
    cases = [
        (lambda: widen_mlp(model, 256), "d_mlp can only grow: 256 -> 256"),
        (lambda: widen_mlp(model, 100, mode="zero"), "d_mlp can only grow: 256 -> 100"),
        (lambda: add_heads(model, 3), "n_heads can only grow: 4 -> 3"),
        (lambda: grow_d_head(model, 16), "d_head can only grow: 16 -> 16"),
        (lambda: widen_d_model(model, 32), "d_model can only grow: 64 -> 32"),
        (lambda: grow(model, n_layers=1), "n_layers can only grow: 2 -> 1"),
        (lambda: grow(model, d_mlp=256), "grow needs at least one of"),  # the model's own size: nothing to do
        (lambda: grow(model), "grow needs at least one of"),
        (lambda: widen_mlp(model, 300, mode="copy"), "widen_mlp mode must be 'split' or 'zero'"),
        (lambda: widen_d_model(model, 96, mode="copy"), "widen_d_model mode must be 'mean' or 'zero'"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()


def test_insert_positions_must_be_in_range():
    model = _boot("ln-gelu")
    for at in (3, -1, [0, 5], []):
        with pytest.raises(ValueError, match=r"insert positions must lie in 0\.\.2"):
            insert_blocks(model, at)


def test_widening_modes_must_fit_the_norm():
    with pytest.raises(ValueError, match="mean-padding changes an RMSNorm's mean square; .*mode='zero'"):
        widen_d_model(_boot("rms-silu"), 48, mode="mean")
    with pytest.raises(
        ValueError, match=r"zero-padding a LayerNorm model needs centred writers; 10 are not .*mode='mean'"
    ):
        widen_d_model(_boot("ln-gelu"), 96, mode="zero")
    with pytest.raises(ValueError, match="d_model 72 is not divisible by d_head 16"):
        grow(_boot("ln-gelu"), d_model=72)
    assert grow(_boot("ln-gelu"), d_model=72, n_heads=5)[0].cfg.n_heads == 5  # choosing the heads yourself is fine
    assert grow(_boot("ln-gelu"), d_model=72, n_heads=4)[0].cfg.n_heads == 4  # the current count keeps them


def test_unsupported_models_are_refused(gpt2_model):
    ops = [
        lambda m: insert_blocks(m, 1),
        stack_blocks,
        lambda m: widen_mlp(m, 300),
        lambda m: add_heads(m, 6),
        lambda m: grow_d_head(m, 20),
        lambda m: widen_d_model(m, 96),
        lambda m: grow(m, n_layers=3),
    ]
    for op in ops:
        with pytest.raises(
            ValueError,
            match="native \\(boot_native\\) models only; .*Supported: TransformerLensNative "
            "with normalization 'LN' or 'RMS'",
        ):
            op(gpt2_model)
    for norm in ("LNPre", "RMSPre", None):
        other = _boot("ln-gelu", normalization_type=norm)
        for op in ops:
            with pytest.raises(ValueError, match=f"normalization_type {norm!r} is not supported; supported: "):
                op(other)
    with pytest.raises(ValueError, match=r"widen_mlp: this model has no MLP \(attn_only=True\)"):
        widen_mlp(_boot("ln-gelu", attn_only=True), 300)
    gqa = _boot("llama")  # 4 query heads in 2 groups of 2
    for n_heads, n_kv in ((6, 4), (5, None), (8, 1), (6, 6)):
        with pytest.raises(
            ValueError,
            match=rf"add_heads: {n_heads} query heads in {n_kv or 2} key/value groups cannot hold the model's 4 "
            r"heads in 2 groups of 2: n_key_value_heads must be >= 2 and divide n_heads, with n_heads / "
            r"n_key_value_heads >= 2",
        ):
            add_heads(gqa, n_heads, n_key_value_heads=n_kv)


def test_growth_map_refuses_bad_sites_and_shapes():
    model = _boot("ln-gelu")
    _, growth = insert_blocks(model, 1)
    with pytest.raises(ValueError, match=r"'blocks\.2\.hook_resid_pre': the source model has blocks 0\.\.1"):
        growth.site("blocks.2.hook_resid_pre")
    with pytest.raises(ValueError, match=r"P must have shape \(d_model', d_model\) with d_model' >= d_model"):
        GrowthMap(torch.zeros(4, 8, dtype=torch.float64), (0,), (0,), "a", "b")
    with pytest.raises(ValueError, match="layers must be strictly increasing"):
        GrowthMap(torch.eye(4, dtype=torch.float64), (1, 0), (0,), "a", "b")


def test_an_operator_map_then_a_fitted_map_transports_like_two_steps():
    """grow, then a map fitted on the grown model's activations (as after further training): the composed
    map keeps the fitted site (pulled back through the layer renumbering) and its fit's info."""
    gen = torch.Generator().manual_seed(0)
    model = _boot("ln-gelu")
    grown, growth = insert_blocks(model, [0])
    site, grown_site = "blocks.1.hook_resid_pre", growth.site("blocks.1.hook_resid_pre")
    x = torch.randn(300, growth.d_target, generator=gen, dtype=torch.float64)
    y = x @ torch.randn(growth.d_target, growth.d_target, generator=gen, dtype=torch.float64) + 0.5
    fitted = fit_growth_map(
        x,
        y,
        source_site=grown_site,
        target_site="blocks.2.hook_resid_pre",
        source_model=growth.target,
        target_model="later",
    )
    composed = growth.then(fitted)
    assert composed.site(site) == "blocks.2.hook_resid_pre" and composed.info["then"]["method"] == "lstsq"
    w, v = (torch.randn(growth.d_source, generator=gen, dtype=torch.float64) for _ in range(2))
    reporter = Reporter(w, 0.3, v, "logistic", site, {"model": growth.source})
    twice = fitted.transport(growth.transport(reporter))
    once = composed.transport(reporter)
    assert once.site == twice.site
    torch.testing.assert_close(once.w, twice.w, rtol=0, atol=ALGEBRA_TOL)
    assert once.b == pytest.approx(twice.b, abs=ALGEBRA_TOL)


def test_grow_checks_every_argument_before_the_first_step(monkeypatch):
    """A bad d_mlp, mode or seed is refused before grow_d_head (the first step) copies a weight."""

    def first_step(*args, **kwargs):
        raise AssertionError("grow started growing before checking its arguments")

    monkeypatch.setattr(operators, "grow_d_head", first_step)
    model = _boot("ln-gelu")
    for kwargs, error, match in [
        (dict(d_head=32, d_mlp=100), ValueError, "d_mlp can only grow: 256 -> 100"),
        (dict(d_head=32, d_model_mode="split"), ValueError, "widen_d_model mode must be 'mean' or 'zero'"),
        (dict(d_head=32, seed=0.5), TypeError, "seed must be an int; got 0.5"),
        (dict(d_head=32, n_layers=3.0), TypeError, "n_layers must be an int; got 3.0"),
    ]:
        with pytest.raises(error, match=match):
            grow(model, **kwargs)


def test_widen_mlp_refuses_an_mlp_with_its_own_layer_norm():
    """act_fn="solu_ln" normalizes over the neurons: widen_mlp named it instead of a state-dict size mismatch."""
    model = _boot("ln-gelu", act_fn="solu_ln")
    with pytest.raises(ValueError, match=r"widen_mlp cannot grow act_fn='solu_ln'.*'blocks\.0\.mlp\.ln\.bias'"):
        widen_mlp(model, 300)
    assert widen_mlp(_boot("ln-gelu"), 300)[0].cfg.d_mlp == 300  # an element-wise activation still grows
