"""Reporters: methods that locate truth in the residual stream, all reduced to one `Reporter` artifact."""

from elk_lens.reporters.base import Reporter as Reporter
from elk_lens.reporters.logistic import fit_logistic as fit_logistic

__all__ = ["Reporter", "fit_logistic"]
