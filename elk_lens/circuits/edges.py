"""Edge attribution patching (EAP; Syed, Rager, Conmy 2023) and its oracle, exact edge patching.

The graph is EAP-IG's (hannamw/EAP-IG ``graph.py``; docs/methods/drift_growth_circuits.md §2.1) cut at the
reporter's site. Writers are the components of ``components.py``; readers are the Q, K and V input of
every upstream head (``"L1H2.q"``), the input of every upstream MLP (``"L1MLP"``) and the site
(``"site"``). An edge ``"u->v"`` joins a writer to each reader that reads the residual after u wrote.

Patching edge u -> v: reader v alone reads the residual with u's write swapped for u's write on the
corrupted twin, ``x_v + (a'_u - a_u)``; every other reader reads its usual input, and everything
downstream of v recomputes. u writes before v reads, so a_u is u's clean output. Patching every
edge out of u is node patching of u (tested), and the site's incoming edges are direct attribution.

TL 4.3 native bridges cannot split a head's Q/K/V input (``use_split_qkv_input`` raises), so each
reader's private input is made here: at the reader's hook (``attn.hook_q/k/v`` for one head,
``mlp.hook_in``) the value ``f(x) = LN(x) W + b`` becomes ``t + f(x + delta) - f(x)``, with x the
residual the block read. With delta = 0 that is t itself, so patching a run with its own activations
changes nothing bit for bit; and before scoring, each call checks that f reproduces the bridge's own
value at every reader (LayerNorm type, weights, no rotary/GQA surprises).

EAP: ``score(u -> v) = sum_pos (a'_u - a_u) . dM/d(input_v)`` at the clean run, every edge from one
forward + backward. By the chain rule through the residual, ``sum_v score(u -> v)`` is node
attribution patching's score of u (tested). It has AP's first-order error (see attribution.py).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from elk_lens._placement import onload
from elk_lens.circuits._engine import W_O, Batch, forward_to_site, plans_per_forward, read_score, record, work_dtype
from elk_lens.circuits._inputs import (
    Texts,
    batches,
    check_ig_steps,
    check_names,
    check_reporter,
    check_sizes,
    pair_tokens,
)
from elk_lens.circuits.components import EMBED_HOOK, Component, _components
from elk_lens.reporters.base import Reporter
from elk_lens.sites import Site

__all__ = ["edge_attribution_patching", "exact_edge_patching", "upstream_edges"]

RECOMPUTE_RTOL = 1e-4  # f(x) vs the bridge's own value: ~1e-15 in float64, ~1e-7 in float32


@dataclass(frozen=True)
class Reader:
    """One reader of the residual: a head's Q, K or V input, an MLP's input, or the site."""

    name: str
    kind: str  # "q" | "k" | "v" | "mlp" | "site"
    layer: int
    hook: str  # where its value is edited
    source: str | None = None  # the residual it reads (None for the site: it is the residual)
    head: int | None = None


@dataclass(frozen=True)
class Edge:
    writer: Component
    reader: Reader

    @property
    def name(self) -> str:
        return f"{self.writer.name}->{self.reader.name}"


def _readers(model: TransformerBridge, site: Site) -> list[Reader]:
    has_mlp = not getattr(model.cfg, "attn_only", False)
    out = []
    for layer in range(site.layer + 1):
        if layer < site.layer or site.kind in ("resid_mid", "resid_post"):
            for head in range(model.cfg.n_heads):
                for kind in ("q", "k", "v"):
                    out.append(
                        Reader(
                            f"L{layer}H{head}.{kind}",
                            kind,
                            layer,
                            f"blocks.{layer}.attn.hook_{kind}",
                            f"blocks.{layer}.hook_resid_pre",
                            head,
                        )
                    )
        if has_mlp and (layer < site.layer or site.kind == "resid_post"):
            out.append(
                Reader(f"L{layer}MLP", "mlp", layer, f"blocks.{layer}.mlp.hook_in", f"blocks.{layer}.hook_resid_mid")
            )
    out.append(Reader("site", "site", site.layer, site.hook_name))
    return out


def _feeds(writer: Component, reader: Reader) -> bool:
    """Whether the writer has written to the residual by the time the reader reads it."""
    if writer.is_embed or reader.kind == "site":
        return True
    if writer.head is not None:
        return reader.layer > writer.layer or (reader.kind == "mlp" and reader.layer == writer.layer)
    return reader.layer > writer.layer


def _edges(model: TransformerBridge, site: Site) -> list[Edge]:
    readers = _readers(model, site)
    return [Edge(w, r) for w in _components(model, site) for r in readers if _feeds(w, r)]


def upstream_edges(model: TransformerBridge, site: Site | str) -> list[str]:
    """Every edge ``"writer->reader"`` upstream of ``site``, writers in forward order.

    At the last layer's ``resid_post`` there are ``L(5H+2) + 1 + (H+1)(3H+1)L(L-1)/2`` of them
    (479 for L = H = 4), the EAP-IG count with the site in place of the logits.
    """
    site = Site.parse(site)
    site.check(model)
    return [e.name for e in _edges(model, site)]


def _resolve_edges(model: TransformerBridge, site: Site, names: Sequence[str] | None) -> list[Edge]:
    every = _edges(model, site)
    if names is None:
        return every
    names = check_names("edges", names)
    by_name = {e.name: e for e in every}
    unknown = [n for n in dict.fromkeys(names) if n not in by_name]
    if unknown:
        shown = list(by_name)[:6]
        raise ValueError(
            f"unknown edge(s) {unknown} for site {site.hook_name}: edges are 'WRITER->READER' with a writer "
            f"written before the reader reads (readers: 'L1H2.q/k/v', 'L1MLP', 'site'); e.g. {shown}, "
            f"{len(by_name)} in all (upstream_edges lists them)"
        )
    return [by_name[n] for n in dict.fromkeys(names)]


def _norm_fn(model: TransformerBridge, ln) -> Callable[[Tensor], Tensor]:
    """The block's normalization ``ln`` as a function, with its weights read now."""
    kind, eps = model.cfg.normalization_type, model.cfg.eps
    if kind == "LN":
        weight, bias = ln.weight.detach(), ln.bias.detach()
        return lambda x: F.layer_norm(x, (x.shape[-1],), weight, bias, eps)
    if kind == "LNPre":
        return lambda x: F.layer_norm(x, (x.shape[-1],), None, None, eps)
    if kind in ("RMS", "RMSPre"):
        weight = ln.weight.detach() if kind == "RMS" else None

        def rms(x: Tensor) -> Tensor:
            y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
            return y if weight is None else y * weight

        return rms
    if kind is None:
        return lambda x: x
    raise ValueError(
        f"edge scores cannot rebuild inputs for normalization_type={kind!r}; valid: LN, LNPre, RMS, RMSPre, None"
    )


def _reader_fn(model: TransformerBridge, reader: Reader) -> Callable[[Tensor], Tensor]:
    """``f``: the reader's value at its hook as a function of the residual it reads; the weights are read
    once, here, with a block a device map offloaded brought back (elk_lens._placement)."""
    block = model.blocks[reader.layer]
    if reader.kind == "site":
        return lambda x: x
    with onload(block):
        if reader.kind == "mlp":
            return _norm_fn(model, block.ln2)
        norm = _norm_fn(model, block.ln1)
        W = getattr(block.attn, f"W_{reader.kind.upper()}")[reader.head].detach()
        b = getattr(block.attn, f"b_{reader.kind.upper()}")[reader.head].detach()
    return lambda x: norm(x) @ W + b


def _slice(reader: Reader, t: Tensor) -> Tensor:
    return t if reader.head is None else t[:, :, reader.head]


@torch.no_grad()
def _check_readers(model: TransformerBridge, site: Site, batch: Batch, readers: Sequence[Reader]) -> None:
    """Raise unless ``f(x)`` reproduces the bridge's own value at every reader."""
    if getattr(model.cfg, "n_key_value_heads", None) not in (None, model.cfg.n_heads):
        raise ValueError("edge scores do not support grouped-query attention (n_key_value_heads < n_heads)")
    seen: dict[str, Tensor] = {}
    names = {r.hook for r in readers if r.kind != "site"} | {r.source for r in readers if r.source}

    def keep(name: str) -> Callable[[Tensor], None]:
        def edit(t: Tensor) -> None:
            seen[name] = t

        return edit

    forward_to_site(model, site, batch, {name: keep(name) for name in names})
    for r in readers:
        if r.kind == "site":
            continue
        want, got = _slice(r, seen[r.hook]), _reader_fn(model, r)(seen[r.source])
        err, scale = float((want - got).abs().max()), float(want.abs().max()) + 1e-12
        if err > RECOMPUTE_RTOL * scale:
            raise ValueError(
                f"cannot rebuild reader {r.name} at {r.hook} from {r.source} (max error {err:.3g} of {scale:.3g}); "
                f"edge scores need pre-LN blocks whose {r.kind} input is LN(residual) W + b"
            )


def _edge_forward(
    model: TransformerBridge,
    site: Site,
    batch: Batch,
    patches: list[tuple[slice, Reader, Tensor]],
    reps: int = 1,
    embed: Tensor | None = None,
) -> Float[Tensor, "rows pos d_model"]:
    """One forward in which each ``(rows, reader, delta)`` moves that reader's input by ``delta``.

    ``embed`` replaces the embedding (the input to block 0) first, for integrated gradients.

    Shifts of one reader in the same rows add up before ``f`` is applied (several edges into one
    reader are one shifted input, not a sum of separate effects). With gradients enabled, every patch
    must cover all rows, and the edit is out of place so the graph runs through it.
    """
    merged: dict[tuple[int | None, int | None, Reader], Tensor] = {}
    for rows, r, delta in patches:
        key = (rows.start, rows.stop, r)
        merged[key] = merged[key] + delta if key in merged else delta
    by_hook: dict[str, list[tuple[slice, Reader, Tensor]]] = {}
    for (start, stop, r), delta in merged.items():
        by_hook.setdefault(r.hook, []).append((slice(start, stop), r, delta))
    needed = {r.source for _, r, _ in patches if r.source}
    sources: dict[str, Tensor] = {}
    grad = torch.is_grad_enabled()

    def change(r: Reader, x: Tensor, delta: Tensor) -> Tensor:
        f = _reader_fn(model, r)
        return f(x + delta.to(x.device, x.dtype)) - f(x)  # exactly 0 where delta is 0

    def edit_for(name: str) -> Callable[[Tensor], Tensor | None]:
        def edit(t: Tensor) -> Tensor | None:
            replaced = embed is not None and name == EMBED_HOOK
            if replaced:
                t = embed.to(t.device, t.dtype)
            if name in needed:
                sources[name] = t
            if name not in by_hook:
                return t if replaced else None
            if grad:
                assert all(rows == slice(None) for rows, _, _ in by_hook[name]), "gradient patches cover all rows"
                changes = {r.head: change(r, sources[r.source] if r.source else t, d) for _, r, d in by_hook[name]}
                if None in changes:  # an MLP input or the site: one reader per hook
                    return t + changes[None]
                zero = torch.zeros_like(t[:, :, 0])
                return t + torch.stack([changes.get(h, zero) for h in range(t.shape[2])], 2)
            out = t.clone()
            for rows, r, delta in by_hook[name]:
                x = sources[r.source][rows] if r.source else t[rows]
                if r.head is None:
                    out[rows] += change(r, x, delta)
                else:
                    out[rows, :, r.head] += change(r, x, delta)
            return out

        return edit

    names = list(dict.fromkeys([*needed, *by_hook, *([EMBED_HOOK] if embed is not None else [])]))
    return forward_to_site(model, site, batch, {name: edit_for(name) for name in names}, reps=reps)


def _writer_deltas(
    model: TransformerBridge, writers: Sequence[Component], base: dict[str, Tensor], twin: dict[str, Tensor]
) -> dict[str, Tensor]:
    """``a'_u - a_u`` in the residual basis ``[batch, pos, d_model]`` (heads through their ``W_O``)."""
    out = {}
    heads = {layer: W_O(model, layer) for layer in {w.layer for w in writers if w.head is not None}}
    for w in writers:
        delta = w.take(twin[w.hook]) - w.take(base[w.hook])
        out[w.name] = delta if w.head is None else delta @ heads[w.layer][w.head].to(delta)
    return out


def edge_attribution_patching(
    model: TransformerBridge,
    reporter: Reporter,
    clean: Texts,
    corrupt: Texts,
    *,
    edges: list[str] | None = None,
    ig_steps: int = 1,
    batch_size: int = 256,
    allow_other_model: bool = False,
) -> dict[str, Float[Tensor, " pair"]]:
    """EAP score ``(a'_u - a_u) . dM/d(input_v)`` per pair for every edge (or the named ``edges``).

    Arguments are those of ``attribution_patching``: ``ig_steps = m > 1`` averages the gradient over
    m points between the corrupted and the clean embedding (EAP-IG-inputs, Hanna et al. 2024).
    Returns ``{"u->v": [n_pairs]}``.
    """
    check_ig_steps(ig_steps, "EAP")
    check_sizes(batch_size=batch_size)
    site = check_reporter(model, reporter, allow_other_model=allow_other_model)
    writers, readers = _components(model, site), _readers(model, site)
    chosen = _resolve_edges(model, site, edges)
    clean_tok, corrupt_tok = pair_tokens(model, clean, corrupt, site)
    dtype = work_dtype(model, reporter)
    out: dict[str, list[Tensor]] = {e.name: [] for e in chosen}
    for i, rows in enumerate(batches(len(clean_tok), batch_size)):
        clean_b, corrupt_b = Batch.of(clean_tok, rows), Batch.of(corrupt_tok, rows)
        if i == 0:
            _check_readers(model, site, clean_b, readers)
        base = record(model, reporter, site, clean_b, writers, dtype)
        twin = record(model, reporter, site, corrupt_b, writers, dtype)
        deltas = _writer_deltas(model, writers, base.acts, twin.acts)
        e_clean, e_corrupt = base.acts[EMBED_HOOK], twin.acts[EMBED_HOOK]
        grads: dict[str, Tensor] = {}
        for k in range(1, ig_steps + 1):  # k = ig_steps: the clean run itself
            embed = None if k == ig_steps else e_corrupt + (k / ig_steps) * (e_clean - e_corrupt)
            for name, g in _reader_gradients(model, reporter, site, clean_b, readers, dtype, embed).items():
                grads[name] = grads[name] + g if name in grads else g
        grads = {name: g / ig_steps for name, g in grads.items()}
        for e in chosen:
            value = (deltas[e.writer.name].to(dtype) * grads[e.reader.name].to(dtype)).flatten(1).sum(1)
            out[e.name].append(value.cpu())
    return {name: torch.cat(parts) for name, parts in out.items()}


def _reader_gradients(
    model: TransformerBridge,
    reporter: Reporter,
    site: Site,
    batch: Batch,
    readers: Sequence[Reader],
    dtype: torch.dtype,
    embed: Tensor | None,
) -> dict[str, Tensor]:
    """``dM/d(input_v)`` for every reader, from one forward + backward (a zero shift per reader)."""
    shape = (len(batch), batch.ids.shape[1], model.cfg.d_model)
    probes = {r.name: torch.zeros(shape, dtype=model.cfg.dtype, requires_grad=True) for r in readers}
    with torch.enable_grad():
        patches = [(slice(None), r, probes[r.name]) for r in readers]
        resid = _edge_forward(model, site, batch, patches, embed=embed)
        score = read_score(reporter, resid, batch.read, dtype)
        grads = torch.autograd.grad(score.sum(), list(probes.values()))
    return dict(zip(probes, grads, strict=True))


def exact_edge_patching(
    model: TransformerBridge,
    reporter: Reporter,
    clean: Texts,
    corrupt: Texts,
    *,
    edges: list[str] | None = None,
    batch_size: int = 1024,
    max_rows: int | None = None,
    allow_other_model: bool = False,
) -> dict[str, Float[Tensor, " pair"]]:
    """``M(clean with edge u -> v patched) - M(clean)`` per pair: EAP's oracle, one forward per edge.

    Arguments are those of ``exact_patching``. Returns ``{"u->v": [n_pairs]}``.
    """
    check_sizes(batch_size=batch_size, max_rows=max_rows)
    site = check_reporter(model, reporter, allow_other_model=allow_other_model)
    writers, readers = _components(model, site), _readers(model, site)
    chosen = _resolve_edges(model, site, edges)
    clean_tok, corrupt_tok = pair_tokens(model, clean, corrupt, site)
    dtype = work_dtype(model, reporter)
    out: list[Tensor] = []
    for i, rows in enumerate(batches(len(clean_tok), batch_size)):
        clean_b, corrupt_b = Batch.of(clean_tok, rows), Batch.of(corrupt_tok, rows)
        if i == 0:
            _check_readers(model, site, clean_b, readers)
        base = record(model, reporter, site, clean_b, writers, dtype)
        twin = record(model, reporter, site, corrupt_b, writers, dtype)
        deltas = _writer_deltas(model, writers, base.acts, twin.acts)
        plans = [[(e.reader, deltas[e.writer.name])] for e in chosen]
        out.append(_edge_scores(model, reporter, site, clean_b, plans, dtype, max_rows=max_rows) - base.score)
    delta = torch.cat(out, 1)
    return {e.name: delta[i] for i, e in enumerate(chosen)}


@torch.no_grad()
def _edge_scores(
    model: TransformerBridge,
    reporter: Reporter,
    site: Site,
    batch: Batch,
    plans: Sequence[Sequence[tuple[Reader, Tensor]]],
    dtype: torch.dtype,
    *,
    max_rows: int | None = None,
) -> Float[Tensor, "n_plans batch"]:
    """The score under each plan (a list of reader-input shifts); several plans per forward."""
    b = len(batch)
    per_forward = plans_per_forward(model, b, max_rows)
    out = []
    for start in range(0, len(plans), per_forward):
        chunk = plans[start : start + per_forward]
        patches = [(slice(i * b, (i + 1) * b), r, delta) for i, plan in enumerate(chunk) for r, delta in plan]
        resid = _edge_forward(model, site, batch, patches, reps=len(chunk))
        out.append(read_score(reporter, resid, batch.read.repeat(len(chunk)), dtype).view(len(chunk), b))
    return torch.cat(out) if out else torch.zeros(0, b, dtype=dtype)
