"""The model's own answer: log-odds of the true vs the false answer token at the read position."""

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from elk_lens.capture import tokenize
from elk_lens.data.statements import StatementSet

__all__ = ["answer_token_ids", "output_log_odds"]


def answer_token_ids(model: TransformerBridge, answers: tuple[str, str]) -> tuple[int, int]:
    """Token ids of the (true, false) answers; each must be exactly one token."""
    ids = []
    for word in answers:
        toks = model.tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(toks) != 1:
            raise ValueError(f"answer {word!r} is {len(toks)} tokens ({toks}); answers must be single tokens")
        ids.append(toks[0])
    return ids[0], ids[1]


@torch.no_grad()
def output_log_odds(
    model: TransformerBridge,
    statements: StatementSet | Sequence[str],
    *,
    answers: tuple[str, str] = ("True", "False"),
    batch_size: int = 256,
) -> Float[Tensor, " batch"]:
    """``logit(true answer) - logit(false answer)`` at each statement's last real token."""
    texts = statements.texts if isinstance(statements, StatementSet) else list(statements)
    t_id, f_id = answer_token_ids(model, answers)
    tokens = tokenize(model, texts)
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokens.rows(start, start + batch_size)
        logits = model(batch.ids, attention_mask=batch.mask)
        last = batch.mask.sum(1) - 1  # right padding: last real token
        picked = logits[torch.arange(len(batch)), last]
        out.append((picked[:, t_id] - picked[:, f_id]).float())
    return torch.cat(out)
