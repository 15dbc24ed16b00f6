"""What an analysis hands back to the runner, and the table of spec settings each analysis reads.

Every analysis declares its keys as ``{"section.key": Setting(default, kind, check)}``: the type and
the valid values sit beside the default, and :func:`read_settings` checks all of them before any work,
so a bad value is refused with its key, the value and what would be valid, never met thirty seconds
later as a ``KeyError`` deep in a stage.
"""

import json
import math
import re
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from elk_lens.sites import Site

__all__ = [
    "SEED",
    "AnalysisResult",
    "ModelLayout",
    "Setting",
    "at_least",
    "check_prefixes",
    "check_site",
    "in_range",
    "model_card",
    "model_layout",
    "model_spec",
    "one_of",
    "read_settings",
    "some_of",
]


@dataclass
class AnalysisResult:
    """What an analysis hands back: the numbers (``metrics.json``, the CSV ``tables``), the ``provenance``
    that goes into ``manifest.json``, and the ``view`` (plain data, no markup) that the analysis's
    renderer in ``elk_lens.report.pages`` draws the report from."""

    metrics: dict
    tables: dict[str, list[dict]] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    view: dict = field(default_factory=dict)


Check = Callable[[typing.Any], str | None]
"""What is wrong with a value of the right type (``"must be >= 1"``), or None when it is valid."""


@dataclass(frozen=True)
class Setting:
    """One spec key: its default, its type (``int``, ``float``, ``str``, ``list[str]``, or a union such
    as ``str | int``) and the check its values must pass. Floats must be finite (TOML has ``nan``)."""

    default: object
    kind: typing.Any
    check: Check | None = None


def read_settings(cfg: dict, table: dict[str, Setting]) -> dict:
    """Every key of ``table`` from the spec (or its default), type- and range-checked."""
    return {key: _read(cfg, key, setting) for key, setting in table.items()}


def _read(cfg: dict, dotted: str, setting: Setting):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return list(setting.default) if isinstance(setting.default, list) else setting.default
        node = node[part]
    value = _typed(dotted, node, setting.kind)
    problem = setting.check(value) if setting.check else None
    if problem:
        raise ValueError(f"config key {dotted!r} {problem}; got {value!r}")
    return value


def _typed(key: str, value: object, kind: typing.Any) -> object:
    """``value`` as ``kind`` (an int stands for a float), or a ValueError naming the key."""
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        if not isinstance(value, list) or not all(_is(v, item) for v in value):
            raise ValueError(f"config key {key!r} must be a list of {_name(item)}; got {value!r}")
        return value
    if not _is(value, kind):
        raise ValueError(f"config key {key!r} must be of type {_name(kind)}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"config key {key!r} must be finite; got {value!r}")
    return float(value) if kind is float else value


def _is(value: object, kind: typing.Any) -> bool:
    kinds = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    if isinstance(value, bool):  # True is an int to Python, never to a spec
        return bool in kinds
    return any(isinstance(value, k) for k in kinds) or (float in kinds and isinstance(value, int))


def _name(kind: typing.Any) -> str:
    return (
        " or ".join(k.__name__ for k in typing.get_args(kind)) if isinstance(kind, types.UnionType) else kind.__name__
    )


SEED_MAX = 2**32 - 1  # every generator the analyses seed takes this range (and seed + a few offsets)


def at_least(low: int) -> Check:
    return lambda v: None if v >= low else f"must be >= {low}"


def in_range(low: float | None, high: float | None, *, low_open: bool = False, high_open: bool = False) -> Check:
    """``[low, high]``, an end open when asked; ``None`` leaves that side unbounded."""
    lo = "(-inf" if low is None else f"{'(' if low_open else '['}{low}"
    hi = "inf)" if high is None else f"{high}{')' if high_open else ']'}"

    def check(v: float) -> str | None:
        below = low is not None and (v <= low if low_open else v < low)
        above = high is not None and (v >= high if high_open else v > high)
        return f"must lie in {lo}, {hi}" if below or above else None

    return check


SEED = in_range(0, SEED_MAX)


def one_of(choices: Iterable) -> Check:
    """The value is one of ``choices`` (named as given: a tuple, a sorted list)."""
    return lambda v: None if v in choices else f"must be one of {choices!r}"


def some_of(choices: Iterable[str], what: str) -> Check:
    """A non-empty list of distinct names from ``choices``."""

    def check(names: list[str]) -> str | None:
        bad = [n for n in names if n not in choices]
        if bad or not names:
            return f"names unknown or no {what} {bad}; valid: {sorted(choices)}"
        twice = next((n for n in names if names.count(n) > 1), None)
        return f"names {twice!r} twice" if twice is not None else None

    return check


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
