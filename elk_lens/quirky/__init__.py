"""The quirky-models protocol (Mallen et al., arXiv 2312.01037; ``docs/methods/elk_methods.md`` §6) in
one package: Alice labels quirky arithmetic truthfully, Bob by a sloppy sum, and a reporter trained where
labels are trusted must read the truth where the model's output follows Bob.

- ``data``: the statement generator (splits with disjoint operand pairs, difficulty, controls);
- ``cities`` and ``nl_arithmetic``: quirky sets a real pretrained LM can read (Mallen et al.'s hemisphere,
  population and natural-language addition tasks), laid out by ``paired`` like ``data``'s; ``tasks``
  names them all, with each one's answer pair, control subset and candidate features;
- ``subsets``: the named subsets (``AE``, ``BH_disagree``, ...), one set of names for everything below;
- ``probe_study`` and ``sweep``: the layer sweep of a logistic probe beside the model's own answer;
- ``floor``: each site's probe beside random directions at the same site, on the same rows;
- ``scores`` and ``tables``: every method's reporters and what derives from them (AUROC by site, EIL,
  PGR, anomaly detection, found features); ``anomaly``, ``rigor``, ``position_sweep``;
- ``twins``: sum-vs-sloppy statement pairs for circuits; ``recipe`` and ``card``: how the packaged
  ``zoo:quirky-arith*`` models were trained and measured.

``elk_lens.transfer`` (EIL, PGR) stays outside: the truth-dataset generalization study uses it too.
"""

from elk_lens.quirky.anomaly import GaussianDetector as GaussianDetector
from elk_lens.quirky.anomaly import anomaly_auroc as anomaly_auroc
from elk_lens.quirky.cities import quirky_cities as quirky_cities
from elk_lens.quirky.data import CHARACTERS as CHARACTERS
from elk_lens.quirky.data import quirky_arithmetic as quirky_arithmetic
from elk_lens.quirky.nl_arithmetic import quirky_nl_arithmetic as quirky_nl_arithmetic
from elk_lens.quirky.paired import ANSWERS as ANSWERS
from elk_lens.quirky.position_sweep import position_sweep as position_sweep
from elk_lens.quirky.probe_study import QuirkyStudy as QuirkyStudy
from elk_lens.quirky.probe_study import quirky_probe_study as quirky_probe_study
from elk_lens.quirky.probe_study import split_layers as split_layers
from elk_lens.quirky.rigor import distractor_table as distractor_table
from elk_lens.quirky.rigor import seed_stability as seed_stability
from elk_lens.quirky.scores import QuirkyScores as QuirkyScores
from elk_lens.quirky.scores import quirky_reporter_scores as quirky_reporter_scores
from elk_lens.quirky.subsets import SUBSETS as SUBSETS
from elk_lens.quirky.subsets import TARGET as TARGET
from elk_lens.quirky.subsets import subset_mask as subset_mask
from elk_lens.quirky.tasks import TASKS as TASKS
from elk_lens.quirky.tasks import QuirkyTask as QuirkyTask
from elk_lens.quirky.tasks import quirky_task as quirky_task
from elk_lens.quirky.twins import sum_vs_sloppy_pairs as sum_vs_sloppy_pairs

__all__ = [
    "ANSWERS",
    "CHARACTERS",
    "SUBSETS",
    "TARGET",
    "TASKS",
    "GaussianDetector",
    "QuirkyScores",
    "QuirkyStudy",
    "QuirkyTask",
    "anomaly_auroc",
    "distractor_table",
    "position_sweep",
    "quirky_arithmetic",
    "quirky_cities",
    "quirky_nl_arithmetic",
    "quirky_probe_study",
    "quirky_reporter_scores",
    "quirky_task",
    "seed_stability",
    "split_layers",
    "subset_mask",
    "sum_vs_sloppy_pairs",
]
