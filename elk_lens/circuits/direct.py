"""Direct attribution: each component's write at the read position, projected on the reporter's ``w``.

What is exact: a reporter reads the raw residual (``score = w . x + b``, no LayerNorm in between) and
in a pre-LN transformer the residual is a plain sum of writes, ``x = embed + sum_heads z_h W_O[h] +
sum_layers b_O + sum_MLPs mlp_out``. So ``sum(DA) + DA["biases"] + reporter.b`` *is* the score, up to
rounding (tested: ~1e-15 in float64). Each run checks this sum and raises if it fails (post-LN models).

What is not: DA credits a component only with what it writes straight into the site. A head whose
write is read by a later MLP, which then moves the score, gets none of that effect here (the MLP gets
it). DA says where the score is *written*, not what *causes* it; use ``exact_patching`` (or its
first-order estimate ``attribution_patching``) for the total effect of a component.
"""

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from elk_lens.circuits._engine import W_O, Batch, _b_O, record, work_dtype
from elk_lens.circuits._inputs import Texts, batches, check_reporter, check_sizes, statement_tokens
from elk_lens.circuits.components import BIASES, _components, resolve_components
from elk_lens.reporters.base import Reporter

__all__ = ["direct_attribution"]


def direct_attribution(
    model: TransformerBridge,
    reporter: Reporter,
    statements: Texts,
    *,
    components: list[str] | None = None,
    batch_size: int = 1024,
    allow_other_model: bool = False,
) -> dict[str, Float[Tensor, " batch"]]:
    """Per-statement direct attribution of every upstream component to the reporter's score.

    Args:
        model: A pre-LN TransformerBridge (e.g. ``load_model("zoo:quirky-arith")``).
        reporter: A statement reporter; its ``site`` (``blocks.k.hook_resid_pre/mid/post``) sets
            which components are upstream.
        statements: Texts, or ``Tokens`` from ``elk_lens.capturing.tokenize``; each is read at its last
            real token, as ``capture`` reads it.
        components: A subset of ``upstream_components(model, reporter.site)``; default all.
        batch_size: Statements per forward pass.
        allow_other_model: Score with a reporter fitted on another model (fingerprint mismatch).

    Returns:
        ``{name: [n]}`` for each component, plus ``"biases"`` (``w . sum b_O``, the same for every
        statement). Over all components, ``sum(values) + reporter.b`` equals the reporter's score.
    """
    check_sizes(batch_size=batch_size)
    site = check_reporter(model, reporter, allow_other_model=allow_other_model)
    every = _components(model, site)
    chosen = resolve_components(model, site, components)
    tokens = statement_tokens(model, statements, site)
    dtype = work_dtype(model, reporter)
    w = reporter.w.to(dtype)
    with torch.no_grad():
        # w pulled back through each head's W_O: DA_h = z_h . (W_O[h] w), no [batch, d_model] per head
        w_heads = {
            layer: torch.einsum("hed,d->he", W_O(model, layer).cpu().to(dtype), w)
            for layer in {c.layer for c in every if c.head is not None}
        }
        biases = sum((_b_O(model, layer).cpu().to(dtype) @ w for layer in w_heads), torch.zeros((), dtype=dtype))
    out: dict[str, list[Tensor]] = {c.name: [] for c in chosen}
    for rows in batches(len(tokens), batch_size):
        batch = Batch.of(tokens, rows)
        rec = record(model, reporter, site, batch, every, dtype)
        pick = torch.arange(len(batch))
        for c in chosen:
            at_read = c.take(rec.acts[c.hook].cpu())[pick, batch.read].to(dtype)
            out[c.name].append(at_read @ (w if c.head is None else w_heads[c.layer][c.head]))
    scores = {name: torch.cat(parts) for name, parts in out.items()}
    scores[BIASES] = biases.expand(len(tokens)).clone()
    return scores
