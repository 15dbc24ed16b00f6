"""What an analysis hands back to the runner: the numbers, the provenance and the renderer's view."""

from dataclasses import dataclass, field

__all__ = ["AnalysisResult"]


@dataclass
class AnalysisResult:
    """What an analysis hands back: the numbers (``metrics.json``, the CSV ``tables``), the ``provenance``
    that goes into ``manifest.json``, and the ``view`` (plain data, no markup) that the analysis's
    renderer in ``elk_lens.report.pages`` draws the report from."""

    metrics: dict
    tables: dict[str, list[dict]] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    view: dict = field(default_factory=dict)
