"""The tensor work shared by the native growth operators (`elk_lens.growth.operators`) and the ones on
HF modules (`elk_lens.growth.hf_modules`): fresh blocks, neuron splits, new heads, and the map.

Each helper takes and returns tensors under the native names (``attn.q.weight``, ``mlp.in.weight``, ...);
the HF operators rename their modules' weights to these and back, so both grow by one rule
(docs/methods/drift_growth_circuits.md §5).
"""

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from elk_lens._checks import check_number
from elk_lens.growth.map import GrowthMap
from elk_lens.models import fingerprint

MLP_MODES = ("split", "zero")
# what widen_mlp widens: the rows over the neurons (``in``, and a gated MLP's ``gate``); ``out``'s columns too
NEURON_ROWS = ("in.weight", "in.bias", "gate.weight", "gate.bias")
# what add_heads grows in each attention layer (``o`` by columns; its bias is per residual coordinate)
HEAD_PARAMS = ("q.weight", "q.bias", "k.weight", "k.bias", "v.weight", "v.bias", "o.weight")


def _map(
    model: TransformerBridge,
    grown: TransformerBridge,
    op: str,
    *,
    P: Tensor | None = None,
    layers=None,
    heads=None,
    exact: bool = True,
) -> GrowthMap:
    d = model.cfg.d_model
    return GrowthMap(
        torch.eye(d, dtype=torch.float64) if P is None else P.to(torch.float64),
        tuple(range(model.cfg.n_layers)) if layers is None else tuple(layers),
        tuple(range(model.cfg.n_heads)) if heads is None else tuple(heads),
        fingerprint(model),
        fingerprint(grown),
        exact,
        (op,),
    )


def _draw(gen: torch.Generator, like: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Gaussian with the standard deviation of ``like`` (the model's own weights of that kind)."""
    std = float(like.float().std()) if like.numel() > 1 else 0.02
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(like.dtype) * std


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _check_grows(name: str, old: int, new: object) -> None:
    check_number(name, new, kind=int)
    if new <= old:
        raise ValueError(f"{name} can only grow: {old} -> {new} would shrink it or keep it")


def _check_mode(op: str, mode: object, modes: tuple[str, ...]) -> None:
    if mode not in modes:
        raise ValueError(f"{op} mode must be {' or '.join(map(repr, modes))}, got {mode!r}")


def _positions(at: list[int] | int, n: int) -> list[int]:
    """Sorted insert positions, each checked: before old block ``a``, ``n`` = at the end."""
    positions = list(at) if isinstance(at, (list, tuple, range)) else [at]
    bad = [a for a in positions if isinstance(a, bool) or not isinstance(a, int)]
    if bad:  # 1.5 matches no block index: nothing would be inserted there, silently
        raise TypeError(f"insert positions must be ints; got {bad[0]!r}")
    at = sorted(positions)
    if not at or any(not 0 <= a <= n for a in at):
        raise ValueError(f"insert positions must lie in 0..{n} (before that old block; {n} = at the end), got {at}")
    return at


def _insert(blocks: list, at: list[int], fresh: Callable[[], object]) -> tuple[list, list[int]]:
    """The grown stack (a new block from ``fresh()`` before old block ``a`` for each ``a`` in ``at``) and
    where each old block went."""
    stack, layers = [], []
    for i in range(len(blocks) + 1):
        for _ in range(at.count(i)):
            stack.append(fresh())
        if i < len(blocks):
            layers.append(len(stack))
            stack.append(blocks[i])
    return stack, layers


def _fresh_block(
    blocks: list[dict[str, Tensor]],
    gen: torch.Generator,
    preserve: bool,
    *,
    norms: tuple[str, ...],
    writers: tuple[str, ...],
    norm: Callable[[Tensor], Tensor],
) -> dict[str, Tensor]:
    """A new block: norm gains ``norm(every block's gains)``, biases zero, writers zero when ``preserve``,
    every other weight drawn at the scale of that weight across the blocks."""
    block = {}
    for key, like in blocks[0].items():
        pool = torch.stack([b[key] for b in blocks])  # every block's weights of this kind set the scale
        if key.endswith(norms):
            block[key] = norm(pool)
        elif key.endswith(".bias") or (preserve and key.endswith(writers)):
            block[key] = torch.zeros_like(like)
        else:
            block[key] = _draw(gen, pool, tuple(like.shape))
    return block


def _widen_neurons(
    rows: dict[str, Tensor], w_out: Tensor, extra: int, mode: str, rng: np.random.Generator, gen: torch.Generator
) -> tuple[dict[str, Tensor], Tensor]:
    """One MLP with ``extra`` more neurons: ``rows`` hold a row per neuron (up, gate, their biases),
    ``w_out`` a column per neuron.

    ``"split"``: Net2Net, existing neurons chosen at random without repeats while possible, each copy's
    rows equal and the output column shared in unequal parts (α, 1 − α; α ∈ [0.3, 0.7]). ``"zero"``:
    random rows (zero biases) and a zero output column.
    """
    old = w_out.shape[1]
    if mode == "split":
        src = torch.as_tensor(np.concatenate([rng.permutation(old) for _ in range(math.ceil(extra / old))])[:extra])
        alpha = rng.uniform(0.3, 0.7, extra)
        share = torch.ones(old, dtype=torch.float64)  # what each old neuron keeps of its output weight
        new_share = torch.empty(extra, dtype=torch.float64)
        for n_new, (j, a) in enumerate(zip(src.tolist(), alpha, strict=True)):  # a neuron split twice
            new_share[n_new] = share[j] * (1 - a)  # splits what it still holds
            share[j] = share[j] * a
        kept = w_out * share.to(w_out.dtype)
        new_cols = w_out[:, src] * new_share.to(w_out.dtype)
        return {k: torch.cat([v, v[src]]) for k, v in rows.items()}, torch.cat([kept, new_cols], 1)
    grown = {}
    for k, v in rows.items():
        new = torch.zeros(extra, dtype=v.dtype) if v.ndim == 1 else _draw(gen, v, (extra, v.shape[1]))
        grown[k] = torch.cat([v, new])
    return grown, torch.cat([w_out, torch.zeros(w_out.shape[0], extra, dtype=w_out.dtype)], 1)


def _head_plan(op: str, old: int, old_kv: int, n_heads: int, n_key_value_heads: int | None) -> tuple[int, int, int]:
    """``(n_key_value_heads, per, new_per)``: the groups after growth and the query heads per group before
    and after, refusing counts that cannot hold the old groups whole. ``None`` keeps the groups (full
    multi-head attention stays so)."""
    _check_grows("n_heads", old, n_heads)
    if n_key_value_heads is None:
        n_key_value_heads = n_heads if old_kv == old else old_kv
    check_number("n_key_value_heads", n_key_value_heads, kind=int)
    per = old // old_kv
    new_per = n_heads // n_key_value_heads if n_key_value_heads >= old_kv else 0  # 0: refused below
    if new_per < per or n_heads % n_key_value_heads:
        raise ValueError(
            f"{op}: {n_heads} query heads in {n_key_value_heads} key/value groups cannot hold the model's "
            f"{old} heads in {old_kv} groups of {per}: n_key_value_heads must be >= {old_kv} and divide n_heads, "
            f"with n_heads / n_key_value_heads >= {per}"
        )
    return n_key_value_heads, per, new_per


def _grow_heads(
    t: dict[str, Tensor], *, old_kv: int, per: int, new_per: int, new_kv: int, d_head: int, gen: torch.Generator
) -> dict[str, Tensor]:
    """One attention layer with more query heads per group and ``new_kv`` new groups: new Q, K, V rows
    random (biases zero), new heads' output columns zero. ``t`` holds ``q/k/v/o.weight`` and, where the
    layer has them, ``q/k/v.bias``. Old head ``g·per + j`` lands at ``g·new_per + j``."""
    t = dict(t)
    fill = (new_per - per) * d_head  # new query rows in each old group
    w = t["q.weight"]
    w_g = w.unflatten(0, (old_kv, per * d_head))
    if fill:
        w_g = torch.cat([w_g, _draw(gen, w, (old_kv, fill, w.shape[1]))], 1)
    t["q.weight"] = w_g.flatten(0, 1)
    if "q.bias" in t:
        b_g = t["q.bias"].unflatten(0, (old_kv, per * d_head))
        if fill:
            b_g = torch.cat([b_g, torch.zeros(old_kv, fill, dtype=b_g.dtype)], 1)
        t["q.bias"] = b_g.flatten()
    for p, rows in (("q", new_kv * new_per * d_head), ("k", new_kv * d_head), ("v", new_kv * d_head)):
        w = t[f"{p}.weight"]  # new groups after the old ones
        t[f"{p}.weight"] = torch.cat([w, _draw(gen, w, (rows, w.shape[1]))])
        if f"{p}.bias" in t:
            t[f"{p}.bias"] = torch.cat([t[f"{p}.bias"], torch.zeros(rows, dtype=t[f"{p}.bias"].dtype)])
    w_o = t["o.weight"].unflatten(1, (old_kv, per * d_head))
    w_o = torch.cat([w_o, torch.zeros(w_o.shape[0], old_kv, fill, dtype=w_o.dtype)], 2).flatten(1)
    t["o.weight"] = torch.cat([w_o, torch.zeros(w_o.shape[0], new_kv * new_per * d_head, dtype=w_o.dtype)], 1)
    return t
