"""Spec checks that read a model's files without loading it: the model named exists, a site lies within
its layers, parameter-name prefixes match its parameters."""

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from elk_lens.sites import Site

__all__ = ["ModelLayout", "check_prefixes", "check_site", "model_card", "model_layout", "model_spec"]


def model_spec(spec: str) -> str | None:
    """A ``zoo:`` name that exists (with its package installed), an existing local directory or ``*.gguf``
    file, or a hub name."""
    from elk_lens.zoo import PACKAGED, packaged_path, zoo_names
    from elk_lens.zoo.gguf import GGUF_MODELS, gguf_file

    if not spec.strip():
        return "must name a model ('zoo:NAME', a local directory or a hub name)"
    if spec.startswith("zoo:"):
        name = spec.removeprefix("zoo:")
        if name not in zoo_names():
            return f"is an unknown zoo model {spec!r}; valid: {['zoo:' + n for n in zoo_names()]}"
        if name in PACKAGED:
            try:
                packaged_path(name)
            except ValueError as e:
                return f"cannot be loaded: {e}"
        if name in GGUF_MODELS:
            try:
                gguf_file(name)
            except ValueError as e:
                return f"cannot be loaded: {e}"
    if spec.endswith(".gguf") and _local(spec).is_file():
        return None
    if spec.startswith(("/", "./", "../", "~")) and not _local(spec).is_dir():
        return f"is not a model: model directory {spec!r} does not exist"
    return None


def _local(spec: str) -> Path:
    """The directory a local spec names (``~user`` of an unknown user stays as written)."""
    try:
        return Path(spec).expanduser()
    except RuntimeError:
        return Path(spec)


def model_card(spec: str) -> dict:
    """The zoo card of a ``zoo:`` model (what it is, how it was trained or packaged); ``{}`` for others."""
    from elk_lens.zoo import zoo_card

    return zoo_card(spec.removeprefix("zoo:")) if spec.startswith("zoo:") else {}


@dataclass(frozen=True)
class ModelLayout:
    """What a spec's checks need to know of a model, read from its files without loading it."""

    spec: str
    n_layers: int
    n_heads: int
    d_model: int
    d_mlp: int
    d_head: int
    params: tuple[str, ...]  # TransformerLens parameter names; empty where the files name them otherwise


def model_layout(spec: str) -> ModelLayout | None:
    """The layout of a native (elk-lens format) model: a ``zoo:`` model or a saved directory. None for
    HF models and hub names, and for files that cannot be read (loading the model reports those)."""
    from safetensors import SafetensorError, safe_open

    from elk_lens.models import NATIVE_CONFIG_FILE, WEIGHTS_FILE
    from elk_lens.zoo import PACKAGED, ZOO_DIR

    name = spec.removeprefix("zoo:")
    path = (ZOO_DIR / name) if spec.startswith("zoo:") and name not in PACKAGED else _local(spec)
    try:
        cfg = json.loads((path / NATIVE_CONFIG_FILE).read_text())["config"]
        with safe_open(str(path / WEIGHTS_FILE), "pt") as f:
            params = tuple(sorted(f.keys()))
        sizes = [int(cfg[k]) for k in ("n_layers", "n_heads", "d_model", "d_mlp", "d_head")]
    except (OSError, ValueError, KeyError, TypeError, SafetensorError):
        return None
    return ModelLayout(spec, *sizes, params)


def check_site(key: str, value: str, layout: ModelLayout | None) -> Site:
    """A residual site written ``blocks.L.hook_KIND`` (or ``KIND.L``), within the model's layers."""
    try:
        site = Site.parse(value)
    except ValueError as e:
        raise ValueError(f"config key {key!r}: {e}") from None
    if layout is not None and site.layer >= layout.n_layers:
        raise ValueError(
            f"config key {key!r}: {value!r} reads layer {site.layer}, but {layout.spec} has layers "
            f"0..{layout.n_layers - 1}"
        )
    return site


def check_prefixes(key: str, prefixes: list[str], layout: ModelLayout | None, params: Iterable[str] = ()) -> None:
    """Parameter-name prefixes (e.g. frozen parameters) that each match a parameter of the model
    (``params``, or the layout's own)."""
    params = list(params) or list(layout.params if layout else ())
    unknown = [p for p in prefixes if not p or not any(n.startswith(p) for n in params)]
    if params and unknown:
        sample = sorted({re.sub(r"^(blocks\.\d+\.|[^.]+\.).*", r"\1", n) for n in params})
        model = layout.spec if layout else "the model"
        raise ValueError(
            f"config key {key!r}: prefixes {unknown} match no parameter of {model}; parameters start with {sample}"
        )
