"""Forward passes for circuit scoring: record component outputs, patch them, take gradients.

Every pass stops at the reporter's site by raising ``StopAtLayerException`` from the site's hook, as
``elk_lens.capturing`` does: layers above the site cannot change the score, so they never run. All hooks
go through ``loud_hooks``, so a hook that never fires is an error, not an unpatched run.

Patched runs stack several patch plans into one forward (plan i edits rows ``i*b .. (i+1)*b``).
Rows of a batch never interact, so this is exact: a stacked run gives the same numbers as one run
per plan (on this CPU build, bit for bit; tested by patching a run with its own activations).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.exceptions import StopAtLayerException

from elk_lens._hooks import loud_hooks
from elk_lens._placement import input_device, onload
from elk_lens.capturing import Tokens, _read_index
from elk_lens.circuits.components import EMBED_HOOK, Component
from elk_lens.reporters.base import Reporter
from elk_lens.sites import Site

__all__ = [
    "Batch",
    "Plan",
    "Recording",
    "forward_to_site",
    "gradients",
    "patched_scores",
    "read_score",
    "record",
    "work_dtype",
]

Plan = dict[Component, Tensor]  # component -> replacement activation ([batch, pos, ...] or [pos, ...])
ADDITIVITY_RTOL = 1e-3  # float32 rounding is ~1e-6; a post-LN or parallel-residual mismatch is O(1)


@dataclass(frozen=True)
class Batch:
    """Token ids of a batch of statements, their mask, and each row's read position (last real token)."""

    ids: Int[Tensor, "batch pos"]
    mask: Int[Tensor, "batch pos"]
    read: Int[Tensor, " batch"]

    @classmethod
    def of(cls, tokens: Tokens, rows: slice) -> "Batch":
        ids, mask = tokens.ids[rows], tokens.mask[rows]  # untrimmed: every batch keeps the full width
        return cls(ids, mask, _read_index(mask, "last"))

    def __len__(self) -> int:
        return self.ids.shape[0]


@dataclass(frozen=True)
class Recording:
    """One unpatched run: each component hook's activation, and the reporter's score per row."""

    acts: dict[str, Tensor]  # hook name -> [batch, pos, d_model] or [batch, pos, head_index, d_head]
    score: Float[Tensor, " batch"]


def work_dtype(model: TransformerBridge, reporter: Reporter) -> torch.dtype:
    """Scores are computed in the wider of the model's and the reporter's dtypes (float64 reporters)."""
    return torch.promote_types(model.cfg.dtype, reporter.w.dtype)


def read_score(reporter: Reporter, resid: Tensor, read: Tensor, dtype: torch.dtype) -> Float[Tensor, " batch"]:
    x = resid[torch.arange(resid.shape[0], device=resid.device), read.to(resid.device)]
    # a row-wise product-sum, not a matvec: BLAS gemv sums in an order that depends on the row count
    # and the row position, which would make a stacked run differ from a single one by ~1e-16
    return ((x.to(dtype) * reporter.w.to(x.device, dtype)).sum(-1) + reporter.b).cpu()


def forward_to_site(
    model: TransformerBridge,
    site: Site,
    batch: Batch,
    edits: dict[str, Callable[[Tensor], Tensor | None]],
    reps: int = 1,
) -> Float[Tensor, "rows pos d_model"]:
    """Run ``reps`` stacked copies of ``batch`` with an edit function per hook; return the site's residual."""
    got: dict[str, Tensor] = {}

    def hook_for(name: str) -> Callable:
        edit = edits.get(name)

        def fn(t: Tensor, *, hook) -> Tensor:
            if edit is not None:
                new = edit(t)
                t = t if new is None else new
            if name == site.hook_name:
                got["resid"] = t
                raise StopAtLayerException(t)
            return t

        return fn

    names = list(dict.fromkeys([*edits, site.hook_name]))
    device = input_device(model)
    ids, mask = batch.ids.repeat(reps, 1).to(device), batch.mask.repeat(reps, 1).to(device)
    attention_mask = None if bool(mask.all()) else mask  # as capture: all-ones = no mask, same numbers
    with loud_hooks(model, [(name, hook_for(name)) for name in names]):
        model(ids, attention_mask=attention_mask)
    return got["resid"]


def _hooks(components: Sequence[Component]) -> list[str]:
    return list(dict.fromkeys(c.hook for c in components))


@torch.no_grad()
def _check_additive(
    model: TransformerBridge, components: Sequence[Component], acts: dict[str, Tensor], resid: Tensor, read: Tensor
) -> None:
    """Raise unless the residual at the read position is the sum of the components' writes + ``b_O``.

    This is the premise of every score here (a pre-LN residual is a sum of writes); a post-LN model
    (BERT) or a missing writer would break it silently otherwise.
    """
    rows = torch.arange(resid.shape[0])
    total = torch.zeros_like(resid[rows, read])
    heads = {layer: W_O(model, layer) for layer in sorted({c.layer for c in components if c.head is not None})}
    for c in components:
        value = c.take(acts[c.hook])[rows, read]
        if c.head is not None:
            value = value @ heads[c.layer][c.head].to(value)
        total = total + value.to(total.device)  # blocks on several devices: the writes come from each
    for layer in heads:
        total = total + _b_O(model, layer).to(total)
    target = resid[rows, read]
    err = float((total - target).norm(dim=-1).max())
    scale = float(target.norm(dim=-1).max()) + 1e-12
    if err > ADDITIVITY_RTOL * scale:
        raise ValueError(
            f"the residual is not the sum of the component writes (max error {err:.3g}, norm {scale:.3g}): "
            f"circuit scores need a pre-LN transformer whose residual stream is a plain sum "
            f"(post-LN models such as BERT are not)"
        )


def W_O(model: TransformerBridge, layer: int) -> Float[Tensor, "head_index d_head d_model"]:
    """Layer ``layer``'s per-head output weights, on the block's device; read with the block's offloaded
    weights brought back (elk_lens._placement) when a device map offloaded them."""
    attn = model.blocks[layer].attn
    with onload(attn):
        return attn.W_O.detach()


def _b_O(model: TransformerBridge, layer: int) -> Tensor:
    attn = model.blocks[layer].attn
    with onload(attn):
        b_O = getattr(attn, "b_O", None)
        return torch.zeros(model.cfg.d_model) if b_O is None else b_O.detach()


@torch.no_grad()
def record(
    model: TransformerBridge, reporter: Reporter, site: Site, batch: Batch, components: Sequence[Component], dtype
) -> Recording:
    """One clean run that keeps every component hook's activation (and checks additivity)."""
    acts: dict[str, Tensor] = {}

    def keep(name: str) -> Callable[[Tensor], None]:
        def edit(t: Tensor) -> None:
            acts[name] = t.detach().clone()

        return edit

    resid = forward_to_site(model, site, batch, {name: keep(name) for name in _hooks(components)})
    _check_additive(model, components, acts, resid, batch.read.to(resid.device))
    return Recording(acts, read_score(reporter, resid, batch.read, dtype))


# Rows per forward when patch plans are stacked, by device type: the smallest forward within 5% of the
# cheapest cost per row, measured by benchmarks/patching_rows.py (docs/results/benchmarks.md). On 2 CPU cores
# the cost per row is flat from 256 rows on, so a batch of 256 pairs or more runs one plan per forward, as a
# plain hook loop does, and smaller batches stack plans up to 256 rows. CUDA keeps 4096 (not re-measured).
ROWS_PER_FORWARD = {"cpu": 256, "cuda": 4096}


def plans_per_forward(model: TransformerBridge, batch_rows: int, max_rows: int | None) -> int:
    """How many plans one forward carries: ``max_rows // batch_rows``, at least 1; ``max_rows=None`` takes
    the measured size for the model's device (``ROWS_PER_FORWARD``)."""
    if max_rows is None:
        max_rows = ROWS_PER_FORWARD.get(input_device(model).type, ROWS_PER_FORWARD["cpu"])
    return max(1, max_rows // batch_rows)


@torch.no_grad()
def patched_scores(
    model: TransformerBridge,
    reporter: Reporter,
    site: Site,
    batch: Batch,
    plans: Sequence[Plan],
    dtype: torch.dtype,
    *,
    max_rows: int | None = None,
) -> Float[Tensor, "n_plans batch"]:
    """The score of ``batch`` under each plan; several plans per forward, up to ``max_rows`` rows."""
    b = len(batch)
    per_forward = plans_per_forward(model, b, max_rows)
    out = []
    for start in range(0, len(plans), per_forward):
        chunk = plans[start : start + per_forward]
        by_hook: dict[str, list[tuple[slice, Component, Tensor]]] = {}
        for i, plan in enumerate(chunk):
            for c, value in plan.items():
                by_hook.setdefault(c.hook, []).append((slice(i * b, (i + 1) * b), c, value))

        def editor(patches: list[tuple[slice, Component, Tensor]]) -> Callable[[Tensor], Tensor]:
            def edit(t: Tensor) -> Tensor:
                t = t.clone()
                for rows, c, value in patches:
                    c.put(t, rows, value.to(t.device, t.dtype))
                return t

            return edit

        edits = {name: editor(patches) for name, patches in by_hook.items()}
        resid = forward_to_site(model, site, batch, edits, reps=len(chunk))
        out.append(read_score(reporter, resid, batch.read.repeat(len(chunk)), dtype).view(len(chunk), b))
    return torch.cat(out) if out else torch.zeros(0, b, dtype=dtype)


def gradients(
    model: TransformerBridge,
    reporter: Reporter,
    site: Site,
    batch: Batch,
    components: Sequence[Component],
    dtype: torch.dtype,
    *,
    embed: Float[Tensor, "batch pos d_model"] | None = None,
) -> tuple[Recording, dict[str, Tensor]]:
    """One clean run and ``dM/d(activation)`` at every component hook, per row.

    The gradient is taken with respect to a zero tensor added at each hook, a tensor created here:
    ``retain_grad()`` on converted bridge hook views such as ``hook_z`` is silently inert in TL 4.3
    (PR #1750). Adding zero leaves the forward unchanged, and ``dM/d(delta) = dM/d(activation)``
    through every downstream path. Rows are independent, so the gradient of the summed score is
    each row's own gradient.

    ``embed`` replaces the input to block 0 (the embedding component's output) for this run: the
    gradient is then taken at that point instead of at the clean run (integrated gradients).
    """
    acts: dict[str, Tensor] = {}
    deltas: dict[str, Tensor] = {}

    def add_delta(name: str) -> Callable[[Tensor], Tensor]:
        def edit(t: Tensor) -> Tensor:
            if embed is not None and name == EMBED_HOOK:
                t = embed.to(t.device, t.dtype)
            acts[name] = t.detach().clone()
            deltas[name] = torch.zeros_like(t, requires_grad=True)
            return t + deltas[name]

        return edit

    names = _hooks(components)
    with torch.enable_grad():
        resid = forward_to_site(model, site, batch, {name: add_delta(name) for name in names})
        read = batch.read.to(resid.device)
        x = resid[torch.arange(resid.shape[0], device=resid.device), read].to(dtype)
        score = (x * reporter.w.to(x.device, dtype)).sum(-1) + reporter.b
        grads = torch.autograd.grad(score.sum(), [deltas[n] for n in names])
    _check_additive(model, components, acts, resid.detach(), read)
    return Recording(acts, score.detach().cpu()), {n: g.detach() for n, g in zip(names, grads, strict=True)}
