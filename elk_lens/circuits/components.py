"""The components that write into the residual stream upstream of a reporter's site, and their names.

In a pre-LN transformer the residual at ``blocks.k.hook_resid_pre`` is a plain sum of writes: the
embedding (token + positional), every head of layers < k, every MLP of layers < k and the attention
output biases. Each write has a name, used as the key of every score dict in this package:

- ``"embed"``: ``blocks.0.hook_resid_pre`` (token + positional embeddings).
- ``"L{l}H{h}"``: head h of layer l, ``z_h @ W_O[h]``, patched at ``blocks.{l}.attn.hook_z``.
  TL 4.3 native bridges have no ``hook_result`` (``use_attn_result`` raises), so the per-head output
  is computed from ``hook_z`` and ``W_O`` (docs/methods/transformer_lens_4_3.md §2.2); since it is linear in
  ``z_h``, replacing ``z_h`` replaces exactly that head's write and nothing else.
- ``"L{l}MLP"``: ``blocks.{l}.hook_mlp_out`` (includes the MLP's own output bias).
- ``"biases"`` (scores only, never patched): the attention ``b_O`` of every included layer, the one
  write that belongs to no head. It is the same on every input, so it only appears in direct
  attribution, where it closes the identity ``sum(DA) + biases + reporter.b == score``.

A ``resid_mid`` site adds the heads of its own layer; a ``resid_post`` site adds its MLP too.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from elk_lens.circuits._inputs import check_names
from elk_lens.sites import Site

__all__ = ["BIASES", "EMBED_HOOK", "Component", "head_output", "resolve_components", "upstream_components"]

BIASES = "biases"
EMBED_HOOK = "blocks.0.hook_resid_pre"  # token + positional embeddings, as the first block reads them
_HEAD = re.compile(r"^L(\d+)H(\d+)$")
_MLP = re.compile(r"^L(\d+)MLP$")


@dataclass(frozen=True)
class Component:
    """One residual writer: its name, and where its output is read and replaced."""

    name: str
    layer: int
    head: int | None = None  # set for heads only
    is_embed: bool = False

    @classmethod
    def from_name(cls, name: str) -> "Component":
        """``"embed"``, ``"L{layer}H{head}"`` or ``"L{layer}MLP"`` as a component (no model needed)."""
        if name == "embed":
            return cls(name, 0, is_embed=True)
        if m := _HEAD.match(name):
            return cls(name, int(m.group(1)), int(m.group(2)))
        if m := _MLP.match(name):
            return cls(name, int(m.group(1)))
        raise ValueError(f"unknown component {name!r}: expected 'embed', 'L<layer>H<head>' or 'L<layer>MLP'")

    @property
    def hook(self) -> str:
        """The hook whose output holds this component's activation (shared by the heads of a layer)."""
        if self.is_embed:
            return EMBED_HOOK
        if self.head is not None:
            return f"blocks.{self.layer}.attn.hook_z"
        return f"blocks.{self.layer}.hook_mlp_out"

    def take(self, act: Tensor) -> Tensor:
        """This component's slice of its hook's activation: ``[batch, pos, d_head]`` for a head
        (from ``[batch, pos, head_index, d_head]``), the whole ``[batch, pos, d_model]`` otherwise."""
        return act if self.head is None else act[:, :, self.head]

    def put(self, act: Tensor, rows: slice, value: Tensor) -> None:
        """Write ``value`` (``[batch, pos, ...]``, or ``[pos, ...]`` to broadcast) into ``act[rows]``, in place."""
        if self.head is None:
            act[rows] = value
        else:
            act[rows, :, self.head] = value


def _components(model: TransformerBridge, site: Site) -> list[Component]:
    n_heads = model.cfg.n_heads
    has_mlp = not getattr(model.cfg, "attn_only", False)
    out = [Component("embed", 0, is_embed=True)]
    for layer in range(site.layer + 1):
        if layer < site.layer or site.kind in ("resid_mid", "resid_post"):
            out += [Component(f"L{layer}H{head}", layer, head) for head in range(n_heads)]
        if has_mlp and (layer < site.layer or site.kind == "resid_post"):
            out.append(Component(f"L{layer}MLP", layer))
    return out


def upstream_components(model: TransformerBridge, site: Site | str) -> list[str]:
    """Names of every component that writes into the residual read at ``site``, in forward order.

    >>> upstream_components(model, "blocks.1.hook_resid_pre")  # doctest: +SKIP
    ['embed', 'L0H0', 'L0H1', 'L0H2', 'L0H3', 'L0MLP']
    """
    site = Site.parse(site)
    site.check(model)
    return [c.name for c in _components(model, site)]


def resolve_components(
    model: TransformerBridge, site: Site | str, names: Sequence[str] | None = None
) -> list[Component]:
    """The named components (all upstream ones for ``None``), in the caller's order, de-duplicated.

    Raises ``ValueError`` naming the unknown names and the valid ones, and saying so when a name is a
    real component that the site cannot see (downstream of it).
    """
    site = Site.parse(site)
    site.check(model)
    every = _components(model, site)
    if names is None:
        return every
    names = check_names("components", names)
    by_name = {c.name: c for c in every}
    unknown = [n for n in dict.fromkeys(names) if n not in by_name]
    if unknown:
        downstream = [n for n in unknown if _is_model_component(model, n)]
        hint = f" ({downstream} write after {site.hook_name}, so cannot change it)" if downstream else ""
        raise ValueError(
            f"unknown component(s) {unknown} for site {site.hook_name}{hint}; valid: {list(by_name)}"
            + (f" ({BIASES!r} is a constant term, not a patchable component)" if BIASES in unknown else "")
        )
    return [by_name[n] for n in dict.fromkeys(names)]


def _is_model_component(model: TransformerBridge, name: str) -> bool:
    head, mlp = _HEAD.match(name), _MLP.match(name)
    if head:
        return int(head.group(1)) < model.cfg.n_layers and int(head.group(2)) < model.cfg.n_heads
    return bool(mlp) and int(mlp.group(1)) < model.cfg.n_layers


def head_output(
    z: Float[Tensor, "batch head_index d_head"], W_O: Float[Tensor, "head_index d_head d_model"]
) -> Float[Tensor, "batch head_index d_model"]:
    """Per-head attention output ``z_h @ W_O[h]`` (what ``hook_result`` would hold, without ``b_O``)."""
    return torch.einsum("bhe,hed->bhd", z, W_O)
