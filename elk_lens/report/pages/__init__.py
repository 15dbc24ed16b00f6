"""One renderer per analysis: ``render(view) -> Page`` draws the report from the plain data an analysis
returned (``AnalysisResult.view``); ``elk_lens.runner`` looks it up by the analysis's name."""

from collections.abc import Callable

from elk_lens.report.html import Page
from elk_lens.report.pages import quirky_elk

__all__ = ["RENDERERS"]

RENDERERS: dict[str, Callable[[dict], Page]] = {
    "quirky_elk": quirky_elk.render,
}
