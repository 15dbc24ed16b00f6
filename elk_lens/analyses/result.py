"""What an analysis hands back to the runner."""

from dataclasses import dataclass, field
from pathlib import Path

from elk_lens.report.html import Section

__all__ = ["AnalysisResult", "check_model_spec", "config_value", "model_card"]


@dataclass
class AnalysisResult:
    title: str
    intro: str
    sections: list[Section]
    metrics: dict
    tables: dict[str, list[dict]] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)


def check_model_spec(key: str, spec: str) -> None:
    """Refuse a ``zoo:`` name that does not exist, or a local path that is missing, before any work."""
    from elk_lens.zoo import zoo_names

    if spec.startswith("zoo:") and spec.removeprefix("zoo:") not in zoo_names():
        raise ValueError(f"config key {key!r}: unknown zoo model {spec!r}; valid: {['zoo:' + n for n in zoo_names()]}")
    if spec.startswith(("/", "./", "../", "~")) and not Path(spec).expanduser().is_dir():
        raise ValueError(f"config key {key!r}: model directory {spec!r} does not exist")


def model_card(spec: str) -> dict:
    """The zoo card of a ``zoo:`` model (what it is, how it was trained or packaged); ``{}`` for others."""
    from elk_lens.zoo import zoo_card

    return zoo_card(spec.removeprefix("zoo:")) if spec.startswith("zoo:") else {}


def config_value(cfg: dict, dotted: str, default, kind: type):
    """``cfg["a"]["b"]`` for ``"a.b"``, type-checked, with a default; errors name the key."""
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    if kind is float and isinstance(node, int):
        node = float(node)
    if not isinstance(node, kind) or (kind is int and isinstance(node, bool)):
        raise ValueError(f"config key {dotted!r} must be of type {kind.__name__}, got {node!r}")
    return node
