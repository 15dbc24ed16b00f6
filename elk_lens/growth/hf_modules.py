"""Growth on the HF modules of a ``boot_transformers`` bridge, for architectures the native model cannot
compute (`elk_lens.growth.to_native` refuses them): Gemma 3 (``Gemma3ForCausalLM``) and GPT-NeoX
(``GPTNeoXForCausalLM``, e.g. Pythia).

The operators that need no change to the residual stream's width or the heads' size carry over: new blocks
(`insert_blocks`), wider MLPs (`widen_mlp`), and, for Gemma 3, more query heads and key/value groups
(`add_heads`). Each renames the HF weights to the native names, grows them by the same rule as the native
operators (`elk_lens.growth._parts`), renames them back, and boots the grown HF model with its edited
config. Exactness rests on the same argument (docs/methods/drift_growth_circuits.md §5.4), with two
facts of these architectures:

- Gemma 3's sandwich norms: a block writes ``post_norm(o(attention))``, and an RMSNorm of zero is zero
  (0 · rsqrt(0 + ε)), so a zero ``o_proj`` still writes nothing; new heads add zero columns to ``o_proj``,
  whose output the post-norm then sees unchanged. The q/k norms run per head over ``head_dim``, which stays.
- GPT-NeoX's parallel residual (``x + attn(ln1 x) + mlp(ln2 x)``): zero writers give a new block zero
  output under either residual.

A new block's norm gains are the mean of the model's gains of that kind (Gemma stores ``w`` of a
``(1 + w)`` gain, so "ones" would double them), and a new Gemma 3 block takes the attention kind
(sliding or full) of the old block it is inserted before (the last one's when appended).

Refused with the reason: GPT-NeoX's heads (HF derives ``head_size = hidden_size / num_attention_heads``),
any change of ``d_head`` or ``d_model``, and `stack_blocks`.
"""

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from elk_lens._checks import check_number
from elk_lens.growth._parts import (
    HEAD_PARAMS,
    MLP_MODES,
    NEURON_ROWS,
    _check_grows,
    _check_mode,
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
from elk_lens.models import hf_state_dict


@dataclass(frozen=True)
class Layout:
    """Where an HF architecture keeps what the growth operators change.

    Attributes:
        blocks: The state-dict prefix of the block list (``"model.layers."``).
        names: Native name (``"attn.q.weight"``) → the HF weight's name within a block.
        writers: HF names of the weights a block writes the residual through (zero in a new block).
        norms: HF names of the norm gains.
        config: Native size (``n_layers``, ``d_mlp``, ``n_heads``, ``n_key_value_heads``) → HF config field.
        refused: Operator → why it cannot grow this architecture exactly.
    """

    blocks: str
    names: dict[str, str]
    writers: tuple[str, ...]
    norms: tuple[str, ...]
    config: dict[str, str]
    refused: dict[str, str] = field(default_factory=dict)


_NOT_NATIVE = "it changes the residual's width or the heads' size, which only the native operators do"
LAYOUTS = {
    "Gemma3ForCausalLM": Layout(
        blocks="model.layers.",
        names={
            **{f"attn.{p}.{w}": f"self_attn.{p}_proj.{w}" for p in "qkvo" for w in ("weight", "bias")},
            "mlp.in.weight": "mlp.up_proj.weight",
            "mlp.gate.weight": "mlp.gate_proj.weight",
            "mlp.out.weight": "mlp.down_proj.weight",
        },
        writers=("self_attn.o_proj.weight", "self_attn.o_proj.bias", "mlp.down_proj.weight"),
        norms=(
            "input_layernorm.weight",
            "post_attention_layernorm.weight",
            "pre_feedforward_layernorm.weight",
            "post_feedforward_layernorm.weight",
            "self_attn.q_norm.weight",
            "self_attn.k_norm.weight",
        ),
        config={
            "n_layers": "num_hidden_layers",
            "d_mlp": "intermediate_size",
            "n_heads": "num_attention_heads",
            "n_key_value_heads": "num_key_value_heads",
        },
        refused={
            "grow_d_head": "its q/k norms run over head_dim (new dimensions change every head's RMS)",
            "widen_d_model": "its embedding is scaled by √hidden_size and its sandwich norms run over the width",
        },
    ),
    "GPTNeoXForCausalLM": Layout(
        blocks="gpt_neox.layers.",
        names={
            "mlp.in.weight": "mlp.dense_h_to_4h.weight",
            "mlp.in.bias": "mlp.dense_h_to_4h.bias",
            "mlp.out.weight": "mlp.dense_4h_to_h.weight",
        },
        writers=("attention.dense.weight", "attention.dense.bias", "mlp.dense_4h_to_h.weight"),
        norms=("input_layernorm.weight", "post_attention_layernorm.weight"),
        config={"n_layers": "num_hidden_layers", "d_mlp": "intermediate_size"},
        refused={
            "add_heads": "HF GPT-NeoX derives head_size = hidden_size / num_attention_heads, so more heads "
            "would shrink every head",
            "grow_d_head": "HF GPT-NeoX derives head_size = hidden_size / num_attention_heads",
            "widen_d_model": _NOT_NATIVE,
        },
    ),
}


def layout(model: TransformerBridge) -> Layout | None:
    """The layout of an HF-booted bridge these operators grow; None for any other model."""
    if getattr(model.cfg, "architecture", None) == "TransformerLensNative":
        return None
    return LAYOUTS.get(type(getattr(model, "original_model", None)).__name__)


def refuse(model: TransformerBridge, op: str) -> None:
    """Raise the reason ``op`` cannot grow this HF bridge exactly (the caller found no way)."""
    arch = type(model.original_model).__name__
    why = LAYOUTS[arch].refused.get(op, "it is built for native models only (to_native copies Llama and GPT-2)")
    grows = sorted({"insert_blocks", "widen_mlp", "add_heads", "grow"} - set(LAYOUTS[arch].refused))
    raise ValueError(f"{op} cannot grow an HF {arch}: {why}; supported on {arch}: {', '.join(grows)}")


def refuse_sizes(model: TransformerBridge, sizes: dict[str, int | None]) -> None:
    """`elk_lens.growth.grow`'s check before any step: a size whose operator this architecture refuses."""
    for size, op in (("d_head", "grow_d_head"), ("d_model", "widen_d_model"), ("n_heads", "add_heads")):
        if sizes.get(size) is not None and op in layout(model).refused:
            refuse(model, op)


def _block(state: dict[str, Tensor], lay: Layout, i: int) -> dict[str, Tensor]:
    prefix = f"{lay.blocks}{i}."
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def _n_layers(model: TransformerBridge, lay: Layout) -> int:
    return getattr(model.original_model.config, lay.config["n_layers"])


def _edited(model: TransformerBridge, op: str, changes: dict):
    """The HF config with ``changes``, validated as transformers validates it when saving (e.g. Gemma 3's
    hidden_size % num_attention_heads == 0): a grown model that could not be saved is refused before work."""
    config = copy.deepcopy(model.original_model.config)
    for key, value in changes.items():
        setattr(config, key, value)
    if hasattr(config, "validate"):
        try:
            config.validate()
        except Exception as e:  # huggingface_hub's StrictDataclassClassValidationError wraps the cause
            cause = e.__cause__ or e
            raise ValueError(f"{op}: transformers refuses {type(config).__name__} with {changes}: {cause}") from None
    return config


def _rebuild(model: TransformerBridge, config, state: dict[str, Tensor]) -> TransformerBridge:
    """Boot the HF model of the edited ``config`` with ``state`` loaded strictly (every key, every shape)."""
    hf = model.original_model
    first = next(hf.parameters())
    with torch.device(first.device):
        grown = type(hf)._from_config(config, dtype=first.dtype)
    grown.load_state_dict(state, strict=True)
    # constants computed at init (Gemma's embedding scale, rotary frequencies) are the source's, to the bit:
    # built under another default dtype they round differently (√d_model in float32 vs float64: 2e-8 in logits)
    constants = {k.replace("._original_component", ""): v for k, v in hf.named_buffers()}
    with torch.no_grad():
        for key, buffer in grown.named_buffers():
            if key in constants and constants[key].shape == buffer.shape:
                buffer.copy_(constants[key])
    name = getattr(hf.config, "_name_or_path", "") or model.cfg.model_name
    bridge = TransformerBridge.boot_transformers(
        name, hf_model=grown.eval(), tokenizer=model.tokenizer, dtype=first.dtype, device=first.device
    ).eval()
    bridge.cfg.default_prepend_bos = model.cfg.default_prepend_bos  # what load_model set (e.g. a GGUF's BOS rule)
    return bridge


def insert_blocks(
    model: TransformerBridge, at: list[int] | int, *, preserve: bool = True, seed: int = 0
) -> tuple[TransformerBridge, GrowthMap]:
    """`elk_lens.growth.insert_blocks` on an HF bridge: new blocks with zero writers before old blocks ``at``."""
    lay = layout(model)
    n = _n_layers(model, lay)
    at = _positions(at, n)
    state, gen = hf_state_dict(model), _generator(seed)
    blocks = [_block(state, lay, i) for i in range(n)]
    stack, layers = _insert(
        blocks,
        at,
        lambda: _fresh_block(
            blocks, gen, preserve, norms=lay.norms, writers=lay.writers, norm=lambda pool: pool.mean(0)
        ),
    )
    changes = {lay.config["n_layers"]: len(stack)}
    kinds = getattr(model.original_model.config, "layer_types", None)
    if kinds is not None:  # Gemma 3: each new block attends like the old block after it
        after = [next((i for i, j in enumerate(layers) if j >= k), n - 1) for k in range(len(stack))]
        changes["layer_types"] = [kinds[i] for i in after]
    config = _edited(model, "insert_blocks", changes)
    out = {k: v for k, v in state.items() if not k.startswith(lay.blocks)}
    for j, block in enumerate(stack):
        out.update({f"{lay.blocks}{j}.{k}": v for k, v in block.items()})
    grown = _rebuild(model, config, out)
    op = f"insert_blocks({at}{'' if preserve else ', random writers'})"
    return grown, _map(model, grown, op, layers=layers, exact=preserve)


def widen_mlp(
    model: TransformerBridge, d_mlp: int, *, mode: str = "split", seed: int = 0
) -> tuple[TransformerBridge, GrowthMap]:
    """`elk_lens.growth.widen_mlp` on an HF bridge (Gemma 3's GeGLU: gate and up rows split together)."""
    lay = layout(model)
    old = getattr(model.original_model.config, lay.config["d_mlp"])
    _check_grows("d_mlp", old, d_mlp)
    _check_mode("widen_mlp", mode, MLP_MODES)
    check_number("seed", seed, kind=int)
    config = _edited(model, "widen_mlp", {lay.config["d_mlp"]: d_mlp})
    state, gen = hf_state_dict(model), _generator(seed)
    rng = np.random.default_rng(seed)
    for i in range(_n_layers(model, lay)):
        key = f"{lay.blocks}{i}."
        names = {k: key + lay.names[f"mlp.{k}"] for k in NEURON_ROWS if f"mlp.{k}" in lay.names}
        rows = {k: state[v] for k, v in names.items() if v in state}
        out = key + lay.names["mlp.out.weight"]
        rows, state[out] = _widen_neurons(rows, state[out], d_mlp - old, mode, rng, gen)
        state.update({names[k]: v for k, v in rows.items()})
    grown = _rebuild(model, config, state)
    return grown, _map(model, grown, f"widen_mlp({old}->{d_mlp}, {mode})")


def add_heads(
    model: TransformerBridge, n_heads: int, *, n_key_value_heads: int | None = None, seed: int = 0
) -> tuple[TransformerBridge, GrowthMap]:
    """`elk_lens.growth.add_heads` on an HF bridge with grouped-query attention (Gemma 3)."""
    lay = layout(model)
    if "add_heads" in lay.refused:
        refuse(model, "add_heads")
    config = model.original_model.config
    old, old_kv = getattr(config, lay.config["n_heads"]), getattr(config, lay.config["n_key_value_heads"])
    n_key_value_heads, per, new_per = _head_plan("add_heads", old, old_kv, n_heads, n_key_value_heads)
    check_number("seed", seed, kind=int)
    changes = {lay.config["n_heads"]: n_heads, lay.config["n_key_value_heads"]: n_key_value_heads}
    edited = _edited(model, "add_heads", changes)
    state, gen = hf_state_dict(model), _generator(seed)
    for i in range(_n_layers(model, lay)):
        key = f"{lay.blocks}{i}."
        names = {k: key + lay.names[f"attn.{k}"] for k in HEAD_PARAMS if f"attn.{k}" in lay.names}
        t = {k: state[v] for k, v in names.items() if v in state}
        new_kv, d_head = n_key_value_heads - old_kv, config.head_dim
        t = _grow_heads(t, old_kv=old_kv, per=per, new_per=new_per, new_kv=new_kv, d_head=d_head, gen=gen)
        state.update({names[k]: v for k, v in t.items()})
    grown = _rebuild(model, edited, state)
    heads = [g * new_per + j for g in range(old_kv) for j in range(per)]
    groups = f", kv {old_kv}->{n_key_value_heads}" if n_key_value_heads != old_kv else ""
    return grown, _map(model, grown, f"add_heads({old}->{n_heads}{groups})", heads=heads)
