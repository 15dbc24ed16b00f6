"""`to_native` against its oracle, the HF-booted bridge it copies.

HF Llama computes its attention softmax and its RMSNorm in float32 whatever the model's dtype; the native
model computes its softmax in the model's dtype. So a float64 comparison is only as exact as float32 until
those two casts are removed on the HF side (`hf_float64`) and the native norms compute in float64
(`float64_norms`): then the copy agrees to float64 rounding, which shows the float32 drift is rounding, not
a bug (the TransformerLens contributing guide's float64 check). The tiny fixture's weights (std 0.02) leave
attention nearly uniform, so every check also runs on a sharper copy (std 0.2), on which a conversion that
skipped the rotary interleave moves the logits by more than ``BROKEN``.
"""

import pytest
import torch
from conftest import BOS_ID, N_CTX, VOCAB, _save_hf, _with_tokenizer
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from elk_lens.growth import convert, float64_norms, grow
from elk_lens.growth.convert import to_native
from elk_lens.models import fingerprint, load_model, save_model
from elk_lens.reporters import fit_mean_diff

F32_TOL = 1e-5  # float32 logits (measured 6.7e-8 on the fixture, logits ~0.7; 2.7e-6 on the sharp copy, ~4.9)
HF_CASTS_TOL = 1e-5  # float64, HF's float32 softmax and norm left in (measured 7.9e-8 fixture, 1.1e-6 sharp)
# float64, the casts removed: logits (measured 2.2e-16 fixture, 8.1e-15 sharp), residuals (<= 5.3e-15), and
# the sharp copy grown in every dimension against the HF model (6.7e-15)
F64_TOL = 1e-12
BROKEN = 1.0  # sharp copy without the rotary interleave (measured 3.9)


@pytest.fixture(scope="module")
def sharp_dir(tmp_path_factory, llama_dir, char_tok_dir):
    cfg = LlamaConfig.from_pretrained(str(llama_dir), initializer_range=0.2)
    return _with_tokenizer(_save_hf(LlamaForCausalLM, cfg, tmp_path_factory.mktemp("hf_llama_sharp")), char_tok_dir)


@pytest.fixture(params=["fixture", "sharp"])
def model_dir(request, llama_dir, sharp_dir):
    return llama_dir if request.param == "fixture" else sharp_dir


@pytest.fixture
def hf_float64(monkeypatch):
    """HF Llama's softmax and RMSNorm in the input's dtype: exactly its float32 formulas, without the casts."""
    softmax = torch.nn.functional.softmax

    def softmax64(x, dim=None, _stacklevel=3, dtype=None):
        return softmax(x, dim=dim, dtype=None if x.dtype == torch.float64 else dtype)

    def rms64(self, h):
        return self.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    monkeypatch.setattr(torch.nn.functional, "softmax", softmax64)
    monkeypatch.setattr(LlamaRMSNorm, "forward", rms64)


def _tokens(model) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    texts = model.to_tokens(["the cat sat on a mat.", "is 12 more than 7?"])[:, :N_CTX]  # padded batch
    rand = torch.randint(4, VOCAB, (4, texts.shape[1]), generator=gen)
    return torch.cat([texts, rand])


def _gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


@torch.no_grad()
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_logits_equal_the_hf_bridge(model_dir, dtype):
    hf = load_model(str(model_dir), dtype=dtype)
    native, _ = to_native(hf)
    assert native.cfg.architecture == "TransformerLensNative" and next(native.parameters()).dtype == dtype
    tokens = _tokens(hf)
    err = _gap(native(tokens), hf(tokens))
    tol = F32_TOL if dtype == torch.float32 else HF_CASTS_TOL
    assert err <= tol, f"{model_dir.name} {dtype}: max |Δlogit| {err:.2e}"


@torch.no_grad()
def test_float64_copy_is_exact_once_the_float32_casts_are_gone(model_dir, hf_float64):
    """Logits and every block's input residual agree to float64 rounding: the conversion keeps the residual
    basis, so growth maps and reporters fitted on the HF model apply to the copy. The float32 source converted
    with ``dtype`` is the same model as the HF bridge booted in float64 (the checkpoint is float32)."""
    hf = load_model(str(model_dir), dtype="float64")
    native, _ = to_native(load_model(str(model_dir)), dtype="float64")
    tokens = _tokens(hf)
    names = lambda n: n.endswith("hook_resid_pre")  # noqa: E731
    logits, want = hf.run_with_cache(tokens, names_filter=names)
    with float64_norms(native):
        got_logits, got = native.run_with_cache(tokens, names_filter=names)
    assert sorted(got) == sorted(want) == [f"blocks.{i}.hook_resid_pre" for i in range(hf.cfg.n_layers)]
    for name in want:
        assert _gap(got[name], want[name]) <= F64_TOL, f"{name}: max gap {_gap(got[name], want[name]):.2e}"
    assert _gap(got_logits, logits) <= F64_TOL, f"max |Δlogit| {_gap(got_logits, logits):.2e}"


@torch.no_grad()
def test_the_check_sees_a_conversion_without_the_rotary_interleave(sharp_dir, monkeypatch):
    hf = load_model(str(sharp_dir))
    tokens = _tokens(hf)
    monkeypatch.setattr(convert, "_interleave", torch.arange)  # HF's half-split layout kept as it is
    err = _gap(to_native(hf)[0](tokens), hf(tokens))
    assert err > BROKEN, f"max |Δlogit| {err:.2e}: the logits test could not tell the layouts apart"


@torch.no_grad()
def test_saves_loads_and_grows_keeping_the_hf_logits(sharp_dir, tmp_path, hf_float64):
    """End to end: HF → native → saved → loaded → grown in every dimension keeps the HF model's logits."""
    hf = load_model(str(sharp_dir), dtype="float64")
    tokens = _tokens(hf)
    want = hf(tokens)
    native, conversion = to_native(hf)
    d = hf.cfg.d_model
    assert conversion.exact and torch.equal(conversion.P, torch.eye(d, dtype=torch.float64))
    assert (conversion.source, conversion.target) == (fingerprint(hf), fingerprint(native))
    loaded = load_model(str(save_model(native, tmp_path / "m")), dtype="float64")
    assert torch.equal(loaded(tokens), native(tokens)) and fingerprint(loaded) == fingerprint(native)
    grown, growth = grow(loaded, n_layers=3, d_model=48, d_mlp=96, n_heads=6, d_head=10, d_model_mode="zero")
    assert (grown.cfg.n_heads, grown.cfg.n_key_value_heads) == (6, 2) and growth.exact
    with float64_norms(grown):
        err = _gap(grown(tokens), want)
    assert err <= F64_TOL, f"{growth.ops}: max |Δlogit| against the HF model {err:.2e}"
    # a reporter fitted on the HF model moves through the composed map and scores the grown model's
    # residuals as it scored the HF model's
    site = "blocks.1.hook_resid_pre"
    names = lambda n: n == site  # noqa: E731
    _, small = hf.run_with_cache(tokens, names_filter=names)
    whole = conversion.then(growth)
    with float64_norms(grown):
        _, big = grown.run_with_cache(tokens, names_filter=names)
    x, x_big = small[site].reshape(-1, d), big[whole.site(site)].reshape(-1, grown.cfg.d_model)
    labels = (x[:, 0] > x[:, 0].median()).long()
    reporter = fit_mean_diff(x, labels, site=site, provenance={"model": fingerprint(hf)})
    moved = whole.transport(reporter)
    assert whole.ops[0] == "to_native(LlamaForCausalLM)" and moved.site == whole.site(site)
    assert _gap(moved(x_big), reporter(x)) <= F64_TOL


@torch.no_grad()
@pytest.mark.parametrize("prepend_bos", [True, False])
def test_keeps_the_bos_rule(llama_dir, tmp_path, prepend_bos):
    """SmolLM2's GGUF boots with default_prepend_bos=False over a tokenizer that prepends one
    (`elk_lens.models._load_gguf`); the copy, and the copy saved and loaded, tokenize as the source."""
    hf = load_model(str(llama_dir))
    hf.cfg.default_prepend_bos = prepend_bos
    native, _ = to_native(hf)
    loaded = load_model(str(save_model(native, tmp_path / "m")))
    want = hf.to_tokens("ab c")
    assert (want[0, 0] == BOS_ID) == prepend_bos
    assert torch.equal(native.to_tokens("ab c"), want) and torch.equal(loaded.to_tokens("ab c"), want)


@torch.no_grad()
def test_a_shorter_context_computes_the_same(llama_dir):
    hf = load_model(str(llama_dir))
    tokens = _tokens(hf)[:, :12]
    short, _ = to_native(hf, n_ctx=12)
    assert short.cfg.n_ctx == 12 and torch.equal(short(tokens), to_native(hf)[0](tokens))
    with pytest.raises(ValueError, match=r"n_ctx must lie in \[1, inf\); got 0"):
        to_native(hf, n_ctx=0)


def _llama_variant(tmp_path, llama_dir, char_tok_dir, **overrides):
    cfg = LlamaConfig.from_pretrained(str(llama_dir), **overrides)
    return load_model(str(_with_tokenizer(_save_hf(LlamaForCausalLM, cfg, tmp_path / "variant"), char_tok_dir)))


@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(attention_bias=True), r"attention_bias=True .*supported: attention_bias=False"),
        (dict(mlp_bias=True), r"mlp_bias=True .*supported: mlp_bias=False"),
        (dict(hidden_act="gelu"), r"hidden_act 'gelu' .*supported: 'silu'"),
        (
            dict(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}),
            r"rope_type 'linear' .*supported: 'default'",
        ),
    ],
    ids=["attention-bias", "mlp-bias", "gelu", "linear-rope"],
)
def test_refuses_llama_settings_it_cannot_copy_exactly(tmp_path, llama_dir, char_tok_dir, overrides, match):
    with pytest.raises(ValueError, match=match):
        to_native(_llama_variant(tmp_path, llama_dir, char_tok_dir, **overrides))


@pytest.fixture(scope="module")
def gpt2_sharp_dir(tmp_path_factory, gpt2_notok_dir, char_tok_dir):
    cfg = GPT2Config.from_pretrained(str(gpt2_notok_dir), initializer_range=0.2)
    return _with_tokenizer(_save_hf(GPT2LMHeadModel, cfg, tmp_path_factory.mktemp("hf_gpt2_sharp")), char_tok_dir)


@torch.no_grad()
def test_gpt2_copies_and_grows_keeping_the_hf_logits(gpt2_sharp_dir, hf_float64):
    """GPT-2's Conv1D weights (o, MLP in and out) arrive as (in, out) and are transposed; q, k, v arrive split
    and as nn.Linear wants them. A LayerNorm model: float64 is exact without float64 norms."""
    for dtype, tol in ((torch.float32, F32_TOL), (torch.float64, F64_TOL)):
        hf = load_model(str(gpt2_sharp_dir), dtype=dtype)
        tokens = _tokens(hf)
        native, conversion = to_native(hf)
        assert conversion.ops == ("to_native(GPT2LMHeadModel)",) and native.cfg.normalization_type == "LN"
        assert _gap(native(tokens), hf(tokens)) <= tol, f"{dtype}: max |Δlogit| {_gap(native(tokens), hf(tokens)):.2e}"
    grown, growth = grow(native, n_layers=3, d_model=48, d_mlp=150, d_head=10)
    assert _gap(grown(tokens), hf(tokens)) <= F64_TOL, f"{growth.ops}: max |Δlogit| against the HF model"


def test_refuses_other_architectures_and_native_models(neox_model, llama_dir):
    with pytest.raises(ValueError, match=r"'GPTNeoXForCausalLM' \(a parallel residual.*supported: LlamaForCausalLM"):
        to_native(neox_model)
    with pytest.raises(ValueError, match="already native"):
        to_native(to_native(load_model(str(llama_dir)))[0])
    processed = load_model(str(llama_dir))
    processed.process_weights()  # folds the norms' gains into the weights they feed
    with pytest.raises(ValueError, match=r"processed \(process_weights\); convert a fresh boot"):
        to_native(processed)
