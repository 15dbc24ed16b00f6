"""elk-lens: find, test and track what a transformer knows to be true (a TransformerLens 4.x plugin).

>>> import elk_lens as el
>>> model = el.load_model("zoo:quirky-arith")                       # doctest: +SKIP
>>> data = el.quirky_arithmetic(1000, split="test")                  # doctest: +SKIP
>>> acts = el.capture(model, data, el.residual_sites(model))          # doctest: +SKIP
"""

from elk_lens.activations import Activations as Activations
from elk_lens.capture import capture as capture
from elk_lens.data import StatementSet as StatementSet
from elk_lens.data import load_statements as load_statements
from elk_lens.data import quirky_arithmetic as quirky_arithmetic
from elk_lens.lm_output import output_log_odds as output_log_odds
from elk_lens.metrics import auroc as auroc
from elk_lens.models import fingerprint as fingerprint
from elk_lens.models import load_model as load_model
from elk_lens.models import save_model as save_model
from elk_lens.quirky_protocol import quirky_probe_study as quirky_probe_study
from elk_lens.reporters import Reporter as Reporter
from elk_lens.reporters import fit_lda as fit_lda
from elk_lens.reporters import fit_logistic as fit_logistic
from elk_lens.reporters import fit_mean_diff as fit_mean_diff
from elk_lens.sites import Site as Site
from elk_lens.sites import residual_sites as residual_sites

__version__ = "0.1.0"

__all__ = [
    "Activations",
    "Reporter",
    "Site",
    "StatementSet",
    "auroc",
    "capture",
    "fingerprint",
    "fit_lda",
    "fit_logistic",
    "fit_mean_diff",
    "load_model",
    "load_statements",
    "output_log_odds",
    "quirky_arithmetic",
    "quirky_probe_study",
    "residual_sites",
    "save_model",
]
