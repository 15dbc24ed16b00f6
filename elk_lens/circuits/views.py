"""What the reports and notebooks draw from component scores: a layer × head grid, the top heads, and
those heads' attention patterns on one prompt."""

from collections.abc import Mapping

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from elk_lens._checks import check_number
from elk_lens._hooks import loud_hooks
from elk_lens.capturing import tokenize
from elk_lens.circuits._inputs import check_names
from elk_lens.circuits.components import BIASES, Component

__all__ = ["attention_patterns", "layer_grid", "top_heads"]


def top_heads(scores: Mapping[str, float], k: int) -> list[str]:
    """The ``k`` heads with the largest |score|."""
    check_number("k", k, kind=int, low=1)  # k = -1 would slice off the last head and return the rest
    heads = [n for n in scores if n != BIASES and Component.from_name(n).head is not None]
    return sorted(heads, key=lambda n: -abs(scores[n]))[:k]


def layer_grid(scores: Mapping[str, float]) -> tuple[list[list[float]], list[str], list[str]]:
    """Scores as rows = layers and columns = heads then the MLP, the embedding in a row of its own;
    NaN where a component is absent. Returns (values, row labels, column labels) for a heatmap."""
    parts = [Component.from_name(n) for n in scores if n != BIASES]
    layers = sorted({c.layer for c in parts if not c.is_embed})
    n_heads = 1 + max((c.head for c in parts if c.head is not None), default=-1)  # MLP-only scores: no head columns
    nan = float("nan")
    rows = [[scores.get("embed", nan)] + [nan] * n_heads]
    rows += [
        [scores.get(f"L{layer}H{h}", nan) for h in range(n_heads)] + [scores.get(f"L{layer}MLP", nan)]
        for layer in layers
    ]
    return rows, ["embed"] + [f"L{layer}" for layer in layers], [f"H{h}" for h in range(n_heads)] + ["MLP"]


@torch.no_grad()
def attention_patterns(
    model: TransformerBridge, text: str, heads: list[str]
) -> tuple[Float[Tensor, "head_index query_pos key_pos"], list[str]]:
    """The named heads' attention patterns on ``text`` (stacked in that order) and its tokens."""
    if not isinstance(text, str):
        raise TypeError(f"text must be one prompt (a str); got {type(text).__name__} {text!r}")
    parts = [Component.from_name(h) for h in check_names("heads", heads)]
    if any(c.head is None for c in parts):
        raise ValueError(f"attention patterns belong to heads only, got {heads}")
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    for c in parts:
        if c.layer >= n_layers or c.head >= n_heads:
            raise ValueError(
                f"head {c.name} is not in this model: it has layers 0..{n_layers - 1} and heads 0..{n_heads - 1}"
            )
    tokens = tokenize(model, [text])
    grabbed: dict[str, Tensor] = {}

    def keep(pattern: Tensor, *, hook) -> None:
        grabbed[hook.name] = pattern.detach()

    layers = sorted({c.layer for c in parts})
    with loud_hooks(model, [(f"blocks.{layer}.attn.hook_pattern", keep) for layer in layers]):
        model(tokens.ids, attention_mask=tokens.mask)
    patterns = torch.stack([grabbed[f"blocks.{c.layer}.attn.hook_pattern"][0, c.head] for c in parts])
    return patterns, model.tokenizer.convert_ids_to_tokens(tokens.ids[0].tolist())
