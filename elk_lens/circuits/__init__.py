"""Circuit scores for a reporter: which components write, and which cause, its truth score.

All scores are plain ``{component name: per-pair tensor}`` dicts over the components upstream of the
reporter's site (``upstream_components``): ``"embed"``, ``"L{l}H{h}"``, ``"L{l}MLP"``.

- ``direct_attribution``: each write at the read position, projected on ``w`` (exact decomposition).
- ``exact_patching``: the oracle, one patched forward per component.
- ``attribution_patching``: its first-order estimate from one backward pass.
- ``edge_attribution_patching`` / ``exact_edge_patching``: the same pair for edges writer -> reader
  (``upstream_edges``), keyed ``"L0H1->L2MLP"``.
- ``faithfulness`` / ``faithfulness_curve`` / ``smallest_circuit``: how much of the clean-vs-corrupt
  gap a set of components keeps when the rest are ablated.
- ``CircuitTrajectory``: what the circuits analysis finds along a trajectory (per checkpoint a
  ``CheckpointCircuit``, the ``NoiseFloor``, the drift series), frozen, with lookups and save/load.
"""

from elk_lens.circuits.attribution import attribution_patching as attribution_patching
from elk_lens.circuits.components import BIASES as BIASES
from elk_lens.circuits.components import upstream_components as upstream_components
from elk_lens.circuits.direct import direct_attribution as direct_attribution
from elk_lens.circuits.edges import edge_attribution_patching as edge_attribution_patching
from elk_lens.circuits.edges import exact_edge_patching as exact_edge_patching
from elk_lens.circuits.edges import upstream_edges as upstream_edges
from elk_lens.circuits.faithfulness import Circuit as Circuit
from elk_lens.circuits.faithfulness import faithfulness as faithfulness
from elk_lens.circuits.faithfulness import faithfulness_curve as faithfulness_curve
from elk_lens.circuits.faithfulness import smallest_circuit as smallest_circuit
from elk_lens.circuits.patching import exact_patching as exact_patching
from elk_lens.circuits.ranking import mean_scores as mean_scores
from elk_lens.circuits.ranking import spearman as spearman
from elk_lens.circuits.result import CheckpointCircuit as CheckpointCircuit
from elk_lens.circuits.result import CircuitTrajectory as CircuitTrajectory
from elk_lens.circuits.result import NoiseFloor as NoiseFloor
from elk_lens.circuits.views import attention_patterns as attention_patterns
from elk_lens.circuits.views import layer_grid as layer_grid
from elk_lens.circuits.views import top_heads as top_heads

__all__ = [
    "BIASES",
    "CheckpointCircuit",
    "Circuit",
    "CircuitTrajectory",
    "NoiseFloor",
    "attention_patterns",
    "attribution_patching",
    "direct_attribution",
    "edge_attribution_patching",
    "exact_edge_patching",
    "exact_patching",
    "faithfulness",
    "faithfulness_curve",
    "layer_grid",
    "mean_scores",
    "smallest_circuit",
    "spearman",
    "top_heads",
    "upstream_components",
    "upstream_edges",
]
