"""Attribution patching (Nanda 2023): exact patching to first order, for every component at once.

``dM_c ~ sum_pos (a'_c - a_c) . dM/da_c``, with the gradient taken on the clean run. Cost: one clean
forward + backward and one corrupted forward, whatever the number of components, against one forward
per component for ``exact_patching``. The estimate is exact when M is linear in a_c along the path
from clean to corrupt (e.g. the last MLP before a ``resid_pre`` site, which writes straight into it)
and drifts as LayerNorm scales, attention patterns and GELUs downstream of c bend that path. Swapping
a digit token is no small step: on the quirky-arithmetic zoo model the embedding and layer-0 heads
get first-order scores of the wrong sign (benchmarks/circuits_bench.py reports the rank agreement).

``ig_steps = m > 1`` replaces the clean-run gradient by its average over m points on the straight
line from the corrupted to the clean embedding, ``e' + (k/m)(e - e')`` for k = 1..m (EAP-IG-inputs,
Hanna, Pezzelle, Belinkov 2024, here at node level). It costs m forward + backward passes. For the
embedding itself this is integrated gradients along the very path that exact patching takes.

Heads: the activation used is ``z_h`` (``hook_z``), not the head's output ``o_h = z_h W_O[h]``. The
two give the same number: o_h is linear in z_h, so ``(o'_h - o_h) . dM/do_h = (z'_h - z_h) W_O[h] .
dM/do_h = (z'_h - z_h) . dM/dz_h``. Working in z avoids a ``[batch, pos, head_index, d_model]``
tensor, and the gradient with respect to z_h is per head already.
"""

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from elk_lens.circuits._engine import Batch, gradients, record, work_dtype
from elk_lens.circuits._inputs import Texts, batches, check_ig_steps, check_reporter, check_sizes, pair_tokens
from elk_lens.circuits.components import EMBED_HOOK, _components, resolve_components
from elk_lens.reporters.base import Reporter

__all__ = ["attribution_patching"]


def attribution_patching(
    model: TransformerBridge,
    reporter: Reporter,
    clean: Texts,
    corrupt: Texts,
    *,
    components: list[str] | None = None,
    ig_steps: int = 1,
    batch_size: int = 1024,
    allow_other_model: bool = False,
) -> dict[str, Float[Tensor, " pair"]]:
    """First-order estimate of ``exact_patching``'s ``dM`` per pair, for every upstream component.

    Arguments are those of ``exact_patching``, plus ``ig_steps``: 1 for attribution patching proper
    (gradient at the clean run), m > 1 to average the gradient over m points between the corrupted
    and the clean embedding. Returns ``{name: [n_pairs]}``.
    """
    check_ig_steps(ig_steps, "attribution patching")
    check_sizes(batch_size=batch_size)
    site = check_reporter(model, reporter, allow_other_model=allow_other_model)
    every = _components(model, site)
    chosen = resolve_components(model, site, components)
    clean_tok, corrupt_tok = pair_tokens(model, clean, corrupt, site)
    dtype = work_dtype(model, reporter)
    out: dict[str, list[Tensor]] = {c.name: [] for c in chosen}
    for rows in batches(len(clean_tok), batch_size):
        clean_b, corrupt_b = Batch.of(clean_tok, rows), Batch.of(corrupt_tok, rows)
        base, grad = gradients(model, reporter, site, clean_b, every, dtype)  # k = m: the clean run itself
        twin = record(model, reporter, site, corrupt_b, every, dtype)
        e_clean, e_corrupt = base.acts[EMBED_HOOK], twin.acts[EMBED_HOOK]
        for k in range(1, ig_steps):
            _, g = gradients(
                model, reporter, site, clean_b, every, dtype, embed=e_corrupt + (k / ig_steps) * (e_clean - e_corrupt)
            )
            grad = {name: grad[name] + g[name] for name in grad}
        for c in chosen:
            diff = (c.take(twin.acts[c.hook]) - c.take(base.acts[c.hook])).to(dtype)
            slope = c.take(grad[c.hook]).to(dtype) / ig_steps
            out[c.name].append((diff * slope).flatten(1).sum(1).cpu())
    return {name: torch.cat(parts) for name, parts in out.items()}
