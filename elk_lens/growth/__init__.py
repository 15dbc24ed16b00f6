"""Growth: function-preserving grow operators on native models (HF Llama and GPT-2 through `to_native`;
HF Gemma 3 and GPT-NeoX on their own modules, `elk_lens.growth.hf_modules`), the `GrowthMap` that
transports reporters, and the growth protocol's results (`GrowthResult`)."""

from elk_lens.growth.convert import to_native
from elk_lens.growth.exact_norms import float64_norms
from elk_lens.growth.fit import fit_growth_map
from elk_lens.growth.map import GrowthMap
from elk_lens.growth.operators import (
    add_heads,
    grow,
    grow_d_head,
    insert_blocks,
    stack_blocks,
    widen_d_model,
    widen_mlp,
)
from elk_lens.growth.result import FittedMap, FittedMapResult, GrowthResult, GrowthStep

__all__ = [
    "FittedMap",
    "FittedMapResult",
    "GrowthMap",
    "GrowthResult",
    "GrowthStep",
    "add_heads",
    "fit_growth_map",
    "float64_norms",
    "grow",
    "grow_d_head",
    "insert_blocks",
    "stack_blocks",
    "to_native",
    "widen_d_model",
    "widen_mlp",
]
