"""LoRA fine-tuning (``elk_lens.lora``) on a tiny random Llama (GQA, RoPE, SwiGLU, RMSNorm: SmolLM2's
architecture): the adapters start as the base model exactly, the merged weights compute what the
adapters do, only the adapters train, and a killed run resumes bit for bit."""

import pytest
import torch
from conftest import boot_native
from gguf_files import write_tiny_llama_gguf

from elk_lens.data.statements import StatementSet
from elk_lens.lora import TARGETS, Lora, LoraConfig, adapters_at, merge
from elk_lens.models import load_model
from elk_lens.train import FineTuneConfig, fine_tune

ANSWERS = ("t", "he")  # single tokens of the tiny Llama's vocabulary
TEXTS = [f"{a} and {b} is {a + b}" for a in range(6) for b in range(6)]
TRUTH = torch.tensor([i % 3 == 0 for i in range(len(TEXTS))])
CONFIG = FineTuneConfig(steps=6, lr=1e-2, warmup=1, batch_size=8, seed=0, answers=ANSWERS, checkpoints=(0, 2, 4, 6))
LORA = LoraConfig(rank=2, alpha=4.0, dropout=0.1)  # dropout draws from torch's RNG: the resume restores it
# Merged (W + s B A) vs adapted (W x + s B A x) logits and residuals, B ~ N(0, 0.02) (the adapters move the
# logits by ~1.5), relative to the largest value (~5-8): the measured drift is at most 8.5e-7 in float32 and
# 6.0e-16 in float64, nine orders apart, so the gap is the rounding of sums taken in another order.
F32_RTOL = 1e-5
F64_RTOL = 1e-12


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    """The tiny Llama's GGUF, converted once into a cache of this module's own (kept set for the tests:
    a trajectory's checkpoints load onto it again)."""
    root = tmp_path_factory.mktemp("lora_llama")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ELK_LENS_CACHE", str(root / "cache"))
        yield str(write_tiny_llama_gguf(root / "tiny.gguf"))


def _train(gguf, out, *, config=CONFIG, lora=LORA, **kwargs):
    model = load_model(gguf)
    return model, fine_tune(
        model, StatementSet(TEXTS, TRUTH), TRUTH, out, base_spec=gguf, config=config, lora=lora, **kwargs
    )


def _ids(model):
    return model.to_tokens(TEXTS[:4], padding_side="right")


def _resids(model):
    names = [f"blocks.{i}.hook_resid_post" for i in range(model.cfg.n_layers)]
    logits, cache = model.run_with_cache(_ids(model), names_filter=names)
    return [logits, *(cache[n] for n in names)]


def test_zero_b_at_init_is_exactly_the_base_model(gguf):
    model = load_model(gguf)
    base = model(_ids(model))
    adapters = Lora(model, LoraConfig(rank=4), seed=0)
    with adapters.attached():
        adapted = model(_ids(model))
        adapters.check_fired()  # every projection of every block ran its adapter
    assert torch.equal(adapted, base)
    assert len(adapters.tensors()) == 2 * len(TARGETS) * model.cfg.n_layers
    assert all(a.abs().max() > 0 for a in adapters.A) and all(torch.equal(b, torch.zeros_like(b)) for b in adapters.B)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, F32_RTOL), (torch.float64, F64_RTOL)])
def test_merged_weights_compute_what_the_adapters_do_at_every_layer(gguf, dtype, tol):
    """The TransformerLens hooks see the adapted projections: each block's residual and the logits of the
    adapted model match the model with the merged weights."""
    model = load_model(gguf, dtype=dtype)
    adapters = Lora(model, LoraConfig(rank=4), seed=1)
    with torch.no_grad():
        for b in adapters.B:
            b.copy_(torch.randn(b.shape, generator=torch.Generator().manual_seed(b.numel()), dtype=dtype) * 0.02)
    with adapters.attached():
        adapted = _resids(model)
    merged = load_model(gguf, dtype=dtype)
    merged.load_state_dict(adapters.merged(model))
    for i, (a, m) in enumerate(zip(adapted, _resids(merged), strict=True)):
        drift = ((a - m).abs().max() / a.abs().max()).item()
        where = "logits" if i == 0 else f"block {i - 1} resid_post"
        assert drift < tol, f"{where}: relative drift {drift:.2e} > {tol:.0e}"
    assert (adapted[0] - _resids(model)[0]).abs().max() > 1e-2  # the adapters change the function


def test_only_the_adapters_train_and_each_checkpoint_is_the_merged_model(gguf, tmp_path):
    base = load_model(gguf).state_dict()
    model, traj = _train(gguf, tmp_path / "run")
    assert traj.steps == [0, 2, 4, 6] and traj.info["lora"]["config"]["rank"] == LORA.rank
    first = traj.model_at(0).state_dict()
    assert all(torch.equal(first[k], v) for k, v in base.items())  # B = 0: the base model
    last = traj.model_at(-1).state_dict()
    assert all(torch.equal(last[k], v) for k, v in model.state_dict().items())  # the model ends merged
    adapted = {f"blocks.{i}.{t}.weight" for i in range(model.cfg.n_layers) for t in TARGETS}
    assert {k for k, v in base.items() if not torch.equal(last[k], v)} == adapted
    adapters, config = adapters_at(traj, -1)
    assert config == LORA
    assert all(torch.equal(merge(base, adapters, config)[k], v) for k, v in last.items())
    start, _ = adapters_at(traj, 0)
    moved = [k for k, v in adapters.items() if not torch.equal(start[k], v)]
    assert sorted(moved) == sorted(adapters)  # every A and B trained


def test_a_killed_lora_run_resumes_bit_identically_and_the_seed_decides(gguf, tmp_path):
    whole, whole_traj = _train(gguf, tmp_path / "whole")

    def kill_at_3(step, loss):
        if step == 3:  # after the step-2 checkpoint: step 3 is redone from the saved state
            raise Killed

    with pytest.raises(Killed):
        _train(gguf, tmp_path / "resumed", on_step=kill_at_3)
    resumed, resumed_traj = _train(gguf, tmp_path / "resumed")
    assert resumed_traj.info["history"] == whole_traj.info["history"]
    assert resumed_traj.info["lora"]["adapters"] == whole_traj.info["lora"]["adapters"]  # names and SHA-256s
    for c in whole_traj.checkpoints:  # every merged checkpoint and its adapters, byte for byte
        for name in (c.weights, c.weights.replace(".safetensors", ".lora.safetensors")):
            assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    assert all(torch.equal(resumed.state_dict()[k], v) for k, v in whole.state_dict().items())
    other = FineTuneConfig(**{**CONFIG.__dict__, "seed": 1, "steps": 2, "checkpoints": (2,)})
    _, seed1 = _train(gguf, tmp_path / "seed1", config=other)
    assert (
        adapters_at(seed1, -1)[0]["blocks.0.attn.q.lora_A"]
        .ne(adapters_at(whole_traj, 1)[0]["blocks.0.attn.q.lora_A"])
        .any()
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rank", 0, r"LoraConfig\.rank must lie in \[1, inf\); got 0"),
        ("rank", 2.0, r"LoraConfig\.rank must be an int; got 2\.0"),
        ("alpha", 0.0, r"LoraConfig\.alpha must lie in \(0, inf\); got 0\.0"),
        ("dropout", 1.0, r"LoraConfig\.dropout must lie in \[0, 1\); got 1\.0"),
        (
            "targets",
            ("attn.qkv",),
            r"LoraConfig\.targets must be .* from \['attn\.q', .*'mlp\.out'\]; got \('attn\.qkv',\)",
        ),
        ("targets", (), r"LoraConfig\.targets must be a non-empty tuple .*; got \(\)"),
        ("targets", ("attn.q", "attn.q"), r"LoraConfig\.targets must be .* distinct .*; got \('attn\.q', 'attn\.q'\)"),
        ("targets", ["attn.q"], r"LoraConfig\.targets must be a non-empty tuple .*; got \['attn\.q'\]"),
    ],
)
def test_a_bad_lora_setting_names_the_field_the_value_and_the_choices(field, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        LoraConfig(**{field: value})


def test_lora_runs_that_cannot_work_are_refused_before_training(gguf, tmp_path, char_tok_dir):
    data = StatementSet(TEXTS, TRUTH)
    frozen = FineTuneConfig(**{**CONFIG.__dict__, "frozen": ("embed.",)})
    with pytest.raises(ValueError, match=r"FineTuneConfig\.frozen=\('embed\.',\) with LoRA: only the adapters"):
        fine_tune(load_model(gguf), data, TRUTH, tmp_path / "a", base_spec=gguf, config=frozen, lora=LORA)
    with pytest.raises(TypeError, match="lora must be an elk_lens.lora.LoraConfig or None; got dict"):
        fine_tune(load_model(gguf), data, TRUTH, tmp_path / "a", base_spec=gguf, config=CONFIG, lora={"rank": 2})
    with pytest.raises(
        ValueError, match=r"block 0 has no linear projection 'mlp\.gate'.* have \['attn\.q', .*'mlp\.out'\]"
    ):
        Lora(boot_native(char_tok_dir), LoraConfig())  # GELU MLP: no gate
    short = FineTuneConfig(**{**CONFIG.__dict__, "steps": 1, "checkpoints": (1,)})
    fine_tune(load_model(gguf), data, TRUTH, tmp_path / "plain", base_spec=gguf, config=short)
    with pytest.raises(ValueError, match="holds a run without LoRA"):
        fine_tune(load_model(gguf), data, TRUTH, tmp_path / "plain", base_spec=gguf, config=short, lora=LORA)
    _train(gguf, tmp_path / "lora", config=short)
    with pytest.raises(ValueError, match="holds a LoRA run with other LoRA settings or on another base model"):
        _train(gguf, tmp_path / "lora", config=short, lora=LoraConfig(rank=3))
    other_base = load_model(gguf)
    other_base.load_state_dict({**other_base.state_dict(), "blocks.0.ln1.weight": torch.ones(other_base.cfg.d_model)})
    with pytest.raises(ValueError, match="holds a LoRA run with other LoRA settings or on another base model"):
        fine_tune(other_base, data, TRUTH, tmp_path / "lora", base_spec=gguf, config=short, lora=LORA)
    with pytest.raises(ValueError, match=r"holds a LoRA run \(pass its lora= settings to resume it\)"):
        fine_tune(load_model(gguf), data, TRUTH, tmp_path / "lora", base_spec=gguf, config=short)
