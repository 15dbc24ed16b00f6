"""`float64_norms`: native RMSNorms that compute in float64 when the model is float64.

TransformerLens 4.3's native RMSNorm (``NativeRMSNorm``, and the param-free ``NativeRMSNormPre`` and
``NativeLayerNormPre``) casts its input to float32 whatever the model's dtype, as HF's LlamaRMSNorm
does for half precision. A float64 model is then only as exact as float32 in its norms: widening an RMS
model's residual moved float64 logits by up to 4.1e-4 (issue 17's randomized check), all of it that
cast; with the norm in float64 the same growth is exact to 1.3e-11. The growth operators' claims are
checked in float64 (docs/methods/drift_growth_circuits.md §5), so a float64 check needs float64 norms.

Inside the context each such norm of a float64 model computes exactly what the library computes, in
float64 instead of float32; a float32 (or half) model is refused, since for it the library's norm is
already the intended one. On exit, also when the body raises, the library's forward is back.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.sources.native.model import NativeLayerNormPre, NativeRMSNorm, NativeRMSNormPre
from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm

__all__ = ["float64_norms"]

_NORMS = (NativeRMSNorm, NativeRMSNormPre, NativeLayerNormPre, Gemma3RMSNorm)


def _norm64(module: nn.Module, x: Tensor) -> Tensor:
    """The library's norm (model.py in transformer_lens.model_bridge.sources.native) without its float32 cast."""
    if isinstance(module, Gemma3RMSNorm):  # transformers' Gemma3RMSNorm: x.float(), then the (1 + w) gain
        return module._norm(x) * (1.0 + module.weight)
    if isinstance(module, NativeLayerNormPre):
        x = x - x.mean(dim=-1, keepdim=True)
        return x / (x.pow(2).mean(dim=-1, keepdim=True) + module.eps).sqrt()
    normalized = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + module.eps)
    return module.weight * normalized if isinstance(module, NativeRMSNorm) else normalized


@contextmanager
def float64_norms(model: TransformerBridge) -> Iterator[int]:
    """Within the context, the native RMS (and param-free) norms of the float64 ``model`` compute in
    float64. Yields how many norms were switched (0 for a LayerNorm model: ``nn.LayerNorm`` already
    computes in the input's dtype)."""
    dtype = next(model.parameters()).dtype
    if dtype != torch.float64:
        raise ValueError(
            f"float64_norms needs a float64 model (its norms then compute in float64); this one is {dtype}. "
            "Load it with dtype='float64', or leave the library's float32 norm, which is already the intended "
            "one below float64"
        )
    norms = [m for m in model.modules() if isinstance(m, _NORMS)]
    for m in norms:
        if "forward" in vars(m):
            raise RuntimeError(f"float64_norms: {type(m).__name__} already has its forward replaced (nested use?)")
    try:
        for m in norms:
            m.forward = lambda x, m=m: _norm64(m, x)
        yield len(norms)
    finally:
        for m in norms:
            vars(m).pop("forward", None)
