"""Residual-stream capture through hooks, stopping the forward after the deepest requested layer.

``capture(model, statements, sites)`` returns an :class:`Activations` of shape
``[n, n_sites, d_model]`` read at one position per statement (default: its last real token), or
``[n, n_sites, pos, d_model]`` with ``position="all"``. Values equal ``run_with_cache``'s on the same
tokens (tested). The forward is cut short by raising ``StopAtLayerException`` from the deepest hook —
not ``stop_at_layer``, which silently drops hooks at that block and is ignored on BERT. Statements run
in batches of similar token length (within each cache shard), so little of the forward is padding, and
come back in their own order.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.exceptions import StopAtLayerException
from transformer_lens.utilities.tokenize_utils import get_attention_mask

from elk_lens import distributed
from elk_lens._checks import as_dtype, check_number
from elk_lens._fingerprint import fingerprint, tokenizer_fingerprint
from elk_lens._hooks import loud_hooks
from elk_lens._placement import input_device
from elk_lens._progress import progress_bar
from elk_lens.activations import Activations
from elk_lens.data.statements import StatementSet, as_statements
from elk_lens.sites import Site, parse_sites
from elk_lens.store import SHARD_ROWS, ActivationStore

__all__ = ["Position", "capture", "check_capture_args", "content_position", "tokenize"]

Position = Literal["last", "all"] | int
_TOKENIZE_CHUNK = 4096  # texts per tokenizer call (see tokenize)


@dataclass(frozen=True)
class Tokens:
    """Padded token ids and the matching attention mask (1 = real token)."""

    ids: Int[Tensor, "batch pos"]
    mask: Int[Tensor, "batch pos"]

    def __len__(self) -> int:
        return self.ids.shape[0]

    def rows(self, start: int, stop: int) -> "Tokens":
        """Rows ``start:stop``, without the columns that are padding in all of them."""
        return _trimmed(self.ids[start:stop], self.mask[start:stop])

    def take(self, index: Int[Tensor, " batch"]) -> "Tokens":
        """The rows at ``index``, in that order, without the columns that are padding in all of them."""
        return _trimmed(self.ids[index], self.mask[index])


def _trimmed(ids: Int[Tensor, "batch pos"], mask: Int[Tensor, "batch pos"]) -> Tokens:
    keep = mask.any(0)  # drop columns that are padding in every row of this batch
    cols = keep.nonzero().squeeze(1).tolist()
    if cols and cols[-1] - cols[0] + 1 == len(cols):  # one-sided padding: a slice (copied only if trimmed)
        span = slice(cols[0], cols[-1] + 1)  # contiguous: some HF models .view() their input ids
        return Tokens(ids[:, span].contiguous(), mask[:, span].contiguous())
    return Tokens(ids[:, keep], mask[:, keep])


def _fast_ids(model: TransformerBridge, texts: list[str]) -> list[list[int]] | None:
    """Token ids straight from the Rust tokenizer, when that is what ``to_tokens`` would give.

    ``to_tokens`` adds or strips a BOS only where the tokenizer's own rule differs from the model's;
    where they agree it is the plain tokenizer call, and skipping the Python wrapper halves the cost.
    """
    backend = getattr(model.tokenizer, "backend_tokenizer", None)
    cfg = model.cfg
    same_bos_rule = getattr(cfg, "default_prepend_bos", True) == getattr(cfg, "tokenizer_prepends_bos", True)
    if backend is None or not same_bos_rule or getattr(cfg, "tokenizer_appends_eos", False):
        return None
    # The backend keeps the padding/truncation of the wrapper's last call; the wrapper resets both on
    # every call, so clearing them here is what its own call with padding=False, truncation=False does.
    backend.no_padding()
    backend.no_truncation()
    return [e.ids for e in backend.encode_batch_fast(texts)]


def tokenize(model: TransformerBridge, texts: Sequence[str], padding_side: str = "right") -> Tokens:
    """Tokenize as ``model.to_tokens`` does (same BOS rule), keeping the attention mask.

    Texts go to the tokenizer in chunks, padded to the longest text of the whole set afterwards: the
    result is the same as one call, but the tokenizer's per-text Python objects (~3 KB each) never
    exist for every text at once.
    """
    if model.tokenizer is None:
        raise ValueError("this model has no tokenizer; boot it with one (load_model does for zoo and HF models)")
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    prepend_bos = getattr(model.cfg, "default_prepend_bos", True)
    pad_id = model.tokenizer.pad_token_id
    parts = []
    for start in range(0, len(texts), _TOKENIZE_CHUNK):
        chunk = list(texts[start : start + _TOKENIZE_CHUNK])
        fast = _fast_ids(model, chunk)
        if fast is not None:
            lengths = torch.tensor([len(x) for x in fast])
            mask = (torch.arange(int(lengths.max()))[None] < lengths[:, None]).long()
            if padding_side == "left":
                mask = mask.flip(1)
            ids = torch.full(mask.shape, pad_id if pad_id is not None else 0, dtype=torch.long)
            ids[mask.bool()] = torch.tensor([t for x in fast for t in x], dtype=torch.long)
            parts.append((ids, mask))
            continue
        ids = model.to_tokens(chunk, padding_side=padding_side, truncate=False, move_to_device=False)
        mask = get_attention_mask(model.tokenizer, ids, prepend_bos, padding_side=padding_side)
        parts.append((ids, mask.to(torch.long)))
    if len(parts) == 1:
        return Tokens(*parts[0])
    width = max(ids.shape[1] for ids, _ in parts)
    if pad_id is None and any(ids.shape[1] != width for ids, _ in parts):
        raise ValueError("the texts have different lengths and the tokenizer has no pad token; set one")

    def pad(t: Tensor, value: int) -> Tensor:  # as the tokenizer pads: pad ids, mask 0, on the padding side
        extra = width - t.shape[1]
        return torch.nn.functional.pad(t, (extra, 0) if padding_side == "left" else (0, extra), value=value)

    return Tokens(torch.cat([pad(ids, pad_id) for ids, _ in parts]), torch.cat([pad(mask, 0) for _, mask in parts]))


def content_position(model: TransformerBridge) -> Position:
    """The read position of a statement's last own token: ``-2`` where the tokenizer closes every text
    with a special token (an encoder's ``[SEP]``), else ``"last"``.

    Marks & Tegmark read the statement's final period. On a decoder that is the last token; an encoder
    appends ``[SEP]`` after it, and while ``[SEP]`` also sees every token, it is a token the statement
    does not contain.
    """
    ids = tokenize(model, ["a."]).ids[0].tolist()
    special = set(getattr(model.tokenizer, "all_special_ids", []))
    return -2 if len(ids) >= 2 and ids[-1] in special else "last"


def _read_index(mask: Int[Tensor, "batch pos"], position: int | str) -> Int[Tensor, " batch"]:
    """Column of each row's read position, counting real tokens only (padding-aware)."""
    cols = torch.arange(mask.shape[1]).expand_as(mask)
    first = torch.where(mask.bool(), cols, mask.shape[1]).min(1).values
    last = torch.where(mask.bool(), cols, -1).max(1).values
    if position == "last":
        return last
    assert isinstance(position, int)
    return first + position if position >= 0 else last + 1 + position


def _validate(model: TransformerBridge, tokens: Tokens, sites: list[Site], position: Position) -> None:
    lengths = tokens.mask.sum(1)
    if int(lengths.min()) == 0:  # e.g. "" on a model that prepends no BOS: the read would land on a pad
        row = int(lengths.argmin())
        raise ValueError(f"statement {row} has no tokens (an empty text on a model that prepends no BOS)")
    n_ctx = model.cfg.n_ctx
    if n_ctx is not None and int(lengths.max()) > n_ctx:
        row = int(lengths.argmax())
        raise ValueError(
            f"statement {row} is {int(lengths[row])} tokens long, longer than the model's context "
            f"(n_ctx={n_ctx}); shorten it or use a model with a longer context"
        )
    _check_vocab(model, tokens)
    if isinstance(position, int):
        shortest = int(lengths.min())
        if position >= shortest or position < -shortest:
            raise ValueError(
                f"position {position} is beyond the sequence: the shortest statement has {shortest} tokens "
                f"(valid: {-shortest}..{shortest - 1}, 'last' or 'all')"
            )
    for site in sites:
        site.check(model)


def _check_vocab(model: TransformerBridge, tokens: Tokens) -> None:
    """Every id must index the embedding: a tokenizer with more tokens than the model (an added special
    token, another model's tokenizer) would otherwise fail inside the forward with a bare IndexError."""
    d_vocab = model.cfg.d_vocab
    outside = (tokens.ids >= d_vocab) | (tokens.ids < 0)
    if not bool(outside.any()):
        return
    row, col = (int(i) for i in outside.nonzero()[0])
    tid = int(tokens.ids[row, col])
    what = "the pad token" if not tokens.mask[row, col] else repr(model.tokenizer.convert_ids_to_tokens(tid))
    raise ValueError(
        f"statement {row} has token id {tid} ({what}), outside the model's embedding (d_vocab={d_vocab}; valid ids "
        f"0..{d_vocab - 1}): the tokenizer has more tokens than the model; use the model's own tokenizer"
    )


def _check_position(position: object) -> None:
    if isinstance(position, bool) or not isinstance(position, (int, str)):
        raise TypeError(f"position must be 'last', 'all' or an int; got {type(position).__name__} {position!r}")
    if isinstance(position, str) and position not in ("last", "all"):
        raise ValueError(f"position must be 'last', 'all' or an int, got {position!r}")


def check_capture_args(
    *, position: object, batch_size: object, dtype: object, cache_dir: object, shard_rows: object = SHARD_ROWS
) -> torch.dtype:
    """The argument checks of :func:`capture` that need no tokens (``capture_contrast`` makes them before its
    own work); returns ``dtype`` as a torch dtype (a name such as ``"float16"`` is accepted)."""
    _check_position(position)
    check_number("batch_size", batch_size, kind=int, low=1)
    check_number("shard_rows", shard_rows, kind=int, low=1)
    if cache_dir is not None:
        if Path(cache_dir).exists() and not Path(cache_dir).is_dir():
            raise NotADirectoryError(
                f"cache_dir {cache_dir} is a file, not a directory; give a directory for the activation cache"
            )
        if position == "all":
            raise ValueError("position='all' cannot be cached (rows have different lengths); use 'last' or an int")
    return as_dtype("dtype", dtype)


def _batches(n: int, batch_size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, batch_size):
        yield start, min(n, start + batch_size)


def length_batches(mask: Int[Tensor, "n pos"], batch_size: int) -> Iterator[Int[Tensor, " batch"]]:
    """Row indices of each forward batch: rows grouped by their real token length, shortest first.

    A batch is as wide as its longest row, so mixing short and long statements spends most of the
    forward on padding; grouping by length cuts that (``benchmarks/real_lm_capture.py`` measures the
    padding fraction on the truth datasets). Ties keep their order (a stable sort), and each batch
    lists its rows in their original order, so a set that fits one batch runs exactly as before.
    """
    order = torch.argsort(mask.sum(1), stable=True)
    for start, stop in _batches(len(order), batch_size):
        yield order[start:stop].sort().values


class _Recorder:
    """Forward hooks attached once per shard; each forward records its batch into fresh slots.

    Attaching hooks costs the bridge an alias walk over its components (``model.hooks``): 0.4 ms on the
    embedded model, 2.7 ms on SmolLM2-135M — 2% of a one-site capture of the embedded model when it was
    done per batch (docs/results/benchmarks.md, issue 18). They are attached per shard: a rank that owns
    no shard to compute attaches none (loud hooks would call that "never fired").
    """

    def __init__(self, sites: list[Site], position: Position) -> None:
        self.sites, self.position = sites, position
        self.deepest = max(range(len(sites)), key=lambda i: sites[i].depth)
        self.out: dict[int, Tensor] = {}
        self.rows: Tensor | None = None
        self.read: Tensor | None = None

    def hooks(self) -> list[tuple[str, Callable]]:
        return [(s.hook_name, self._hook(i)) for i, s in enumerate(self.sites)]

    def _hook(self, i: int) -> Callable:
        def hook_fn(t: Tensor, *, hook) -> None:
            # integer indexing copies already; position="all" keeps the whole tensor
            self.out[i] = t.detach().clone() if self.read is None else t[self.rows, self.read]
            if i == self.deepest:
                raise StopAtLayerException(t)

        return hook_fn


@torch.no_grad()
def _forward_batch(
    model: TransformerBridge, tokens: Tokens, recorder: _Recorder
) -> Float[Tensor, "batch n_sites *pos d_model"]:
    """One forward pass, with ``recorder``'s hooks attached, that records every site and stops after the
    deepest one."""
    recorder.out = {}
    recorder.rows = torch.arange(len(tokens))
    recorder.read = None if recorder.position == "all" else _read_index(tokens.mask, recorder.position)
    device = input_device(model)
    # An all-ones mask means "attend to everything", as no mask does; leaving it out skips the mask
    # arithmetic in every layer and runs exactly the forward run_with_cache(tokens) runs.
    mask = None if bool(tokens.mask.all()) else tokens.mask.to(device)
    model(tokens.ids.to(device), attention_mask=mask)
    return torch.stack([recorder.out[i].cpu() for i in range(len(recorder.sites))], 1)


def _never(start: int, stop: int) -> Tensor:
    raise AssertionError(f"capture: rows {start}:{stop} were to be read from the cache, not computed")


def capture(
    model: TransformerBridge,
    statements: StatementSet | Sequence[str],
    sites: Sequence[Site | str],
    *,
    position: Position = "last",
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    padding_side: str = "right",
    dtype: torch.dtype | str = torch.float32,
    progress: bool | None = None,
    shard_rows: int = SHARD_ROWS,
) -> Activations:
    """Residual stream of ``statements`` at ``sites``, read at ``position``.

    Args:
        model: Any TransformerBridge (native, HF decoder, HF encoder).
        statements: A StatementSet or a list of texts (a bare string is refused); each is read at its
            own last real token by default.
        sites: ``Site`` objects or names: ``"blocks.3.hook_resid_pre"``, ``"resid_pre.3"``.
        position: ``"last"`` (last real token), an int (index among real tokens; negative from
            the end), or ``"all"`` (every position, with the mask kept; padding positions hold zeros).
        batch_size: Statements per forward pass.
        cache_dir: If given, shards are written there atomically, keyed by (model fingerprint, tokenizer
            fingerprint, data fingerprint, sites, position, padding side, dtype); a later call reads them
            without running the model, and a damaged shard is recomputed. The result is then backed by
            the shards on disk (each verified again when read), so memory stays flat in the number of
            statements.
        padding_side: ``"right"`` or ``"left"``.
        dtype: Storage dtype of the activations: a floating torch dtype or its name (``"float16"``).
        progress: Show a progress bar (default: a bar on a terminal, else coarse lines to the
            ``elk_lens.progress`` logger, which ``elk-lens run`` prints).
        shard_rows: Statements per cache shard (with ``cache_dir``): the unit of resumption and of
            recomputation after damage. Rows are batched by length within each run of ``shard_rows``
            statements, with or without a cache, so both run the same batches.
    """
    statements = as_statements("statements", statements)
    texts = statements.texts
    dtype = check_capture_args(
        position=position, batch_size=batch_size, dtype=dtype, cache_dir=cache_dir, shard_rows=shard_rows
    )
    site_list = parse_sites(sites)
    # the tokenizer is part of the key: equal weights with another tokenizer read other tokens
    meta = dict(
        sites=[s.name for s in site_list],
        position=position,
        model_fingerprint=fingerprint(model),
        tokenizer_fingerprint=tokenizer_fingerprint(model),
        data_fingerprint=statements.fingerprint,
        padding_side=padding_side,
        dtype=str(dtype).removeprefix("torch."),
    )
    ranks = distributed.ranks()  # under torchrun, the shards are dealt over the ranks (elk_lens/distributed.py)
    store, missing = None, None
    if cache_dir is not None:
        store = ActivationStore(Path(cache_dir), meta, n_rows=len(texts), shard_rows=shard_rows)
        missing = store.missing()
    if ranks.all_true(missing == []):
        # Every shard is there and verified: the key holds the model, tokenizer, texts and settings, so these
        # statements were tokenized and checked when the shards were written; tokenizing them again was ~90% of
        # a cached call (issue 18).
        bar = progress_bar(len(texts), "capture", progress=progress, unit="stmt")
        try:
            return store.fill(_never, on_rows=bar.update, sites=site_list, missing=[])
        finally:
            bar.close()
    tokens = tokenize(model, texts, padding_side)
    _validate(model, tokens, site_list, position)

    row_shape = (len(site_list), *(tokens.ids.shape[1:] if position == "all" else ()), model.cfg.d_model)

    def compute(start: int, stop: int, out: Tensor | None = None) -> Tensor:
        """Rows ``start:stop`` (one shard) into ``out``, batched by length inside the shard: a shard stays
        the unit of resumption, and its values do not depend on which other shards are cached."""
        out = torch.empty((stop - start, *row_shape), dtype=dtype) if out is None else out
        with loud_hooks(model, recorder.hooks()):  # once per shard, not per batch (see _Recorder)
            for index in length_batches(tokens.mask[start:stop], batch_size):
                batch = tokens.take(start + index)
                chunk = _forward_batch(model, batch, recorder)
                if position == "all":  # zero the pads (their values depend on the batch), re-pad to the set's width
                    chunk = chunk.masked_fill(~batch.mask.bool()[:, None, :, None], 0)
                    extra = tokens.ids.shape[1] - chunk.shape[2]
                    pad = (0, 0, extra, 0) if padding_side == "left" else (0, 0, 0, extra)
                    chunk = torch.nn.functional.pad(chunk, pad)
                out[index] = chunk.to(dtype)  # back in the statements' order
                bar.update(len(index))
        return out

    finished = 0

    def on_rows(n: int) -> None:  # a shard is done: computed (the bar moved per batch) or read from the cache
        nonlocal finished
        finished += n
        bar.update(finished - bar.n)

    recorder = _Recorder(site_list, position)
    bar = progress_bar(len(texts), "capture", progress=progress, unit="stmt")
    try:
        if cache_dir is None:  # the same shards as with a cache: equal batches, equal values
            values = torch.empty((len(texts), *row_shape), dtype=dtype)
            shards = list(_batches(len(texts), shard_rows))
            owners = ranks.deal(len(shards))
            for (start, stop), owner in zip(shards, owners, strict=True):
                if owner == ranks.rank:
                    compute(start, stop, values[start:stop])
                on_rows(stop - start)
            for (start, stop), owner in zip(shards, owners, strict=True):  # every rank ends with every shard
                ranks.broadcast_(values[start:stop], src=owner)
            mask = tokens.mask if position == "all" else None
            return Activations(values, site_list, position, meta, mask=mask)
        return store.fill(compute, on_rows=on_rows, sites=site_list, missing=missing, ranks=ranks)
    finally:
        bar.close()
