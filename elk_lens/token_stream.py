"""`TokenStream`: a raw token stream (a corpus, packed documents) for next-token fine-tuning.

Training on a stream is what "continued pre-training" means: no labels, only the next token. The
stream is cut into windows of ``context`` tokens; with ``bos`` set, every window starts with it (as
the model saw text in pre-training), so it holds ``context - 1`` stream tokens. Windows start at any
offset, or only at document starts when the stream records them (``from_texts(..., aligned=True)``):
short documents then always arrive whole, with the following documents packed behind them.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from elk_lens._checks import check_number, check_texts
from elk_lens._placement import input_device

__all__ = ["TokenStream", "stream_loss", "window_loss"]


@dataclass(frozen=True)
class TokenStream:
    """Token ids of one long stream, read in windows of ``context`` tokens.

    Attributes:
        ids: The stream, shape (n_tokens,).
        context: Tokens per training window (BOS included when ``bos`` is set); at most the model's n_ctx.
        bos: Token id put at the start of every window, or None for none.
        starts: Offsets where windows may start (document starts), or None for every offset.
    """

    ids: Int[Tensor, " n_tokens"]
    context: int
    bos: int | None = None
    starts: Int[Tensor, " n_starts"] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.ids, Tensor):
            raise TypeError(f"a token stream's ids must be a 1-D integer tensor; got {type(self.ids).__name__}")
        check_number("context", self.context, kind=int)
        if self.bos is not None:
            check_number("bos", self.bos, kind=int, low=0)
        if self.ids.ndim != 1 or self.ids.dtype not in (torch.int32, torch.int64):
            raise ValueError(
                f"a token stream is a 1-D integer tensor, got {self.ids.dtype} of shape {tuple(self.ids.shape)}"
            )
        if self.context < 2:
            raise ValueError(f"context must be >= 2 tokens (one to read, one to predict), got {self.context}")
        if len(self.ids) < self.span + 1:
            raise ValueError(
                f"the stream has {len(self.ids)} tokens; one window of context {self.context} needs {self.span + 1}"
            )
        if self.starts is not None:
            ok = (self.starts >= 0) & (self.starts <= self.last_start)
            if len(self.starts) == 0 or not bool(ok.any()):
                raise ValueError(f"no document start leaves a whole window (starts must lie in 0..{self.last_start})")

    @property
    def span(self) -> int:
        """Stream tokens per window (``context`` less the BOS)."""
        return self.context - (self.bos is not None)

    @property
    def last_start(self) -> int:
        """The last offset a window can start at (its targets need one token past the window)."""
        return len(self.ids) - self.span - 1

    @property
    def fingerprint(self) -> str:
        """A content hash (ids, context, BOS, starts): what a resumed run must match."""
        h = hashlib.sha256(self.ids.to(torch.int64).numpy().tobytes())
        h.update(f"|{self.context}|{self.bos}|".encode())
        if self.starts is not None:
            h.update(self.starts.to(torch.int64).numpy().tobytes())
        return h.hexdigest()[:16]

    @classmethod
    def from_texts(
        cls, model: TransformerBridge, texts: Sequence[str], *, context: int | None = None, aligned: bool = True
    ) -> "TokenStream":
        """Documents tokenized without BOS and joined by the tokenizer's EOS (its BOS where the EOS is
        missing or outside the model's vocabulary, as in the zoo's char-level tokenizer).

        ``context`` defaults to the model's n_ctx; windows get the model's BOS when it prepends one.
        """
        texts = check_texts("texts", texts)  # a bare string would be one document per character
        tok = model.tokenizer
        if tok is None:
            raise ValueError("this model has no tokenizer; boot it with one (load_model does for zoo and HF models)")
        in_vocab = [t for t in (tok.eos_token_id, tok.bos_token_id) if t is not None and t < model.cfg.d_vocab]
        if not in_vocab:
            raise ValueError(
                "the tokenizer has neither an EOS nor a BOS token inside the model's vocabulary "
                "to separate documents with"
            )
        sep = in_vocab[0]
        docs = tok(texts, add_special_tokens=False)["input_ids"]
        ids, starts = [], []
        for doc in docs:
            starts.append(len(ids))
            ids.extend([*doc, sep])
        prepend = getattr(model.cfg, "default_prepend_bos", True) and tok.bos_token_id is not None
        stream = torch.tensor(ids, dtype=torch.long)
        ctx = model.cfg.n_ctx if context is None else context
        starts_t = torch.tensor(starts, dtype=torch.long) if aligned else None
        return cls(stream, ctx, tok.bos_token_id if prepend else None, starts_t)

    def windows(self, offsets: Tensor) -> Int[Tensor, "batch pos"]:
        """The windows starting at ``offsets`` (stream offsets), each ``context + 1`` long: inputs then
        the last target, so ``w[:, :-1]`` is the model's input and ``w[:, 1:]`` its targets."""
        body = self.ids[offsets[:, None] + torch.arange(self.span + 1)]
        if self.bos is None:
            return body
        return torch.cat([torch.full((len(offsets), 1), self.bos, dtype=body.dtype), body], dim=1)

    def sample(self, rng: np.random.Generator, size: int) -> Tensor:
        """``size`` random window offsets (document starts when the stream records them)."""
        if self.starts is None:
            return torch.as_tensor(rng.integers(0, self.last_start + 1, size))
        valid = self.starts[self.starts <= self.last_start]
        return valid[torch.as_tensor(rng.integers(0, len(valid), size))]

    def tiling(self, max_windows: int | None = None) -> Tensor:
        """Fixed evaluation offsets: every document start, or back-to-back windows, at most ``max_windows``."""
        offsets = self.starts if self.starts is not None else torch.arange(0, self.last_start + 1, self.span)
        return offsets[offsets <= self.last_start][:max_windows]


def window_loss(model: TransformerBridge, windows: Int[Tensor, "batch pos"]) -> Tensor:
    """Mean next-token cross-entropy over every position of the windows (BOS is never a target)."""
    device = input_device(model)
    windows = windows.to(device)
    logits = model(windows[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten())


@torch.no_grad()
def stream_loss(
    model: TransformerBridge, stream: TokenStream, *, max_windows: int | None = None, batch_size: int = 256
) -> float:
    """Held-out next-token loss on ``stream``'s fixed tiling of windows (see :meth:`TokenStream.tiling`)."""
    offsets = stream.tiling(max_windows)
    total = 0.0
    for start in range(0, len(offsets), batch_size):
        chunk = offsets[start : start + batch_size]
        total += float(window_loss(model, stream.windows(chunk))) * len(chunk)
    return total / len(offsets)
