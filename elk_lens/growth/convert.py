"""`to_native`: an exact copy of an HF-booted Llama or GPT-2 bridge as a native (``boot_native``) bridge.

The growth operators grow native models only (`elk_lens.growth.operators`, docs/methods/drift_growth_circuits.md
§5); real LMs such as SmolLM2 boot through HF. The native model computes HF Llama's forward op for op (RMSNorm
in float32 then the gain, rotary tables from the same float32 frequencies, scores over √d_head, SwiGLU, grouped
key/value heads repeated in HF's order), and GPT-2's (LayerNorm, learned positions, tanh-GELU MLP, biases), so
the copy is exact up to the rounding of equal formulas.

Llama: one change of basis, inside each head's queries and keys: HF's ``rotate_half`` rotates dimension i with
i + d_head/2, native ``NativeRotary`` rotates adjacent pairs (2i, 2i+1), both at frequency i. So native row 2i
is HF row i and row 2i+1 is HF row i + d_head/2; q and k get the same permutation, so q·k is unchanged.
GPT-2: its Conv1D weights are stored (in, out), nn.Linear's (out, in). The residual stream keeps its basis:
the returned `GrowthMap` is the identity (P = I, every block and head in place), so
``conversion.then(growth)`` transports reporters fitted on the HF model to the grown copy. Tied embeddings
become two equal matrices (the native head is its own weight), and Llama's attention gets zero biases
(native attention always has them). NeoX (a parallel residual) and Gemma 3 are refused with the reason; the
growth operators grow those on their HF modules (`elk_lens.growth.hf_modules`).
"""

import torch
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from elk_lens._checks import as_dtype, check_number
from elk_lens.growth._parts import _map
from elk_lens.growth.hf_modules import LAYOUTS
from elk_lens.growth.map import GrowthMap

__all__ = ["to_native"]

SUPPORTED = (
    "LlamaForCausalLM (pre-RMSNorm, rotary, SwiGLU, grouped-query attention; e.g. SmolLM2) and GPT2LMHeadModel "
    "(pre-LayerNorm, learned positions, GELU MLP)"
)
# why the native model cannot compute some common architectures exactly
_WHY = {
    "GPTNeoXForCausalLM": "a parallel residual (attention and MLP read the same input)",
    "Gemma3ForCausalLM": "(1 + w) norms, sandwich norms, q/k norms, soft caps, sliding windows, an embedding scale",
}
# GPT-2's Conv1D stores these as (in, out); the bridge hands them over so, and native nn.Linear wants (out, in)
_CONV1D = ("attn.o.weight", "mlp.in.weight", "mlp.out.weight")


def _interleave(d_head: int) -> Tensor:
    """Native row j of a head takes HF row ``perm[j]``: (0, d/2, 1, d/2 + 1, ...)."""
    half = torch.arange(d_head // 2)
    return torch.stack([half, half + d_head // 2], dim=1).flatten()


def _check(model: TransformerBridge) -> None:
    """Refuse what the native model would not compute exactly, naming the setting and what is supported."""
    arch = getattr(model.cfg, "architecture", None)
    if arch == "TransformerLensNative":
        raise ValueError("to_native: this model is already native (boot_native); grow or save it as it is")
    if arch not in _CONFIGS:
        why = f" ({_WHY[arch]})" if arch in _WHY else ""
        instead = "; grow it on its HF modules: the growth operators take it as it is" if arch in LAYOUTS else ""
        raise ValueError(
            f"to_native: architecture {arch!r}{why} has no exact native copy; supported: {SUPPORTED}{instead}"
        )
    if getattr(model, "_weights_processed", False):  # folded or centred weights are no longer the HF model's
        raise ValueError("to_native: this bridge's weights were processed (process_weights); convert a fresh boot")
    hf = model.original_model.config
    if arch == "GPT2LMHeadModel":
        for flag, want in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False)):
            if getattr(hf, flag) != want:
                raise ValueError(f"to_native: GPT-2 with {flag}={not want} is not supported; supported: {flag}={want}")
        if hf.activation_function != "gelu_new":
            raise ValueError(
                f"to_native: GPT-2 activation_function {hf.activation_function!r} is not supported; "
                "supported: 'gelu_new'"
            )
        return
    for flag in ("attention_bias", "mlp_bias"):
        if getattr(hf, flag, False):
            raise ValueError(f"to_native: {flag}=True is not supported; supported: {flag}=False (Llama's default)")
    if hf.hidden_act != "silu":
        raise ValueError(f"to_native: hidden_act {hf.hidden_act!r} is not supported; supported: 'silu' (SwiGLU)")
    rope = getattr(hf, "rope_parameters", None) or getattr(hf, "rope_scaling", None) or {}
    kind = rope.get("rope_type") or rope.get("type") or "default"
    if kind != "default":
        raise ValueError(f"to_native: rope_type {kind!r} is not supported; supported: 'default' (plain RoPE)")


def _llama(hf) -> dict:
    d_head = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    rope = getattr(hf, "rope_parameters", None) or {}
    return {
        "d_model": hf.hidden_size,
        "d_head": d_head,
        "n_heads": hf.num_attention_heads,
        "n_key_value_heads": hf.num_key_value_heads,
        "n_layers": hf.num_hidden_layers,
        "d_mlp": hf.intermediate_size,
        "d_vocab": hf.vocab_size,
        "act_fn": "silu",
        "gated_mlp": True,
        "normalization_type": "RMS",
        "eps": hf.rms_norm_eps,
        "positional_embedding_type": "rotary",
        "rotary_dim": d_head,
        "rotary_base": rope.get("rope_theta", getattr(hf, "rope_theta", None)),
    }


def _gpt2(hf) -> dict:
    return {
        "d_model": hf.n_embd,
        "d_head": hf.n_embd // hf.n_head,
        "n_heads": hf.n_head,
        "n_layers": hf.n_layer,
        "d_mlp": hf.n_inner or 4 * hf.n_embd,
        "d_vocab": hf.vocab_size,
        "act_fn": "gelu_new",
        "normalization_type": "LN",
        "eps": hf.layer_norm_epsilon,
        "positional_embedding_type": "standard",
    }


_CONFIGS = {"LlamaForCausalLM": _llama, "GPT2LMHeadModel": _gpt2}


def to_native(
    model: TransformerBridge, *, dtype: torch.dtype | str | None = None, n_ctx: int | None = None
) -> tuple[TransformerBridge, GrowthMap]:
    """An exact native copy of an HF-booted Llama or GPT-2 bridge, which the growth operators can grow and
    `elk_lens.models.save_model` can save, with the identity map from the source (like every operator).

    Args:
        model: A bridge from ``TransformerBridge.boot_transformers`` (``elk_lens.models.load_model``).
        dtype: The copy's dtype (a torch dtype or its name); None: the source's.
        n_ctx: The longest input the copy accepts; None: the source's. Native attention keeps an
            n_ctx × n_ctx causal mask per layer (SmolLM2's 8192: 64 MiB a layer), and positions below
            n_ctx compute the same whatever n_ctx is.

    Raises:
        ValueError: The model is not a plain Llama or GPT-2 (see ``_check``), or is native already; n_ctx < 1.
    """
    _check(model)
    if n_ctx is not None:
        check_number("n_ctx", n_ctx, kind=int, low=1)
    src = {k: v.detach() for k, v in model.state_dict().items()}
    device = src["embed.weight"].device
    dtype = src["embed.weight"].dtype if dtype is None else as_dtype("dtype", dtype)
    arch = model.cfg.architecture
    cfg = {
        **_CONFIGS[arch](model.original_model.config),
        "n_ctx": model.cfg.n_ctx if n_ctx is None else n_ctx,
        "default_prepend_bos": getattr(model.cfg, "default_prepend_bos", True),
        "init_weights": False,
        "device": str(device),
    }
    native = TransformerBridge.boot_native(cfg, tokenizer=model.tokenizer, dtype=dtype)
    target = native.state_dict()
    extra = sorted(set(src) - set(target))
    if extra:  # a weight the native model has no place for would be dropped: the copy would not be exact
        raise ValueError(f"to_native: source weights {extra[:4]} have no native counterpart; supported: {SUPPORTED}")
    d_head = cfg["d_head"]
    perm = _interleave(d_head).to(device)
    state = {}
    for key, like in target.items():
        if arch == "LlamaForCausalLM" and key.endswith(("attn.q.weight", "attn.k.weight")):
            w = src[key]
            state[key] = w.view(-1, d_head, w.shape[-1])[:, perm].reshape(w.shape)
        elif arch == "GPT2LMHeadModel" and key.endswith(_CONV1D):
            state[key] = src[key].T.contiguous()
        elif key in src:
            state[key] = src[key]
        elif key.endswith(".bias"):
            state[key] = torch.zeros_like(like)
        else:
            raise ValueError(f"to_native: the native weight {key!r} has no source; supported: {SUPPORTED}")
    native.load_state_dict({k: v.to(device=device, dtype=dtype) for k, v in state.items()}, strict=True)
    if next(native.parameters()).device != device:  # boot_native builds on the CPU whatever cfg says
        native = native.to(device)
    native = native.eval()
    return native, _map(model, native, f"to_native({arch})")
