"""Views of component scores: names parse, the layer × head grid places every score, patterns are the
heads' own rows of hook_pattern."""

import math

import pytest
import torch

from elk_lens.circuits import attention_patterns, layer_grid, top_heads
from elk_lens.circuits.components import Component


def test_names_parse_and_unknown_ones_are_refused():
    assert (Component.from_name("L2H3").layer, Component.from_name("L2H3").head) == (2, 3)
    assert Component.from_name("L1MLP").head is None and Component.from_name("embed").is_embed
    with pytest.raises(ValueError, match="unknown component 'head7'"):
        Component.from_name("head7")


def test_grid_and_top_heads():
    scores = {"embed": 1.0, "L0H0": -3.0, "L0H1": 0.5, "L0MLP": 2.0, "L1H1": 4.0, "biases": 9.0}
    values, rows, cols = layer_grid(scores)
    assert rows == ["embed", "L0", "L1"] and cols == ["H0", "H1", "MLP"]
    assert values[1] == [-3.0, 0.5, 2.0] and values[0][0] == 1.0
    assert math.isnan(values[2][0]) and values[2][1] == 4.0 and math.isnan(values[2][2])
    assert top_heads(scores, 2) == ["L1H1", "L0H0"]


def test_attention_patterns_are_the_heads_rows(native_model):
    patterns, tokens = attention_patterns(native_model, "1 plus 2", ["L1H2", "L0H0"])
    assert patterns.shape == (2, len(tokens), len(tokens))
    torch.testing.assert_close(patterns.sum(-1), torch.ones(2, len(tokens)))  # softmax rows
    assert float(patterns[0].triu(1).abs().max()) == 0.0  # causal
    with pytest.raises(ValueError, match="heads only"):
        attention_patterns(native_model, "1 plus 2", ["L0MLP"])
