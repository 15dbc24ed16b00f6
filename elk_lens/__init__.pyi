"""The public API, imported lazily (elk_lens/__init__.py): type checkers and the docs read this stub."""

from . import quirky as quirky
from ._atomic import atomic_write_bytes as atomic_write_bytes
from ._atomic import atomic_write_text as atomic_write_text
from ._checks import check_number as check_number
from ._hooks import loud_hooks as loud_hooks
from .activations import Activations as Activations
from .capturing import capture as capture
from .capturing import content_position as content_position
from .compat import check_compatible as check_compatible
from .contrast import capture_contrast as capture_contrast
from .data import StatementSet as StatementSet
from .data import load_statements as load_statements
from .data import truth_set as truth_set
from .data import truth_sets as truth_sets
from .data import with_splits as with_splits
from .drift_result import DriftResult as DriftResult
from .drift_study import trajectory_drift as trajectory_drift
from .erasure import fit_leace as fit_leace
from .generalization import generalization_study as generalization_study
from .generalization import random_floor as random_floor
from .growth import GrowthMap as GrowthMap
from .growth import fit_growth_map as fit_growth_map
from .growth import grow as grow
from .interventions import erase as erase
from .interventions import reflect as reflect
from .interventions import steer as steer
from .lm_output import output_log_odds as output_log_odds
from .metrics import auroc as auroc
from .models import fingerprint as fingerprint
from .models import load_model as load_model
from .models import save_model as save_model
from .prompts import chat_prompt as chat_prompt
from .prompts import few_shot_prompt as few_shot_prompt
from .prompts import prompted_log_odds as prompted_log_odds
from .prompts import zero_shot_prompt as zero_shot_prompt
from .quirky import quirky_arithmetic as quirky_arithmetic
from .reporters import Reporter as Reporter
from .reporters import fit_ccs as fit_ccs
from .reporters import fit_crc as fit_crc
from .reporters import fit_lda as fit_lda
from .reporters import fit_logistic as fit_logistic
from .reporters import fit_mean_diff as fit_mean_diff
from .reporters import fit_ttpd as fit_ttpd
from .reporters import fit_vinc as fit_vinc
from .reporters.registry import fit_method as fit_method
from .sites import Site as Site
from .sites import residual_sites as residual_sites
from .token_stream import TokenStream as TokenStream
from .token_stream import stream_loss as stream_loss
from .train import FineTuneConfig as FineTuneConfig
from .train import anchor_to as anchor_to
from .train import fine_tune as fine_tune
from .trajectory import Trajectory as Trajectory

__version__: str

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
