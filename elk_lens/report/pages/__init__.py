"""One renderer per analysis: ``render(view) -> Page`` draws the report from the plain data an analysis
returned (``AnalysisResult.view``); ``elk_lens.runner`` looks it up by the analysis's name."""

from collections.abc import Callable

from elk_lens.report.html import Page
from elk_lens.report.pages import circuits, drift, growth, quirky_elk, truth_generalization

__all__ = ["RENDERERS"]

RENDERERS: dict[str, Callable[[dict], Page]] = {
    "circuits": circuits.render,
    "drift": drift.render,
    "growth": growth.render,
    "quirky_elk": quirky_elk.render,
    "truth_generalization": truth_generalization.render,
}
