"""Model identity: stable hashes of a model's weights and config, and of its tokenizer.

Kept apart from the loader (:mod:`elk_lens.models`) so that whatever records or checks which model it
ran on (capture caches, studies, :func:`elk_lens.compat.check_compatible`) needs only these hashes,
not the zoo and the formats the loader knows.
"""

import hashlib
import json
import weakref
from collections.abc import Mapping

import torch
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from elk_lens._placement import onloaded

__all__ = ["FINGERPRINT_CFG_FIELDS", "fingerprint", "tokenizer_fingerprint", "weights_fingerprint"]

FINGERPRINT_CFG_FIELDS = (
    "architecture",
    "d_model",
    "n_layers",
    "n_heads",
    "d_head",
    "d_mlp",
    "d_vocab",
    "n_ctx",
    "act_fn",
    "normalization_type",
    "positional_embedding_type",
    # these change the function (or the tokens) with the same weights: boot_native reads them, so
    # save_model must write them and the fingerprint must cover them
    "eps",
    "attn_only",
    "gated_mlp",
    "final_rms",
    "n_key_value_heads",
    "rotary_dim",
    "rotary_base",
    "use_attn_scale",
    "attn_scale",
    "attn_scores_soft_cap",
    "output_logits_soft_cap",
    "attention_dir",
    "d_vocab_out",
    "default_prepend_bos",
)


# model -> (what its weights and config were when hashed, the hash); a model that is freed leaves the cache
_HASHED: "weakref.WeakKeyDictionary[TransformerBridge, tuple[tuple, str]]" = weakref.WeakKeyDictionary()


def _cfg_json(cfg: object) -> str:
    return json.dumps({k: str(getattr(cfg, k, None)) for k in FINGERPRINT_CFG_FIELDS}, sort_keys=True)


def _weights_state(model: TransformerBridge) -> tuple:
    """What identifies each parameter's and buffer's current values without reading them: its memory,
    layout and PyTorch's version counter, which every in-place write through the tensor (an optimizer step,
    ``load_state_dict``, ``p.add_`` under ``no_grad``) increments. (The state dict's tensors are detached
    views of these, sharing their version counters; walking the modules is 5× faster than building it.)"""
    return tuple(
        (t.device.type, t.data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype, t._version)
        for tensors in (model.parameters(), model.buffers())
        for t in tensors
    )


def fingerprint(model: TransformerBridge) -> str:
    """Stable hash of the architecture and every weight: the model half of every cache key.

    Hashed once per set of weights: the hash is kept with the model and reused while no tensor's memory,
    layout or version counter and no fingerprinted config field has changed. Hashing every weight takes
    0.17 s on MiniLM and 0.80 s on SmolLM2-135M, a cached call 0.002 s and 0.016 s
    (benchmarks/fingerprint_bench.py). PyTorch does not count writes made through ``param.data``
    (``p.data.add_(...)``); after such a write, hash afresh with :func:`weights_fingerprint`, or write
    under ``torch.no_grad()`` to the parameter itself, as optimizers and ``load_state_dict`` do.
    """
    key = (_cfg_json(model.cfg), _weights_state(model))
    hashed = _HASHED.get(model)
    if hashed is not None and hashed[0] == key:
        return hashed[1]
    digest = weights_fingerprint(model.cfg, onloaded(model, model.state_dict(keep_vars=True)))
    _HASHED[model] = (key, digest)
    return digest


def weights_fingerprint(cfg: object, state: Mapping[str, Tensor]) -> str:
    """The fingerprint of a config and a state dict; :func:`elk_lens.models.load_model` hashes the weights
    as read from the file, before any dtype conversion, so it equals what ``save_model`` recorded."""
    h = hashlib.sha256()
    h.update(_cfg_json(cfg).encode())
    for name in sorted(state):
        tensor = state[name]  # looked up one at a time: offloaded weights are read here (elk_lens._placement)
        h.update(name.encode())
        h.update(str(tensor.dtype).encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())  # a view: no copy
    return h.hexdigest()[:16]


def _pipeline_state(backend: object) -> tuple:
    """What can change a fast tokenizer's ids, read without serializing the vocabulary: its size (added
    tokens) and each stage around it (normalizer, pre-tokenizer, post-processor with its BOS/EOS template,
    decoder), each serialized on its own — microseconds, against ~0.3 s for the whole tokenizer of SmolLM2."""
    stages = (backend.normalizer, backend.pre_tokenizer, backend.post_processor, backend.decoder)
    return (id(backend), backend.get_vocab_size(with_added_tokens=True)) + tuple(
        None if stage is None else stage.__getstate__() for stage in stages
    )


# tokenizer -> (its pipeline state and special tokens when hashed, the hash); a freed tokenizer leaves the cache
_TOKENIZER_HASHED: "weakref.WeakKeyDictionary[object, tuple[tuple, str]]" = weakref.WeakKeyDictionary()


def tokenizer_fingerprint(model: TransformerBridge) -> str:
    """Stable hash of the tokenizer: vocabulary, merges, normalizer, special tokens and pad id.

    Two models with equal weights and different tokenizers turn the same text into different
    activations, so this is part of every activation cache key. The backend's padding and truncation
    state is left out: tokenizing changes it (``capture.tokenize``), the ids it gives do not depend on it.

    A fast tokenizer is hashed once and the hash kept while its vocabulary size, special tokens and
    pipeline stages are unchanged (:func:`_pipeline_state`); a vocabulary edited in place at the same size
    (replacing ``backend_tokenizer.model``) is not seen — build a new tokenizer instead.
    """
    tok = model.tokenizer
    if tok is None:
        return "none"
    ours = {
        "class": type(tok).__name__,
        "special": tok.special_tokens_map,
        "pad": tok.pad_token_id,
        "bos": tok.bos_token_id,
        "eos": tok.eos_token_id,
    }
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:  # a slow (Python) tokenizer: its vocabulary is what can be read
        return _spec_hash({"vocab": tok.get_vocab()}, ours)
    key = (json.dumps(ours, sort_keys=True, default=str), _pipeline_state(backend))
    hashed = _TOKENIZER_HASHED.get(tok)
    if hashed is not None and hashed[0] == key:
        return hashed[1]
    spec = json.loads(backend.to_str())
    spec.pop("padding", None)
    spec.pop("truncation", None)
    digest = _spec_hash(spec, ours)
    _TOKENIZER_HASHED[tok] = (key, digest)
    return digest


def _spec_hash(spec: dict, ours: dict) -> str:
    return hashlib.sha256(json.dumps({**spec, "elk_lens": ours}, sort_keys=True, default=str).encode()).hexdigest()[:16]
