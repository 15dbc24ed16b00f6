"""Analysis specs: frozen dataclasses read from a TOML spec, checked in one place before any work.

An analysis declares its spec as nested frozen dataclasses, one per TOML table: a field's annotation is
its type, its default is the default, and :func:`setting` attaches the check its values must pass. A
nested dataclass is a sub-table (``[train]``); a field marked ``flatten=True`` reads its keys from the
parent's table, so a library config such as ``FineTuneConfig`` is reused as it is (its own checks run
when it is built) and the spec ``[train] steps = 600 lr = 1e-3 rows = 10000`` stays one table.
:func:`parse_spec` refuses unknown keys (suggesting the closest valid one), wrong types, non-finite
floats and values that fail a check, naming the dotted key, the value and what would be valid, so a typo
never falls back to a default silently and a bad value is never met thirty seconds later in a stage.

Lists in TOML become tuples (specs are frozen and hashable). ``docs/guide/analyses.md`` shows how an
analysis declares one.
"""

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Iterable

__all__ = [
    "SEED",
    "AnalysisSpec",
    "Check",
    "at_least",
    "in_range",
    "one_of",
    "parse_spec",
    "setting",
    "some_of",
    "spec_dict",
    "spec_keys",
]

Check = Callable[[typing.Any], str | None]
"""What is wrong with a value of the right type (``"must be >= 1"``), or None when it is valid."""

_RESERVED = ("analysis",)  # the runner reads it to choose the spec's class


@dataclasses.dataclass(frozen=True, kw_only=True)
class AnalysisSpec:
    """What every analysis spec holds: the run's ``name`` (its directory under the runs directory,
    checked by ``elk_lens.runner.check_run_name``). An analysis's spec subclasses it with its tables,
    each a frozen dataclass (``kw_only`` so that tables with defaults may follow the required name)."""

    name: str


def setting(default: object = dataclasses.MISSING, check: Check | None = None, *, flatten: bool = False):
    """A spec field: its default, the ``check`` its values must pass, and (for a nested dataclass)
    whether its keys sit in the parent's table (``flatten``)."""
    return dataclasses.field(default=default, metadata={"check": check, "flatten": flatten})


def spec_keys(cls: type) -> tuple[str, ...]:
    """Every dotted key a spec of ``cls`` reads (``"train.steps"``), in declaration order."""
    out: list[str] = []
    for f, kind in _fields(cls):
        if dataclasses.is_dataclass(kind):
            sub = spec_keys(kind)
            out += sub if f.metadata.get("flatten") else [f"{f.name}.{k}" for k in sub]
        else:
            out.append(f.name)
    return tuple(out)


def spec_dict(spec: object) -> dict:
    """A spec as plain JSON data (tuples as lists), dotted keys to values: for the manifest and the report."""
    out = {}
    for f, kind in _fields(type(spec)):
        value = getattr(spec, f.name)
        if dataclasses.is_dataclass(kind):
            sub = spec_dict(value)
            out |= sub if f.metadata.get("flatten") else {f"{f.name}.{k}": v for k, v in sub.items()}
        else:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def parse_spec(cls: type, cfg: dict, *, where: str = "spec"):
    """``cls`` built from the parsed TOML ``cfg`` (its top-level ``analysis`` key aside).

    Raises ValueError naming ``where`` (the file), the dotted key, the value and the valid choices.
    """
    if not isinstance(cfg, dict):
        raise TypeError(f"{where}: a spec is a TOML table; got {type(cfg).__name__}")
    valid = spec_keys(cls)
    unknown = [k for k in _dotted(cfg) if k not in _RESERVED and k not in valid]
    if unknown:
        hints = {k: difflib.get_close_matches(k, valid, n=1) for k in unknown}
        said = ", ".join(f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in hints.items())
        raise ValueError(f"{where}: unknown config key(s) {said}; valid: {sorted(valid)}")
    return _build(cls, {k: v for k, v in cfg.items() if k not in _RESERVED}, "", None, where)


def _fields(cls: type) -> list[tuple[dataclasses.Field, typing.Any]]:
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.init]


def _dotted(node: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in node.items():
        name = f"{prefix}{key}"
        if "." in key:  # a quoted key such as "model.spec" = ...: no analysis would read it
            raise ValueError(
                f"key {name!r} is written as one quoted key; write it as a table and a key, e.g. "
                f"[{name.rsplit('.', 1)[0]}] {name.rsplit('.', 1)[1]} = ..."
            )
        out += _dotted(value, f"{name}.") if isinstance(value, dict) else [name]
    return out


def _build(cls: type, table: dict, prefix: str, base: object | None, where: str):
    """``cls`` from ``table`` (keys under ``prefix``), unset fields taken from ``base`` or the defaults."""
    values = {}
    for f, kind in _fields(cls):
        key = f"{prefix}{f.name}"
        default = getattr(base, f.name) if base is not None else _default(f)
        if dataclasses.is_dataclass(kind):
            flat = f.metadata.get("flatten", False)
            if flat:
                sub = {k: v for k, v in table.items() if k in {g.name for g, _ in _fields(kind)}}
            else:
                sub = table.get(f.name, {})  # a table: parse_spec refused a scalar in its place as unknown
            start = None if default is dataclasses.MISSING else default
            values[f.name] = _build(kind, sub, prefix if flat else f"{key}.", start, where)
        elif f.name in table:
            values[f.name] = _value(key, table[f.name], kind, f.metadata.get("check"), where)
        elif default is dataclasses.MISSING:
            raise ValueError(f"{where}: config key {key!r} is required")
        else:
            values[f.name] = default
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:  # the config's own checks (e.g. FineTuneConfig.__post_init__)
        said = str(e)
        for f, _ in _fields(cls):  # "FineTuneConfig.steps must be ..." names the spec's key instead
            said = said.replace(f"{cls.__name__}.{f.name}", f"config key {prefix + f.name!r}")
        raise ValueError(f"{where}: {said}") from None


def _default(f: dataclasses.Field) -> object:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _value(key: str, value: object, kind: typing.Any, check: Check | None, where: str) -> object:
    """``value`` as ``kind`` (a TOML list as a tuple, an int standing for a float), checked; a refusal
    quotes the value as the spec wrote it."""
    typed = _typed(key, value, kind, where)
    problem = check(typed) if check else None
    if problem:
        raise ValueError(f"{where}: config key {key!r} {problem}; got {value!r}")
    return typed


def _typed(key: str, value: object, kind: typing.Any, where: str) -> object:
    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType) and type(None) in args:  # X | None: TOML has no null, so it is an X
        (kind,) = [a for a in args if a is not type(None)]
        args = typing.get_args(kind)
    if typing.get_origin(kind) is tuple:
        listed = value if isinstance(value, list) else []
        items = args[:1] * len(listed) if args[1:] == (Ellipsis,) else args
        if listed is not value or len(items) != len(value) or not all(map(_is, value, items)):
            shape = f"list of {_name(args[0])}" if args[1:] == (Ellipsis,) else f"list of {len(args)} items"
            raise ValueError(f"{where}: config key {key!r} must be a {shape}; got {value!r}")
        if any(isinstance(v, float) and not math.isfinite(v) for v in value):
            raise ValueError(f"{where}: config key {key!r} must hold finite numbers; got {value!r}")
        return tuple(float(v) if k is float else v for v, k in zip(value, items, strict=True))
    if not _is(value, kind):
        raise ValueError(f"{where}: config key {key!r} must be of type {_name(kind)}; got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: config key {key!r} must be finite; got {value!r}")
    return float(value) if kind is float else value


def _is(value: object, kind: typing.Any) -> bool:
    kinds = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    if isinstance(value, bool):  # True is an int to Python, never to a spec
        return bool in kinds
    return any(isinstance(value, k) for k in kinds) or (float in kinds and isinstance(value, int))


def _name(kind: typing.Any) -> str:
    kinds = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


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

    def check(names: tuple[str, ...]) -> str | None:
        bad = [n for n in names if n not in choices]
        if bad or not names:
            return f"names unknown or no {what} {bad}; valid: {sorted(choices)}"
        twice = next((n for n in names if names.count(n) > 1), None)
        return f"names {twice!r} twice" if twice is not None else None

    return check
