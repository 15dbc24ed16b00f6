"""Grow native (``boot_native``) pre-LN models: each operator returns ``(grown_model, GrowthMap)``.

Function-preserving operators (docs/methods/drift_growth_circuits.md §5):

- ``insert_blocks``: new blocks whose two residual writers (attention ``o``, MLP ``out``) are zero;
- ``widen_mlp``: Net2Net neuron split (``"split"``) or new neurons with zero output weights (``"zero"``);
- ``add_heads``: new heads with zero output weights;
- ``grow_d_head``: new key dimensions zero, queries rescaled by √(d_head'/d_head) against the score scale;
- ``widen_d_model``: mean-pad the writers (``"mean"``; any LN model) or zero-pad them (``"zero"``; RMSNorm,
  or LN with writers already centred), with norm gain × √(d/d') and ε × d/d';
- ``grow``: a composition of the above in one call.

New weights the function does not depend on are drawn so training can use them: a zero *writer*
with a random *reader* gets a gradient at once (∂L/∂W_O ∝ the reader's output), and the reader gets
one as soon as the writer moves; zero readers and zero writers together would be a saddle no gradient
leaves. Random draws are Gaussian with the standard deviation of the model's own weights of the same
kind, so new units start at the trained model's scale. A split neuron's two copies take its output
weight in unequal shares (α and 1 − α, α ∈ [0.3, 0.7]), so their gradients differ and they can
diverge; an equal split keeps them identical forever.

Non-preserving contrasts: ``stack_blocks`` (G_stack: the whole stack repeated) and
``insert_blocks(..., preserve=False)`` (random writers too); their maps say ``exact=False``.

Supported: native bridges with LayerNorm (``"LN"``) or RMSNorm (``"RMS"``), standard or rotary positions
(``grow_d_head`` keeps the old ``rotary_dim``, so old dimensions keep their frequencies), plain or gated
MLPs (SwiGLU, GeGLU), full multi-head or grouped-query attention (``add_heads`` adds query heads to
groups and new groups). Refused with the reason: other norms, SoLU (its softmax runs across neurons),
``use_attn_scale=False`` for ``grow_d_head``, a final RMSNorm on a LayerNorm model for ``widen_d_model``.
TransformerLens 4.3's native RMSNorm computes in float32 whatever the model's dtype, so in float64 a
widened RMS model is exact only to float32 rounding unless its norms compute in float64
(`elk_lens.growth.float64_norms`; measured 7.1e-7 without, 2.4e-15 with, tests/growth/test_growth.py).
"""

import math

import numpy as np
import torch
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from elk_lens._checks import check_number
from elk_lens.growth import hf_modules
from elk_lens.growth._parts import (
    HEAD_PARAMS,
    MLP_MODES,
    NEURON_ROWS,
    _check_grows,
    _check_mode,
    _draw,
    _fresh_block,
    _generator,
    _grow_heads,
    _head_plan,
    _insert,
    _map,
    _positions,
    _widen_neurons,
)
from elk_lens.growth.map import GrowthMap
from elk_lens.models import native_config

__all__ = ["add_heads", "grow", "grow_d_head", "insert_blocks", "stack_blocks", "widen_d_model", "widen_mlp"]

NORMS = ("LN", "RMS")
_LN_WEIGHTS = ("ln1.weight", "ln2.weight")
_READERS = ("attn.q.weight", "attn.k.weight", "attn.v.weight", "mlp.in.weight", "mlp.gate.weight")
_WRITERS = ("attn.o.weight", "mlp.out.weight")
_MLP_PARAMS = (*NEURON_ROWS, "out.weight", "out.bias")
# SoLU's softmax runs across the neurons (x * softmax(x)), so a new neuron changes every old one's output
_ACROSS_NEURONS = ("solu", "solu_ln")
D_MODEL_MODES = ("mean", "zero")


def _config(model: TransformerBridge, op: str) -> dict:
    """The native config, refusing models the operators do not know how to grow."""
    if hf_modules.layout(model) is not None:
        hf_modules.refuse(model, op)
    if getattr(model.cfg, "architecture", None) != "TransformerLensNative":
        raise ValueError(
            f"{op} grows native (boot_native) models only; this is a {model.cfg.architecture!r} bridge. "
            "Supported: TransformerLensNative with normalization 'LN' or 'RMS'"
        )
    cfg = native_config(model)
    if cfg.get("normalization_type") not in NORMS:
        raise ValueError(
            f"{op}: normalization_type {cfg.get('normalization_type')!r} is not supported; "
            f"supported: {NORMS} (pre-norm with a gain the width fix can rescale)"
        )
    return cfg


def _state(model: TransformerBridge) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _rebuild(model: TransformerBridge, cfg: dict, state: dict[str, Tensor]) -> TransformerBridge:
    """Boot the grown architecture and load ``state`` into it, strictly (every key, every shape)."""
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    grown = TransformerBridge.boot_native(
        {**cfg, "init_weights": False, "device": str(device)}, tokenizer=model.tokenizer, dtype=dtype
    )
    grown.load_state_dict({k: v.to(device=device, dtype=dtype) for k, v in state.items()}, strict=True)
    if next(grown.parameters()).device != device:
        grown = grown.to(device)
    return grown.eval()


def _block_keys(state: dict[str, Tensor], i: int) -> dict[str, Tensor]:
    prefix = f"blocks.{i}."
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def insert_blocks(
    model: TransformerBridge, at: list[int] | int, *, preserve: bool = True, seed: int = 0
) -> tuple[TransformerBridge, GrowthMap]:
    """Insert new blocks before old blocks ``at`` (``n_layers`` appends at the end; repeats insert several).

    A new block's readers (Q, K, V, MLP in) are random at the scale of the model's mean block; with
    ``preserve`` its writers (O, MLP out, and their biases) are zero, so it adds nothing to the
    residual. ``preserve=False`` draws the writers too: the non-preserving contrast.
    """
    check_number("seed", seed, kind=int)
    if hf_modules.layout(model) is not None:
        return hf_modules.insert_blocks(model, at, preserve=preserve, seed=seed)
    cfg = _config(model, "insert_blocks")
    at = _positions(at, cfg["n_layers"])
    state, gen = _state(model), _generator(seed)
    blocks = [_block_keys(state, i) for i in range(cfg["n_layers"])]
    new_blocks, layers = _insert(
        blocks,
        at,
        lambda: _fresh_block(
            blocks, gen, preserve, norms=_LN_WEIGHTS, writers=_WRITERS, norm=lambda pool: torch.ones_like(pool[0])
        ),
    )
    out = {k: v for k, v in state.items() if not k.startswith("blocks.")}
    for j, block in enumerate(new_blocks):
        out.update({f"blocks.{j}.{k}": v for k, v in block.items()})
    grown = _rebuild(model, {**cfg, "n_layers": len(new_blocks)}, out)
    return grown, _map(
        model, grown, f"insert_blocks({at}{'' if preserve else ', random writers'})", layers=layers, exact=preserve
    )


def stack_blocks(model: TransformerBridge) -> tuple[TransformerBridge, GrowthMap]:
    """G_stack: the block stack repeated once (L -> 2L, block ``L + i`` a copy of block ``i``); not
    function-preserving. Old block ``i`` maps to the first copy."""
    cfg = _config(model, "stack_blocks")
    n, state = cfg["n_layers"], _state(model)
    out = {k: v for k, v in state.items() if not k.startswith("blocks.")}
    for j in range(2 * n):
        out.update({f"blocks.{j}.{k}": v.clone() for k, v in _block_keys(state, j % n).items()})
    grown = _rebuild(model, {**cfg, "n_layers": 2 * n}, out)
    return grown, _map(model, grown, f"stack_blocks({n}->{2 * n})", exact=False)


def widen_mlp(
    model: TransformerBridge, d_mlp: int, *, mode: str = "split", seed: int = 0
) -> tuple[TransformerBridge, GrowthMap]:
    """Widen every MLP to ``d_mlp`` neurons: Net2Net split of existing neurons (``"split"``, chosen at
    random without repeats while possible) or new neurons with random input and zero output weights
    (``"zero"``).

    A gated MLP (SwiGLU, GeGLU: ``out(act(gate x) * (in x))``) is a sum over neurons as a plain one is,
    each neuron reading two rows: a split copies both its gate and its up (``in``) row and shares its
    output column; a new ``"zero"`` neuron gets random gate and up rows and a zero output column.
    """
    if hf_modules.layout(model) is not None:
        return hf_modules.widen_mlp(model, d_mlp, mode=mode, seed=seed)
    cfg = _config(model, "widen_mlp")
    if cfg.get("attn_only"):
        raise ValueError("widen_mlp: this model has no MLP (attn_only=True)")
    _check_mlp_params(model, cfg)
    if cfg.get("act_fn") in _ACROSS_NEURONS:
        raise ValueError(
            f"widen_mlp cannot grow act_fn={cfg['act_fn']!r} exactly: its softmax runs across the neurons, so "
            f"any new neuron changes the old ones' outputs; supported act_fn: element-wise activations such as "
            f"'gelu', 'relu', 'silu'"
        )
    old = cfg["d_mlp"]
    _check_grows("d_mlp", old, d_mlp)
    _check_mode("widen_mlp", mode, MLP_MODES)
    check_number("seed", seed, kind=int)
    state, gen = _state(model), _generator(seed)
    rng = np.random.default_rng(seed)
    for i in range(cfg["n_layers"]):
        rows = {k: state[f"blocks.{i}.mlp.{k}"] for k in NEURON_ROWS if f"blocks.{i}.mlp.{k}" in state}
        rows, w_out = _widen_neurons(rows, state[f"blocks.{i}.mlp.out.weight"], d_mlp - old, mode, rng, gen)
        state.update({f"blocks.{i}.mlp.{k}": v for k, v in rows.items()})
        state[f"blocks.{i}.mlp.out.weight"] = w_out
    grown = _rebuild(model, {**cfg, "d_mlp": d_mlp}, state)
    return grown, _map(model, grown, f"widen_mlp({old}->{d_mlp}, {mode})")


def _check_mlp_params(model: TransformerBridge, cfg: dict) -> None:
    """Only ``in`` and ``out`` may hold the neuron axis: an MLP with its own LayerNorm over the neurons
    (``act_fn="solu_ln"``) has weights no split or zero-pad here widens."""
    prefix = "blocks.0.mlp."
    other = sorted(
        k.removeprefix(prefix)
        for k in model.state_dict()
        if k.startswith(prefix) and k.removeprefix(prefix) not in _MLP_PARAMS
    )
    if other:
        raise ValueError(
            f"widen_mlp cannot grow act_fn={cfg.get('act_fn')!r}: its MLP has parameters over the "
            f"neurons ({[prefix + k for k in other]}) that the operator does not widen; supported "
            f"act_fn: element-wise activations such as 'gelu', 'relu', 'silu'"
        )


def _kv_heads(cfg: dict) -> int:
    """Key/value heads: each serves ``n_heads // n_kv`` consecutive query heads (TransformerLens's
    ``repeat_interleave``, HF Llama's ``repeat_kv``); full multi-head attention has one per query head."""
    return cfg.get("n_key_value_heads") or cfg["n_heads"]


def add_heads(
    model: TransformerBridge, n_heads: int, *, n_key_value_heads: int | None = None, seed: int = 0
) -> tuple[TransformerBridge, GrowthMap]:
    """Grow every attention layer to ``n_heads`` query heads: new heads' Q (and new K, V) random, their
    output weights zero, so the function is unchanged.

    Grouped-query attention: ``n_key_value_heads`` (default: the model's own count, so new query heads
    join the existing groups; for full multi-head attention, ``n_heads``, so it stays so) sets the
    groups. Each group keeps its old query heads first and gains ``n_heads/n_kv' − n_heads/n_kv`` new
    ones; new groups (new K, V heads) come after the old ones. Old head ``h = g·r + j`` of group ``g``
    lands at ``g·r' + j``: the map's ``heads`` says so.
    """
    if hf_modules.layout(model) is not None:
        return hf_modules.add_heads(model, n_heads, n_key_value_heads=n_key_value_heads, seed=seed)
    cfg = _config(model, "add_heads")
    old, d_head = cfg["n_heads"], cfg["d_head"]
    old_kv = _kv_heads(cfg)
    mha = old_kv == old
    n_key_value_heads, per, new_per = _head_plan("add_heads", old, old_kv, n_heads, n_key_value_heads)
    check_number("seed", seed, kind=int)
    state, gen = _state(model), _generator(seed)
    for i in range(cfg["n_layers"]):
        key = f"blocks.{i}.attn."
        t = {k: state[key + k] for k in HEAD_PARAMS}  # native attention always has these biases
        t = _grow_heads(
            t, old_kv=old_kv, per=per, new_per=new_per, new_kv=n_key_value_heads - old_kv, d_head=d_head, gen=gen
        )
        state.update({key + k: v for k, v in t.items()})
    # n_key_value_heads stays unset where it was (full multi-head attention kept so)
    unset = cfg.get("n_key_value_heads") is None and n_key_value_heads == n_heads
    kv = {} if unset else {"n_key_value_heads": n_key_value_heads}
    grown = _rebuild(model, {**cfg, "n_heads": n_heads, **kv}, state)
    heads = [g * new_per + j for g in range(old_kv) for j in range(per)]
    groups = "" if mha and n_key_value_heads == n_heads else f", kv {old_kv}->{n_key_value_heads}"
    return grown, _map(model, grown, f"add_heads({old}->{n_heads}{groups})", heads=heads)


def grow_d_head(model: TransformerBridge, d_head: int, *, seed: int = 0) -> tuple[TransformerBridge, GrowthMap]:
    """Grow every head to ``d_head`` dimensions.

    New key dimensions are zero, so they add nothing to q·k; the old queries are multiplied by
    √(d_head'/d_head) to cancel the change of the 1/√d_head score scale (unless the model sets a
    fixed ``attn_scale`` or none). New query and value dimensions are random; new value dimensions
    reach the residual through zero output weights.

    Rotary positions: the rotation's frequencies depend on ``rotary_dim`` (default d_head), so the grown
    model keeps the old ``rotary_dim``: the old dimensions rotate with their own frequencies and the new
    ones pass through unrotated (TransformerLens rotates the first ``rotary_dim`` of each head). Grouped-
    query attention grows the key/value heads the same way as the query heads.
    """
    cfg = _config(model, "grow_d_head")
    if not cfg.get("use_attn_scale", True):
        raise ValueError(
            "grow_d_head refuses use_attn_scale=False: TransformerLens 4.3 does not score such a model as its "
            "config says (growing d_head moved float64 logits by 0.2 where the config predicts no change), so "
            "no rescaling of the queries is known to keep its scores"
        )
    old, n_heads = cfg["d_head"], cfg["n_heads"]
    heads = {"q": n_heads, "k": _kv_heads(cfg), "v": _kv_heads(cfg)}
    _check_grows("d_head", old, d_head)
    check_number("seed", seed, kind=int)
    auto_scale = cfg.get("attn_scale", -1.0) <= 0
    rescale = math.sqrt(d_head / old) if auto_scale else 1.0
    state, gen = _state(model), _generator(seed)
    extra = d_head - old
    for i in range(cfg["n_layers"]):
        for p, n in heads.items():
            w = state[f"blocks.{i}.attn.{p}.weight"].unflatten(0, (n, old))
            b = state[f"blocks.{i}.attn.{p}.bias"].unflatten(0, (n, old))
            new_w = (
                torch.zeros(n, extra, w.shape[-1], dtype=w.dtype)
                if p == "k"
                else _draw(gen, w, (n, extra, w.shape[-1]))
            )
            if p == "q":
                w, b = w * rescale, b * rescale
            state[f"blocks.{i}.attn.{p}.weight"] = torch.cat([w, new_w], 1).flatten(0, 1)
            state[f"blocks.{i}.attn.{p}.bias"] = torch.cat([b, torch.zeros(n, extra, dtype=b.dtype)], 1).flatten()
        w_o = state[f"blocks.{i}.attn.o.weight"].unflatten(1, (n_heads, old))
        pad = torch.zeros(w_o.shape[0], n_heads, extra, dtype=w_o.dtype)
        state[f"blocks.{i}.attn.o.weight"] = torch.cat([w_o, pad], 2).flatten(1)
    rotary = {"rotary_dim": cfg.get("rotary_dim") or old} if cfg.get("positional_embedding_type") == "rotary" else {}
    grown = _rebuild(model, {**cfg, "d_head": d_head, **rotary}, state)
    return grown, _map(model, grown, f"grow_d_head({old}->{d_head})")


def widen_d_model(
    model: TransformerBridge, d_model: int, *, mode: str = "mean", seed: int = 0, centred_tol: float = 1e-5
) -> tuple[TransformerBridge, GrowthMap]:
    """Widen the residual stream to ``d_model``.

    ``"mean"`` (LayerNorm): every write vector's new coordinates equal its mean over the old ones, so
    the residual maps as ``x' = P x`` with ``P = [I; 1 1ᵀ/d]``: its mean stays, its centred sum of squares
    stays, its variance scales by d/d'. ``"zero"``: new coordinates zero, ``P = [I; 0]``; exact for
    RMSNorm, and for LayerNorm only if every writer is already centred (checked to ``centred_tol``).
    Either way the norm gains scale by √(d/d') (the new coordinates take the scaled gains' mean), ε by
    d/d', and readers get random columns for the new coordinates. The norm's output is zero there
    (zero-pad: x' = 0; mean-pad: x' is the mean it subtracts), which hides gains and readers from the
    function; a nonzero gain lets the gradient reach the new writer rows at once (zero gains would give
    every new weight of an RMS model a gradient of exactly 0: the saddle of the module docstring).
    """
    cfg = _config(model, "widen_d_model")
    d = cfg["d_model"]
    _check_grows("d_model", d, d_model)
    _check_mode("widen_d_model", mode, D_MODEL_MODES)
    check_number("seed", seed, kind=int)
    check_number("centred_tol", centred_tol, low=0)
    if mode == "mean" and cfg["normalization_type"] == "RMS":
        raise ValueError("mean-padding changes an RMSNorm's mean square; widen RMS models with mode='zero'")
    if cfg["normalization_type"] == "LN" and cfg.get("final_rms"):
        raise ValueError(
            "widen_d_model cannot widen a LayerNorm model whose final norm is an RMSNorm (final_rms=True) "
            "exactly: the blocks' LayerNorms need mode='mean' or centred writers, the final RMSNorm needs "
            "mode='zero'"
        )
    if cfg.get("act_fn") == "solu_ln":
        raise ValueError(
            "widen_d_model cannot widen act_fn='solu_ln' exactly (measured |delta logit| ~2e-2 in float64; "
            "not shown exact); use an element-wise activation such as 'gelu', 'relu', 'silu'"
        )
    state, gen = _state(model), _generator(seed)
    extra = d_model - d
    embeddings = ("embed.weight", "pos_embed.weight")  # [rows, d]: one write vector per row
    writers = (*_WRITERS, "attn.o.bias", "mlp.out.bias")  # [d, in] and [d]: one per column, and the bias
    padded = {
        k: _pad_writes(v, extra, k in embeddings, mode)
        for k, v in state.items()
        if k in embeddings or k.endswith(writers)
    }
    if mode == "zero" and cfg["normalization_type"] == "LN":
        off = {k: float(state[k].mean(1 if k in embeddings else 0).abs().max()) for k in padded}  # each write's mean
        off = {k: m for k, m in off.items() if m > centred_tol}
        if off:
            raise ValueError(
                f"zero-padding a LayerNorm model needs centred writers; {len(off)} are not (e.g. "
                f"{next(iter(off))}: |mean| {next(iter(off.values())):.2e}); use mode='mean'"
            )
    state.update(padded)
    gain = math.sqrt(d / d_model)
    for k, v in list(state.items()):
        if k.endswith(_LN_WEIGHTS) or k == "ln_final.weight":
            state[k] = torch.cat([v * gain, torch.full((extra,), float((v * gain).mean()), dtype=v.dtype)])
        elif k.endswith(("ln1.bias", "ln2.bias")) or k == "ln_final.bias":
            state[k] = torch.cat([v, torch.zeros(extra, dtype=v.dtype)])
        elif k.endswith(_READERS) or k == "unembed.weight":
            state[k] = torch.cat([v, _draw(gen, v, (v.shape[0], extra))], 1)
    P = torch.cat(
        [
            torch.eye(d, dtype=torch.float64),
            (torch.ones(extra, d, dtype=torch.float64) / d)
            if mode == "mean"
            else torch.zeros(extra, d, dtype=torch.float64),
        ]
    )
    new_cfg = {**cfg, "d_model": d_model, "eps": cfg["eps"] * d / d_model}
    grown = _rebuild(model, new_cfg, state)
    return grown, _map(model, grown, f"widen_d_model({d}->{d_model}, {mode})", P=P)


def _pad_writes(v: Tensor, extra: int, embedding: bool, mode: str) -> Tensor:
    """``v`` with ``extra`` new residual coordinates: each write vector's mean (``"mean"``) or zeros.

    Embeddings hold one write vector per row ([rows, d]); writers one per column ([d, in]); a bias is one.
    """
    if embedding:
        new = v.mean(1, keepdim=True).expand(-1, extra)
        return torch.cat([v, new if mode == "mean" else torch.zeros_like(new)], 1)
    new = v.mean(0, keepdim=True).expand(extra, *v.shape[1:])
    return torch.cat([v, new if mode == "mean" else torch.zeros_like(new)], 0)


def grow(
    model: TransformerBridge,
    *,
    n_layers: int | None = None,
    d_model: int | None = None,
    d_mlp: int | None = None,
    n_heads: int | None = None,
    d_head: int | None = None,
    n_key_value_heads: int | None = None,
    d_model_mode: str = "mean",
    seed: int = 0,
) -> tuple[TransformerBridge, GrowthMap]:
    """Every requested growth in one call (heads, head size, MLP, residual width, then depth), the maps
    composed. New blocks are spread evenly through the stack (old block ``i`` is followed by new ones
    at positions ``(j + 1) · n_layers // n_new``); a size equal to the model's own is left as it is.

    A model laid out as usual (n_heads · d_head = d_model) keeps that layout when only ``d_model`` is
    given: heads are added to fill the new width, which must then be a multiple of d_head.
    ``n_key_value_heads`` goes to `add_heads` (grouped-query attention's groups; default: kept).
    """
    cfg = model.cfg
    current = {
        "n_layers": cfg.n_layers,
        "d_model": cfg.d_model,
        "d_mlp": cfg.d_mlp,
        "n_heads": cfg.n_heads,
        "d_head": cfg.d_head,
    }
    asked = {"n_layers": n_layers, "d_model": d_model, "d_mlp": d_mlp, "n_heads": n_heads, "d_head": d_head}
    for name, new in asked.items():  # every size, the mode and the seed before the first step runs
        if new is not None and new != current[name]:
            _check_grows(name, current[name], new)
    _check_mode("widen_d_model", d_model_mode, D_MODEL_MODES)
    check_number("seed", seed, kind=int)
    if hf_modules.layout(model) is not None:
        hf_modules.refuse_sizes(model, {k: v for k, v in asked.items() if v != current[k]})
    if d_model is not None and n_heads is None and d_head is None:  # before any step is queued
        asked["n_heads"] = _heads_for_width(model, d_model)
    n_layers, d_model, d_mlp, n_heads, d_head = (None if new == current[k] else new for k, new in asked.items())
    steps = []
    if d_head is not None:
        steps.append(lambda m: grow_d_head(m, d_head, seed=seed))
    if n_heads is not None:
        steps.append(lambda m: add_heads(m, n_heads, n_key_value_heads=n_key_value_heads, seed=seed + 1))
    elif n_key_value_heads is not None:
        raise ValueError("grow: n_key_value_heads needs n_heads (or d_model) to grow: key/value groups come with heads")
    if d_mlp is not None:
        steps.append(lambda m: widen_mlp(m, d_mlp, seed=seed + 2))
    if d_model is not None:
        steps.append(lambda m: widen_d_model(m, d_model, mode=d_model_mode, seed=seed + 3))
    if n_layers is not None:
        old = model.cfg.n_layers
        new = n_layers - old
        steps.append(lambda m: insert_blocks(m, [min(old, (j + 1) * old // new) for j in range(new)], seed=seed + 4))
    if not steps:
        raise ValueError("grow needs at least one of n_layers, d_model, d_mlp, n_heads, d_head larger than the model's")
    grown, growth = steps[0](model)
    for step in steps[1:]:
        grown, after = step(grown)
        growth = growth.then(after)
    return grown, growth


def _heads_for_width(model: TransformerBridge, d_model: int) -> int | None:
    """Heads that keep n_heads · d_head = d_model, for a model laid out that way (None otherwise)."""
    n_heads, d_head = model.cfg.n_heads, model.cfg.d_head
    if n_heads * d_head != model.cfg.d_model:
        return None
    if d_model % d_head:
        raise ValueError(
            f"d_model {d_model} is not divisible by d_head {d_head}, as heads that fill the width "
            "need; pick a multiple, or pass n_heads= (the current count keeps the heads) or "
            "d_head="
        )
    return d_model // d_head if d_model // d_head > n_heads else None
