"""Exact activation patching: the oracle that every cheaper circuit score is judged against.

For each component c and each contrast pair, rerun the clean statement with c's output replaced, at
every position, by its output on the corrupted twin, and record ``dM = M(patched) - M(clean)``, where
``M`` is the reporter's score at its site and the statement's last token. Everything downstream of c
(including later components that read c's write) recomputes, so dM is c's total effect through every
path, not only the direct one (compare ``direct_attribution``). One forward per component, on the
whole batch of pairs; several components share a forward by stacking copies of the batch.
"""

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from elk_lens.circuits._engine import Batch, patched_scores, record, work_dtype
from elk_lens.circuits._inputs import Texts, batches, check_reporter, check_sizes, pair_tokens
from elk_lens.circuits.components import _components, resolve_components
from elk_lens.reporters.base import Reporter

__all__ = ["exact_patching"]


def exact_patching(
    model: TransformerBridge,
    reporter: Reporter,
    clean: Texts,
    corrupt: Texts,
    *,
    components: list[str] | None = None,
    batch_size: int = 1024,
    max_rows: int | None = None,
    allow_other_model: bool = False,
) -> dict[str, Float[Tensor, " pair"]]:
    """``M(clean with c <- c(corrupt)) - M(clean)`` per pair, for every upstream component c.

    Args:
        model: A pre-LN TransformerBridge.
        reporter: A statement reporter (``score = w . x + b`` at ``reporter.site``).
        clean: Statements (or ``Tokens``).
        corrupt: One twin per clean statement, of the same token length (e.g. the same sum shown
            right vs shown sloppy).
        components: A subset of ``upstream_components(model, reporter.site)``; default all.
        batch_size: Pairs per batch.
        max_rows: Rows per forward; ``max_rows // batch_size`` components are patched per forward (at least
            one). None: the size measured for the model's device (``circuits._engine.ROWS_PER_FORWARD``).
        allow_other_model: Score with a reporter fitted on another model.

    Returns:
        ``{name: [n_pairs]}``, the change in the reporter's log-odds when that one component carries
        the corrupted twin's output.
    """
    check_sizes(batch_size=batch_size, max_rows=max_rows)
    site = check_reporter(model, reporter, allow_other_model=allow_other_model)
    every = _components(model, site)
    chosen = resolve_components(model, site, components)
    clean_tok, corrupt_tok = pair_tokens(model, clean, corrupt, site)
    dtype = work_dtype(model, reporter)
    out: list[Tensor] = []
    for rows in batches(len(clean_tok), batch_size):
        clean_b, corrupt_b = Batch.of(clean_tok, rows), Batch.of(corrupt_tok, rows)
        base = record(model, reporter, site, clean_b, every, dtype)
        twin = record(model, reporter, site, corrupt_b, every, dtype)
        plans = [{c: c.take(twin.acts[c.hook])} for c in chosen]
        out.append(patched_scores(model, reporter, site, clean_b, plans, dtype, max_rows=max_rows) - base.score)
    delta = torch.cat(out, 1)
    return {c.name: delta[i] for i, c in enumerate(chosen)}
