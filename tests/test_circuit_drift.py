"""Circuit drift measures against hand-computed values, and component names moved through growth."""

import pytest
from transformer_lens.model_bridge import TransformerBridge

from elk_lens.circuit_drift import circuit_series, edit_distance, ewma_change, jaccard, relabel, weighted_jaccard
from elk_lens.growth import add_heads, insert_blocks

EXACT = 1e-12  # sums of a handful of floats


def test_set_measures_by_hand():
    a, b = {"embed", "L0H1", "L1MLP"}, {"L0H1", "L1MLP", "L1H2", "L1H3"}
    assert jaccard(a, b) == pytest.approx(2 / 5, abs=EXACT)
    assert jaccard(set(), set()) == 1.0 and jaccard(a, set()) == 0.0
    assert edit_distance(a, b) == 3 and edit_distance(a, a) == 0


def test_weighted_jaccard_by_hand_and_sign_blind():
    a, b = {"x": 2.0, "y": -1.0}, {"x": 1.0, "z": 3.0}
    assert weighted_jaccard(a, b) == pytest.approx(1 / (2 + 1 + 3), abs=EXACT)  # min: x 1; max: x 2, y 1, z 3
    assert weighted_jaccard(a, {k: -v for k, v in a.items()}) == pytest.approx(1.0, abs=EXACT)
    assert weighted_jaccard({}, {}) == 1.0


def test_ewma_recursion():
    out = ewma_change([1.0, 0.5, 0.5], alpha=0.5)
    assert out == pytest.approx([0.0, 0.25, 0.375], abs=EXACT)  # 0.5*0.5 + 0.5*0.25 = 0.375
    with pytest.raises(ValueError, match="alpha must lie in"):
        ewma_change([1.0], alpha=0)


def test_series_consecutive_and_against_the_first():
    circuits = [{"a", "b"}, {"a", "b"}, {"a", "c"}]
    scores = [{"a": 1.0, "b": 1.0, "zzz": 9.0}, {"a": 1.0, "b": 0.5}, {"a": 1.0, "c": 1.0}]
    out = circuit_series(circuits, scores)
    assert out["size"] == [2, 2, 2]
    assert out["jaccard_prev"] == pytest.approx([1.0, 1.0, 1 / 3], abs=EXACT)
    assert out["jaccard_first"] == pytest.approx([1.0, 1.0, 1 / 3], abs=EXACT)
    # out-of-circuit scores (zzz) are ignored; step 1 vs 0: (1 + 0.5) / (1 + 1)
    assert out["weighted_jaccard_prev"] == pytest.approx([1.0, 0.75, 1 / 2.5], abs=EXACT)
    assert out["edit_distance_first"] == [0, 0, 2]
    with pytest.raises(ValueError, match="one score table per circuit"):
        circuit_series(circuits, scores[:2])


def test_names_move_through_growth_maps():
    cfg = dict(d_model=32, d_head=8, n_heads=4, n_layers=2, n_ctx=8, d_vocab=20, d_mlp=64, act_fn="gelu")
    model = TransformerBridge.boot_native(cfg).eval()
    deeper, growth = insert_blocks(model, [1])
    assert relabel({"embed", "L0H3", "L1H0", "L1MLP"}, growth) == {"embed", "L0H3", "L2H0", "L2MLP"}
    _, more_heads = add_heads(deeper, 6)
    assert relabel({"L1H1": 0.5}, growth.then(more_heads)) == {"L2H1": 0.5}
    with pytest.raises(ValueError, match="L5MLP: the source model has layers 0..1"):
        relabel({"L5MLP"}, growth)
    with pytest.raises(ValueError, match="unknown component 'head7'"):
        relabel({"head7"}, growth)
