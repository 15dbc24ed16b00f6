"""Contrast pairs: each statement read twice, with the true and with the false answer appended.

Unsupervised ELK methods (CCS, CRC-TPC, VINC) compare the residual at the appended answer token of
``statement + true answer`` with that of ``statement + false answer`` (docs/methods/elk_methods.md
§1). Each answer must add exactly one token, so the read position is that token on every row.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformer_lens.model_bridge import TransformerBridge

from elk_lens.activations import Activations
from elk_lens.capturing import Position, capture, check_capture_args, tokenize
from elk_lens.data.statements import StatementSet, as_statements
from elk_lens.sites import Site, parse_sites
from elk_lens.store import SHARD_ROWS

__all__ = ["ContrastActivations", "capture_contrast", "contrast_statements"]


@dataclass
class ContrastActivations:
    """The two halves of every pair, ``[n, n_sites, d_model]`` each, rows aligned with the statements."""

    true: Activations
    false: Activations
    answers: tuple[str, str]

    def at(self, site: Site | str | int):
        """``(x_true, x_false)`` at one site."""
        return self.true.at(site), self.false.at(site)

    @property
    def sites(self) -> list[Site]:
        return self.true.sites


def contrast_statements(statements: StatementSet, answers: tuple[str, str]) -> tuple[StatementSet, StatementSet]:
    """The statements with the true answer, and with the false answer, appended to the text."""
    if not isinstance(answers, (tuple, list)) or not all(isinstance(a, str) for a in answers):
        raise TypeError(f"answers must be a pair of strings (true, false); got {type(answers).__name__} {answers!r}")
    if len(answers) != 2 or answers[0] == answers[1]:
        raise ValueError(f"answers must be two different strings (true, false), got {answers!r}")
    true, false = (
        StatementSet(
            [t + answer for t in statements.texts], statements.truth, statements.meta, f"{statements.name}+{answer}"
        )
        for answer in answers
    )
    return true, false


def _check_one_token(model: TransformerBridge, base: StatementSet, appended: StatementSet, answer: str) -> None:
    grown = tokenize(model, appended.texts).mask.sum(1) - tokenize(model, base.texts).mask.sum(1)
    if (grown != 1).any():
        row = int((grown != 1).nonzero()[0])
        raise ValueError(
            f"appending answer {answer!r} to statement {row} ({base.texts[row]!r}) adds {int(grown[row])} tokens, "
            f"not one; choose answers that are single tokens after the statement (e.g. ' True' for GPT-2)"
        )


def capture_contrast(
    model: TransformerBridge,
    statements: StatementSet | Sequence[str],
    sites: Sequence[Site | str],
    *,
    answers: tuple[str, str] = ("True", "False"),
    position: Position = "last",
    batch_size: int = 64,
    cache_dir=None,
    dtype: torch.dtype | str = torch.float32,
    progress: bool | None = None,
    shard_rows: int = SHARD_ROWS,
) -> ContrastActivations:
    """Capture both halves of every contrast pair at the appended answer token (each half as
    :func:`~elk_lens.capturing.capture` does, with the same ``progress`` and ``shard_rows``).

    ``answers`` are appended verbatim: ``("True", "False")`` fits the zoo models, whose statements
    end in ``"Bob:"``; a GPT-2-style tokenizer wants ``(" True", " False")``. ``position`` is where the
    answer token sits among the real tokens: ``"last"`` on a decoder, ``-2`` on an encoder that appends
    ``[SEP]`` (:func:`~elk_lens.capturing.content_position` gives the right one for a model).
    """
    statements = as_statements("statements", statements)
    dtype = check_capture_args(
        position=position, batch_size=batch_size, dtype=dtype, cache_dir=cache_dir, shard_rows=shard_rows
    )
    sites = parse_sites(sites)
    if position not in ("last", -1, -2):
        raise ValueError(
            f"the answer token is the last real token or the one before [SEP]: position must be "
            f"'last', -1 or -2, got {position!r}"
        )
    with_true, with_false = contrast_statements(statements, answers)
    for appended, answer in ((with_true, answers[0]), (with_false, answers[1])):
        _check_one_token(model, statements, appended, answer)
    settings = dict(
        position=position,
        batch_size=batch_size,
        cache_dir=cache_dir,
        dtype=dtype,
        progress=progress,
        shard_rows=shard_rows,
    )
    halves = [capture(model, s, sites, **settings) for s in (with_true, with_false)]
    return ContrastActivations(halves[0], halves[1], (answers[0], answers[1]))
