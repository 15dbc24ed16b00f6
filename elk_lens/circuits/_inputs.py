"""Input checks shared by every scorer: the reporter fits the model, and twins line up token for token."""

from collections.abc import Iterator, Sequence

import torch
from transformer_lens.model_bridge import TransformerBridge

from elk_lens._checks import check_number
from elk_lens.capturing import Tokens, _validate, tokenize
from elk_lens.compat import check_compatible
from elk_lens.reporters.base import Reporter
from elk_lens.sites import Site

__all__ = [
    "Texts",
    "batches",
    "check_ig_steps",
    "check_names",
    "check_reporter",
    "check_sizes",
    "pair_tokens",
    "statement_tokens",
]

Texts = Sequence[str] | Tokens  # statements, or tokens from elk_lens.capturing.tokenize


def check_reporter(model: TransformerBridge, reporter: Reporter, *, allow_other_model: bool = False) -> Site:
    """The reporter's site, after checking that the reporter can read this model's residual.

    The reporter must fit the model (:func:`elk_lens.check_compatible`, with ``allow_other_model``
    passed on: e.g. a transfer study on purpose), read single statements, and read a site the model has.
    """
    if not isinstance(reporter, Reporter):
        raise TypeError(f"reporter must be a Reporter (elk_lens.reporters.Reporter); got {type(reporter).__name__}")
    if reporter.reads != "statement":
        raise ValueError(
            f"circuit scores need a statement reporter (score = w . x + b on one residual); this "
            f"{reporter.method} reporter reads {reporter.reads!r} (a difference of two residuals)"
        )
    site = Site.parse(reporter.site)
    site.check(model)
    check_compatible(reporter, model, allow_other_model=allow_other_model)
    if "blocks.0.attn.hook_z" not in model.hook_dict:
        raise ValueError("this model has no blocks.L.attn.hook_z, so per-head outputs cannot be computed")
    return site


def check_sizes(*, max_rows: object = None, **sizes: object) -> None:
    """Batch sizes (ints >= 1) and the row limit (an int >= 1, or None for the size measured for the device),
    checked before the first forward (not halfway through)."""
    for name, value in sizes.items():
        check_number(name, value, kind=int, low=1)
    if max_rows is not None:
        check_number("max_rows", max_rows, kind=int, low=1)


def check_ig_steps(ig_steps: object, plain: str) -> None:
    """``ig_steps``: an int >= 1, where 1 is the ``plain`` method (no path integral)."""
    check_number("ig_steps", ig_steps, kind=int)
    if ig_steps < 1:
        raise ValueError(f"ig_steps must be >= 1 (1 = plain {plain}), got {ig_steps}")


def check_names(what: str, names: object) -> list[str]:
    """A list of component (or edge) names; a bare string would otherwise be read character by character."""
    if isinstance(names, str):
        raise TypeError(f"{what} must be a list of names, got the string {names!r}; write [{names!r}]")
    return list(names)


def _tokens(model: TransformerBridge, texts: Texts, what: str) -> Tokens:
    if isinstance(texts, Tokens):
        return texts
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a list of statements, got the string {texts!r}")
    texts = list(texts)
    if not texts:
        raise ValueError(f"no {what} statements given")
    return tokenize(model, texts)


def statement_tokens(model: TransformerBridge, texts: Texts, site: Site) -> Tokens:
    """Tokens of single statements, checked as ``capture`` checks them (non-empty, within ``n_ctx``)."""
    tokens = _tokens(model, texts, "statement")
    _validate(model, tokens, [site], "last")
    return tokens


def pair_tokens(model: TransformerBridge, clean: Texts, corrupt: Texts, site: Site) -> tuple[Tokens, Tokens]:
    """Tokens of the clean statements and their corrupted twins, position-aligned pair by pair.

    Patching replaces a component's output at every position with the twin's output at the same
    position, which only means something when each twin has the same token length (and padding).
    Texts are tokenized together, so both halves share one padded width.
    """
    if isinstance(clean, Tokens) != isinstance(corrupt, Tokens):
        raise TypeError("pass clean and corrupt both as statements or both as Tokens")
    if not isinstance(clean, Tokens):
        if isinstance(clean, str) or isinstance(corrupt, str):
            raise TypeError("clean and corrupt must be lists of statements, not single strings")
        clean, corrupt = list(clean), list(corrupt)
        if len(clean) != len(corrupt):
            raise ValueError(f"{len(clean)} clean statements but {len(corrupt)} corrupted twins; give one twin each")
        if not clean:
            raise ValueError("no contrast pairs given")
        both = tokenize(model, clean + corrupt)
        n = len(clean)
        clean_tok, corrupt_tok = Tokens(both.ids[:n], both.mask[:n]), Tokens(both.ids[n:], both.mask[n:])
    else:
        clean_tok, corrupt_tok = clean, corrupt
        if len(clean_tok) != len(corrupt_tok):
            raise ValueError(f"{len(clean_tok)} clean rows but {len(corrupt_tok)} corrupted twins; give one twin each")
    len_clean, len_corrupt = clean_tok.mask.sum(1), corrupt_tok.mask.sum(1)
    bad = (len_clean != len_corrupt).nonzero().squeeze(1).tolist()
    if bad:
        i = bad[0]
        example = ""
        if isinstance(clean, list):
            example = f" ({clean[i]!r} vs {corrupt[i]!r})"
        raise ValueError(
            f"clean and corrupted statements differ in token length in {len(bad)} pair(s), e.g. pair {i}: "
            f"{int(len_clean[i])} vs {int(len_corrupt[i])} tokens{example}; patching needs twins of equal "
            f"length, position by position (pairs {bad[:10]})"
        )
    if clean_tok.mask.shape != corrupt_tok.mask.shape or not torch.equal(clean_tok.mask, corrupt_tok.mask):
        raise ValueError(
            "clean and corrupted tokens have the same lengths but different padding layouts "
            f"(shapes {tuple(clean_tok.mask.shape)} vs {tuple(corrupt_tok.mask.shape)}); tokenize them together"
        )
    _validate(model, clean_tok, [site], "last")
    return clean_tok, corrupt_tok


def batches(n: int, size: int) -> Iterator[slice]:
    if size < 1:
        raise ValueError(f"batch_size must be >= 1, got {size}")
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))
