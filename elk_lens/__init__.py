"""elk-lens: find, test and track what a transformer knows to be true (a TransformerLens 4.x plugin).

>>> import elk_lens as el
>>> model = el.load_model("zoo:quirky-arith")                       # doctest: +SKIP
>>> data = el.quirky_arithmetic(1000, split="test")                  # doctest: +SKIP
>>> acts = el.capture(model, data, el.residual_sites(model))          # doctest: +SKIP
>>> probe = el.fit_logistic(acts.at(3), data.truth, site="blocks.3.hook_resid_pre")  # doctest: +SKIP
"""

from elk_lens import quirky as quirky
from elk_lens._atomic import atomic_write_bytes as atomic_write_bytes
from elk_lens._atomic import atomic_write_text as atomic_write_text
from elk_lens._checks import check_number as check_number
from elk_lens._hooks import loud_hooks as loud_hooks
from elk_lens.activations import Activations as Activations
from elk_lens.capture import capture as capture
from elk_lens.capture import content_position as content_position
from elk_lens.compat import check_compatible as check_compatible
from elk_lens.contrast import capture_contrast as capture_contrast
from elk_lens.data import StatementSet as StatementSet
from elk_lens.data import load_statements as load_statements
from elk_lens.data import truth_set as truth_set
from elk_lens.data import truth_sets as truth_sets
from elk_lens.data import with_splits as with_splits
from elk_lens.drift_result import DriftResult as DriftResult
from elk_lens.drift_study import trajectory_drift as trajectory_drift
from elk_lens.erasure import fit_leace as fit_leace
from elk_lens.generalization import generalization_study as generalization_study
from elk_lens.generalization import random_floor as random_floor
from elk_lens.growth import GrowthMap as GrowthMap
from elk_lens.growth import fit_growth_map as fit_growth_map
from elk_lens.growth import grow as grow
from elk_lens.interventions import erase as erase
from elk_lens.interventions import reflect as reflect
from elk_lens.interventions import steer as steer
from elk_lens.lm_output import output_log_odds as output_log_odds
from elk_lens.metrics import auroc as auroc
from elk_lens.models import fingerprint as fingerprint
from elk_lens.models import load_model as load_model
from elk_lens.models import save_model as save_model
from elk_lens.prompts import chat_prompt as chat_prompt
from elk_lens.prompts import few_shot_prompt as few_shot_prompt
from elk_lens.prompts import prompted_log_odds as prompted_log_odds
from elk_lens.prompts import zero_shot_prompt as zero_shot_prompt
from elk_lens.quirky import quirky_arithmetic as quirky_arithmetic
from elk_lens.reporters import Reporter as Reporter
from elk_lens.reporters import fit_ccs as fit_ccs
from elk_lens.reporters import fit_crc as fit_crc
from elk_lens.reporters import fit_lda as fit_lda
from elk_lens.reporters import fit_logistic as fit_logistic
from elk_lens.reporters import fit_mean_diff as fit_mean_diff
from elk_lens.reporters import fit_ttpd as fit_ttpd
from elk_lens.reporters import fit_vinc as fit_vinc
from elk_lens.reporters.registry import fit_method as fit_method
from elk_lens.sites import Site as Site
from elk_lens.sites import residual_sites as residual_sites
from elk_lens.token_stream import TokenStream as TokenStream
from elk_lens.token_stream import stream_loss as stream_loss
from elk_lens.train import FineTuneConfig as FineTuneConfig
from elk_lens.train import anchor_to as anchor_to
from elk_lens.train import fine_tune as fine_tune
from elk_lens.trajectory import Trajectory as Trajectory

__version__ = "0.1.0"

__all__ = [
    "Activations",
    "DriftResult",
    "FineTuneConfig",
    "GrowthMap",
    "Reporter",
    "Site",
    "StatementSet",
    "TokenStream",
    "Trajectory",
    "anchor_to",
    "atomic_write_bytes",
    "atomic_write_text",
    "auroc",
    "capture",
    "capture_contrast",
    "chat_prompt",
    "check_compatible",
    "check_number",
    "content_position",
    "erase",
    "few_shot_prompt",
    "fine_tune",
    "fingerprint",
    "fit_ccs",
    "fit_crc",
    "fit_growth_map",
    "fit_lda",
    "fit_leace",
    "fit_logistic",
    "fit_mean_diff",
    "fit_method",
    "fit_ttpd",
    "fit_vinc",
    "generalization_study",
    "grow",
    "load_model",
    "load_statements",
    "loud_hooks",
    "output_log_odds",
    "prompted_log_odds",
    "quirky",
    "quirky_arithmetic",
    "random_floor",
    "reflect",
    "residual_sites",
    "save_model",
    "steer",
    "stream_loss",
    "trajectory_drift",
    "truth_set",
    "truth_sets",
    "with_splits",
    "zero_shot_prompt",
]
