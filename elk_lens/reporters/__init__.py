"""Reporters: methods that locate truth in the residual stream, all reduced to one `Reporter` artifact."""

from elk_lens.reporters.base import Reporter as Reporter
from elk_lens.reporters.ccs import fit_ccs as fit_ccs
from elk_lens.reporters.crc import fit_crc as fit_crc
from elk_lens.reporters.logistic import fit_logistic as fit_logistic
from elk_lens.reporters.mass_mean import fit_lda as fit_lda
from elk_lens.reporters.mass_mean import fit_mean_diff as fit_mean_diff
from elk_lens.reporters.random_baseline import random_direction_baseline as random_direction_baseline
from elk_lens.reporters.ttpd import fit_ttpd as fit_ttpd
from elk_lens.reporters.vinc import fit_vinc as fit_vinc

__all__ = [
    "Reporter",
    "fit_ccs",
    "fit_crc",
    "fit_lda",
    "fit_logistic",
    "fit_mean_diff",
    "fit_ttpd",
    "fit_vinc",
    "random_direction_baseline",
]
