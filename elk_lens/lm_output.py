"""The model's own answer: log-odds of the true vs the false answer token at the read position."""

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.exceptions import StopAtLayerException

from elk_lens._checks import check_number, check_texts
from elk_lens._hooks import loud_hooks
from elk_lens._placement import input_device, onload
from elk_lens.capturing import tokenize
from elk_lens.data.statements import StatementSet

__all__ = ["UNEMBED_IN", "answer_logits", "answer_token_ids", "check_answers", "check_offsets", "output_log_odds"]


def answer_token_ids(model: TransformerBridge, answers: tuple[str, str]) -> tuple[int, int]:
    """Token ids of the (true, false) answers; each must be exactly one token."""
    check_answers(answers)
    ids = []
    for word in answers:
        toks = model.tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(toks) != 1:
            raise ValueError(f"answer {word!r} is {len(toks)} tokens ({toks}); answers must be single tokens")
        ids.append(toks[0])
    return ids[0], ids[1]


def check_answers(answers: object) -> None:
    """Two strings: a bare string such as ``"yn"`` would otherwise be read as its two characters."""
    if isinstance(answers, str) or not isinstance(answers, (tuple, list)) or len(answers) != 2:
        raise TypeError(f"answers must be a pair of strings (true answer, false answer); got {answers!r}")
    for i, word in enumerate(answers):
        if not isinstance(word, str) or not word:
            raise TypeError(f"answers[{i}] must be a non-empty string; got {word!r}")


def _edit_positions(last: Int[Tensor, " batch"], offsets: Int[Tensor, " k"], start: int) -> Int[Tensor, "batch k"]:
    """``last - offset`` per row; a statement too short for an offset is an error, not a wrap-around."""
    positions = last[:, None] - offsets[None]
    if bool((positions < 0).any()):
        i = int((positions < 0).any(1).nonzero()[0])
        raise ValueError(
            f"statement {start + i} has {int(last[i]) + 1} tokens, too few to edit {offsets.tolist()} from its end"
        )
    return positions


def check_offsets(positions_from_end: object) -> None:
    """Non-empty offsets, each an int >= 0 (counted back from the last real token)."""
    if isinstance(positions_from_end, (str, bytes)) or not isinstance(positions_from_end, (tuple, list)):
        raise TypeError(f"positions_from_end must be a tuple of ints >= 0, e.g. (0,); got {positions_from_end!r}")
    if not positions_from_end:
        raise ValueError(f"positions_from_end must be non-empty offsets >= 0, got {positions_from_end}")
    for i, k in enumerate(positions_from_end):
        check_number(f"positions_from_end[{i}]", k, kind=int)
    if any(k < 0 for k in positions_from_end):
        raise ValueError(f"positions_from_end must be non-empty offsets >= 0, got {positions_from_end}")


@torch.no_grad()
def output_log_odds(
    model: TransformerBridge,
    statements: StatementSet | Sequence[str],
    *,
    answers: tuple[str, str] = ("True", "False"),
    metric: str = "log_odds",
    batch_size: int = 256,
    intervention: Callable[[Int[Tensor, "batch k"]], AbstractContextManager] | None = None,
    positions_from_end: tuple[int, ...] = (0,),
) -> Float[Tensor, " batch"]:
    """``logit(true answer) - logit(false answer)`` at each statement's last real token.

    Args:
        metric: ``"log_odds"`` (the default, above) or ``"prob_diff"``: ``P(true) - P(false)`` under the
            full next-token softmax, geometry-of-truth's PD for the NIE.
        intervention: Called once per batch with the positions to edit, ``[batch, k]`` (``last - offset``
            for each offset in ``positions_from_end``); the forward runs inside the context it returns,
            e.g. ``lambda pos: steer(model, site, d, alpha=3.0, positions=pos)``. Positions are worked out
            here because only this function sees each batch's padding.
        positions_from_end: Offsets before each row's last real token: ``(0,)`` is the last token,
            ``(0, 1)`` also the one before it (GoT's period and the token before, docs/methods/elk_methods.md §8.2).
    """
    if metric not in ("log_odds", "prob_diff"):
        raise ValueError(f"metric must be 'log_odds' or 'prob_diff', got {metric!r}")
    check_offsets(positions_from_end)
    check_number("batch_size", batch_size, kind=int, low=1)
    if intervention is not None and not callable(intervention):
        raise TypeError(f"intervention must be a function positions -> context manager; got {intervention!r}")
    texts = statements.texts if isinstance(statements, StatementSet) else check_texts("statements", statements)
    t_id, f_id = answer_token_ids(model, answers)
    tokens = tokenize(model, texts)
    offsets = torch.tensor(positions_from_end)
    out = []
    device = input_device(model)
    for start in range(0, len(texts), batch_size):
        batch = tokens.rows(start, start + batch_size)
        last = batch.mask.sum(1) - 1  # right padding: last real token
        context = nullcontext() if intervention is None else intervention(_edit_positions(last, offsets, start))
        rows = (torch.arange(len(batch), device=device), last.to(device))
        with context:
            if metric == "log_odds":
                picked = answer_logits(model, batch.ids.to(device), batch.mask.to(device), rows, (t_id, f_id))
            else:  # the full softmax needs every column
                picked = model(batch.ids.to(device), attention_mask=batch.mask.to(device))[rows].float().softmax(-1)
                picked = picked[:, [t_id, f_id]]
        out.append((picked[:, 0] - picked[:, 1]).float().cpu())
    return torch.cat(out)


def answer_logits(
    model: TransformerBridge,
    ids: Tensor,
    mask: Tensor,
    rows: tuple[Tensor, Tensor],
    answer_ids: tuple[int, int],
    **forward: object,
) -> Float[Tensor, "batch 2"]:
    """The answers' logits at each row's read position, from the unembedding's two columns only.

    The full unembedding costs ``pos x d_vocab`` per statement (Gemma 3's vocabulary has 262k tokens) where
    two columns at one position suffice: the forward stops at the unembedding's input, which is read at
    the rows' positions and multiplied by ``W_U[:, answers]`` (plus the bias, and the soft cap where the
    model has one). Equal to the full logits' columns (tests/test_lm_output.py). ``forward`` goes to the
    model's forward (e.g. ``past_key_values``: ``rows`` then index the new tokens).
    """
    resid: list[Tensor] = []

    def read(x: Tensor, *, hook) -> None:
        resid.append(x[tuple(r.to(x.device) for r in rows)])  # blocks on several devices: x is on the last's
        raise StopAtLayerException(x)

    with loud_hooks(model, [(UNEMBED_IN, read)]):
        model(ids, attention_mask=mask, **forward)
    cols = list(answer_ids)
    with onload(model.unembed):  # a device map may have offloaded the unembedding (elk_lens._placement)
        logits = resid[0] @ model.W_U[:, cols].to(resid[0])
        b_U = getattr(model, "b_U", None)
        if b_U is not None:
            logits = logits + b_U[cols].to(logits)
    cap = getattr(model.cfg, "output_logits_soft_cap", -1.0) or -1.0
    return cap * torch.tanh(logits / cap) if cap > 0 else logits


UNEMBED_IN = "unembed.hook_in"
