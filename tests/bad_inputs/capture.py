"""Bad arguments to capture and capture_contrast: refused before any forward, naming the argument and the choices."""

import torch
from conftest import boot_native

from bad_inputs import Case, Env
from elk_lens.capturing import capture
from elk_lens.contrast import capture_contrast
from elk_lens.data import StatementSet

TEXTS = ["ab", "hello"]
SITE = ["resid_pre.1"]


def _capture(texts=TEXTS, sites=SITE, **kwargs):
    return lambda env: capture(env.model, texts, sites, **kwargs)


def _special_token_outside_embedding(env: Env):
    """A tokenizer with one more (special) token than the model's embedding has rows."""
    model = boot_native(env.tok_dir, d_vocab=len(env.model.tokenizer))
    model.tokenizer.add_special_tokens({"additional_special_tokens": ["<sep>"]})
    return capture(model, ["ab", "hello<sep>"], SITE)


def _dtype_by_name(env: Env):
    return capture(env.model, TEXTS, SITE, dtype="float16"), capture(env.model, TEXTS, SITE, dtype=torch.float16)


def _same_values(result, env: Env) -> None:
    by_name, by_dtype = result
    assert by_name.values.dtype == torch.float16 and torch.equal(by_name.values, by_dtype.values)


def _bfloat16_halves(result, env: Env) -> None:
    assert result.true.values.dtype == result.false.values.dtype == torch.bfloat16


def _cache_dir_is_a_file(env: Env):
    (env.tmp / "cache").write_text("my notes")
    return capture(env.model, TEXTS, SITE, cache_dir=env.tmp / "cache")


def _contrast(statements=None, **kwargs):
    def run(env: Env):
        data = statements if statements is not None else StatementSet(["ab", "cd"], torch.tensor([True, False]))
        return capture_contrast(env.model, data, SITE, **kwargs)

    return run


CASES = [
    Case(
        "capture/bare-string-statements",
        _capture(texts="hello"),
        TypeError,
        r"statements must be a list of statements, got a single str.*wrap it in a list",
        finding=True,
    ),
    Case(
        "capture/non-str-statement", _capture(texts=["ab", 7]), TypeError, r"statements\[1\] must be a str; got int 7"
    ),
    Case("capture/dtype-by-name", _dtype_by_name, check=_same_values, finding=True),
    Case(
        "capture/dtype-unknown-name",
        _capture(dtype="float8"),
        ValueError,
        r"dtype must be a floating torch dtype or its name; got 'float8'; valid: \['bfloat16'",
    ),
    Case(
        "capture/dtype-integer",
        _capture(dtype=torch.int64),
        ValueError,
        r"dtype must be a floating torch dtype.*got torch\.int64",
    ),
    Case(
        "capture/special-token-outside-embedding",
        _special_token_outside_embedding,
        ValueError,
        r"statement 1 has token id 47 \('<sep>'\), outside the model's embedding \(d_vocab=47",
        finding=True,
    ),
    Case("capture/batch-size-float", _capture(batch_size=2.5), TypeError, r"batch_size must be an int; got 2\.5"),
    Case("capture/batch-size-bool", _capture(batch_size=True), TypeError, r"batch_size must be an int; got True"),
    Case("capture/shard-rows-zero", _capture(shard_rows=0), ValueError, r"shard_rows must lie in \[1, inf\); got 0"),
    Case(
        "capture/position-bool",
        _capture(position=True),
        TypeError,
        r"position must be 'last', 'all' or an int; got bool True",
    ),
    Case(
        "capture/position-float",
        _capture(position=1.0),
        TypeError,
        r"position must be 'last', 'all' or an int; got float 1\.0",
    ),
    Case(
        "capture/position-beyond-shortest",
        _capture(position=5),
        ValueError,
        r"position 5 is beyond the sequence.*valid: -3\.\.2, 'last' or 'all'",
    ),
    Case(
        "capture/padding-side",
        _capture(padding_side="center"),
        ValueError,
        r"padding_side must be 'left' or 'right', got 'center'",
    ),
    Case(
        "capture/site-not-a-name",
        _capture(sites=[3]),
        TypeError,
        r"site 3 must be a Site or a name like 'blocks\.L\.hook_KIND' or 'KIND\.L'",
    ),
    Case("capture/sites-none", _capture(sites=None), TypeError, r"sites must be a list of sites.*got NoneType"),
    Case(
        "capture/site-layer-out-of-range",
        _capture(sites=["resid_post.2"]),
        ValueError,
        r"layer 2 is out of range: the model has layers 0\.\.1",
    ),
    Case(
        "capture/site-unknown-kind",
        _capture(sites=["blocks.0.hook_attn_out"]),
        ValueError,
        r"unknown site kind 'attn_out'; valid: \('resid_pre', 'resid_mid', 'resid_post'\)",
    ),
    Case(
        "capture/cache-dir-is-a-file",
        _cache_dir_is_a_file,
        NotADirectoryError,
        r"cache_dir .*cache is a file, not a directory",
    ),
    Case(
        "contrast/bare-string-statements",
        _contrast(statements="hello"),
        TypeError,
        r"statements must be a list of statements, got a single str",
    ),
    Case(
        "contrast/answers-one-string",
        _contrast(answers="TF"),
        TypeError,
        r"answers must be a pair of strings \(true, false\); got str 'TF'",
    ),
    Case("contrast/dtype-by-name", _contrast(dtype="bfloat16", answers=("y", "n")), check=_bfloat16_halves),
]
