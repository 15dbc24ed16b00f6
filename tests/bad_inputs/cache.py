"""Faults in the activation cache: every read of a shard is verified, and the key covers the tokenizer."""

import json
import shutil

import torch
from conftest import boot_native
from tokenizers import Tokenizer
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from bad_inputs import Case, Env
from elk_lens.capturing import capture
from elk_lens.models import fingerprint

TEXTS = ["ab", "hello", "cab", "abc", "deed"]
SITES = ["resid_pre.0", "resid_post.1"]


def _cached(env: Env, model=None, texts=TEXTS):
    return capture(model or env.model, texts, SITES, cache_dir=env.tmp / "cache", shard_rows=2)


def _entries(env: Env) -> set:
    return {p for p in (env.tmp / "cache").iterdir() if p.is_dir()}


def _flip_value(path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40  # an exponent bit of the last float32: the file still parses, the value is off by ~1e38
    path.write_bytes(bytes(data))


def _truncate(path) -> None:
    path.write_bytes(path.read_bytes()[:-7])


def _delete(path) -> None:
    path.unlink()


def _damaged(damage, shard: str, read):
    """Capture into the cache, damage one file of the entry, then read the (lazy) result."""

    def run(env: Env):
        acts = _cached(env)
        (entry,) = _entries(env)
        damage(entry / shard)
        return read(acts)

    return run


def _edit_manifest(path) -> None:
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "position": -2}))


def _foreign_shard(env: Env):
    acts = _cached(env)
    (own,) = _entries(env)
    _cached(env, texts=[t[::-1] for t in TEXTS])  # another entry, same shard layout
    (other,) = _entries(env) - {own}
    shutil.copyfile(other / "shard_00001.safetensors", own / "shard_00001.safetensors")
    return acts.values


def _rerun_after_damage(env: Env):
    _damaged(_flip_value, "shard_00001.safetensors", lambda acts: None)(env)
    return _cached(env).values


def _equals_uncached(values, env: Env) -> None:
    assert torch.equal(values, capture(env.model, TEXTS, SITES).values)


def _other_tokenizer_dir(env: Env):
    """The tests' char tokenizer with its characters numbered in reverse (specials unchanged)."""
    tok = AutoTokenizer.from_pretrained(str(env.tok_dir))
    spec = json.loads(tok.backend_tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    chars = sorted((c for c, i in vocab.items() if i > 3), key=vocab.get)
    specials = {c: i for c, i in vocab.items() if i <= 3}
    spec["model"]["vocab"] = {**specials, **{c: 4 + j for j, c in enumerate(chars[::-1])}}
    tok = Tokenizer.from_str(json.dumps(spec))
    kinds = dict(bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")
    PreTrainedTokenizerFast(tokenizer_object=tok, **kinds).save_pretrained(env.tmp / "tok2")
    return env.tmp / "tok2"


def _tokenizer_change(env: Env):
    other = boot_native(_other_tokenizer_dir(env))
    assert fingerprint(other) == fingerprint(env.model)  # equal weights: only the tokenizer differs
    _cached(env)
    return other, _cached(env, model=other).values


def _own_activations(result, env: Env) -> None:
    other, values = result
    assert torch.equal(values, capture(other, TEXTS, SITES).values)
    assert not torch.equal(values, capture(env.model, TEXTS, SITES).values)


CASES = [
    Case(
        "cache/lazy-values-of-damaged-shard",
        _damaged(_flip_value, "shard_00001.safetensors", lambda a: a.values),
        RuntimeError,
        r"shard_00001\.safetensors fails its checksum.*re-run capture",
        finding=True,
    ),
    Case(
        "cache/lazy-at-site-of-damaged-shard",
        _damaged(_flip_value, "shard_00002.safetensors", lambda a: a.at(1)),
        RuntimeError,
        r"shard_00002\.safetensors fails its checksum.*re-run capture",
        finding=True,
    ),
    Case(
        "cache/lazy-read-of-truncated-shard",
        _damaged(_truncate, "shard_00000.safetensors", lambda a: a.values),
        RuntimeError,
        r"shard_00000\.safetensors is unreadable.*re-run capture",
    ),
    Case(
        "cache/shard-deleted-before-read",
        _damaged(_delete, "shard_00001.safetensors", lambda a: a.at(0)),
        RuntimeError,
        r"shard_00001\.safetensors is missing.*re-run capture",
    ),
    Case(
        "cache/manifest-edited",
        _damaged(_edit_manifest, "manifest.json", lambda a: a.values),
        RuntimeError,
        r"manifest\.json does not match this cache entry.*re-run capture",
    ),
    Case(
        "cache/manifest-deleted",
        _damaged(_delete, "manifest.json", lambda a: a.values),
        RuntimeError,
        r"manifest\.json is missing.*re-run capture",
    ),
    Case(
        "cache/shard-of-another-entry",
        _foreign_shard,
        RuntimeError,
        r"shard_00001\.safetensors belongs to another cache entry.*re-run capture",
    ),
    Case("cache/rerun-after-damage-recomputes", _rerun_after_damage, check=_equals_uncached),
    Case("cache/tokenizer-change-misses-cache", _tokenizer_change, check=_own_activations, finding=True),
]
