"""What an analysis hands back to the runner."""

from dataclasses import dataclass, field

from elk_lens.report.html import Section

__all__ = ["AnalysisResult", "config_value"]


@dataclass
class AnalysisResult:
    title: str
    intro: str
    sections: list[Section]
    metrics: dict
    tables: dict[str, list[dict]] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)


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
