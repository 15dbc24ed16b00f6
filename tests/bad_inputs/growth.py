"""Bad inputs to the growth operators and fitted growth maps: sizes, modes, positions, seeds, models.

Every operator refuses before it copies a weight, naming the argument, the value and what it accepts; a
model it cannot grow exactly (an MLP with its own LayerNorm) is refused by name, not by a state-dict crash.
"""

import torch
from conftest import boot_native

from bad_inputs import Case
from elk_lens.growth import add_heads, fit_growth_map, grow, grow_d_head, insert_blocks, widen_d_model, widen_mlp


def _acts(seed: int, n: int = 20, d: int = 4) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _fit(**kwargs):
    args = dict(
        source_site="blocks.0.hook_resid_pre", target_site="blocks.0.hook_resid_pre", source_model="a", target_model="b"
    )
    return fit_growth_map(_acts(0), _acts(1), **{**args, **kwargs})


CASES = [
    Case(
        "growth/widen-mlp-solu",
        lambda env: widen_mlp(boot_native(env.tok_dir, act_fn="solu"), 200, mode="zero"),
        ValueError,
        r"widen_mlp cannot grow act_fn='solu' exactly: its softmax runs across the neurons",
    ),
    Case(
        "growth/widen-d-model-solu-ln",
        lambda env: widen_d_model(boot_native(env.tok_dir, act_fn="solu_ln"), 96),
        ValueError,
        r"widen_d_model cannot widen act_fn='solu_ln' exactly",
    ),
    Case(
        "growth/widen-d-model-layernorm-with-final-rms",
        lambda env: grow(boot_native(env.tok_dir, final_rms=True), d_model=96),
        ValueError,
        r"widen_d_model cannot widen a LayerNorm model whose final norm is an RMSNorm \(final_rms=True\)",
    ),
    Case(
        "growth/grow-d-head-without-attn-scale",
        lambda env: grow_d_head(boot_native(env.tok_dir, use_attn_scale=False), 24),
        ValueError,
        r"grow_d_head refuses use_attn_scale=False: TransformerLens 4.3 does not score such a model as its config",
    ),
    Case(
        "growth/widen-mlp-solu-ln",
        lambda env: widen_mlp(boot_native(env.tok_dir, act_fn="solu_ln"), 200),
        ValueError,
        r"widen_mlp cannot grow act_fn='solu_ln'.*mlp\.ln\.weight.*supported act_fn",
    ),
    Case(
        "growth/widen-mlp-float-size",
        lambda env: widen_mlp(env.model, 200.0),
        TypeError,
        r"d_mlp must be an int; got 200\.0",
    ),
    Case(
        "growth/widen-mlp-shrink", lambda env: widen_mlp(env.model, 64), ValueError, r"d_mlp can only grow: 128 -> 64"
    ),
    Case(
        "growth/add-heads-bool", lambda env: add_heads(env.model, True), TypeError, r"n_heads must be an int; got True"
    ),
    Case(
        "growth/grow-d-head-string",
        lambda env: grow_d_head(env.model, "16"),
        TypeError,
        r"d_head must be an int; got '16'",
    ),
    Case(
        "growth/widen-d-model-unknown-mode",
        lambda env: widen_d_model(env.model, 64, mode="split"),
        ValueError,
        r"widen_d_model mode must be 'mean' or 'zero', got 'split'",
    ),
    Case(
        "growth/widen-mlp-unknown-mode",
        lambda env: widen_mlp(env.model, 200, mode="mean"),
        ValueError,
        r"widen_mlp mode must be 'split' or 'zero', got 'mean'",
    ),
    Case(
        "growth/widen-d-model-seed-string",
        lambda env: widen_d_model(env.model, 64, seed="0"),
        TypeError,
        r"seed must be an int; got '0'",
    ),
    Case(
        "growth/insert-blocks-float-position",  # was: silently inserted nothing (1.5 matches no block index)
        lambda env: insert_blocks(env.model, [1.5]),
        TypeError,
        r"insert positions must be ints; got 1\.5",
    ),
    Case(
        "growth/insert-blocks-bool-position",
        lambda env: insert_blocks(env.model, True),
        TypeError,
        r"insert positions must be ints; got True",
    ),
    Case(
        "growth/grow-shrink-checked-first",  # was: grew d_head first, then failed on d_mlp
        lambda env: grow(env.model, d_head=16, d_mlp=64),
        ValueError,
        r"d_mlp can only grow: 128 -> 64",
    ),
    Case(
        "growth/grow-unknown-mode-checked-first",
        lambda env: grow(env.model, d_model=64, d_model_mode="split"),
        ValueError,
        r"widen_d_model mode must be 'mean' or 'zero', got 'split'",
    ),
    Case(
        "growth/grow-float-layers",
        lambda env: grow(env.model, n_layers=3.0),
        TypeError,
        r"n_layers must be an int; got 3\.0",
    ),
    Case(
        "growth/fit-map-negative-ridge",
        lambda env: _fit(ridge=-1.0),
        ValueError,
        r"ridge must lie in \[0, inf\); got -1\.0",
    ),
    Case(
        "growth/fit-map-nan-activations",
        lambda env: fit_growth_map(
            torch.full((20, 4), float("nan")),
            _acts(1),
            source_site="s",
            target_site="t",
            source_model="a",
            target_model="b",
        ),
        ValueError,
        r"source activations contain NaN or inf",
    ),
    Case(
        "growth/fit-map-integer-activations",
        lambda env: fit_growth_map(
            _acts(0).long(), _acts(1), source_site="s", target_site="t", source_model="a", target_model="b"
        ),
        TypeError,
        r"source must be a floating tensor \[batch, d_model\]; got torch\.int64",
    ),
]
