"""Analyses that ``elk-lens run`` can execute, by the name a spec gives in its ``analysis`` key."""

from elk_lens.analyses import quirky_elk

__all__ = ["ANALYSES"]

ANALYSES = {"quirky_elk": quirky_elk}
