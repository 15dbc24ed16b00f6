"""Analyses that ``elk-lens run`` can execute, by the name a spec gives in its ``analysis`` key."""

from elk_lens.analyses import circuits, drift, growth, quirky_elk, truth_generalization

__all__ = ["ANALYSES"]

ANALYSES = {
    "circuits": circuits,
    "drift": drift,
    "growth": growth,
    "quirky_elk": quirky_elk,
    "truth_generalization": truth_generalization,
}
