"""Bad inputs to the circuit scores: component names, pair lists, sizes, targets and ablations.

Each is refused before the first forward pass, naming the argument, the value and the valid choices.
"""

import torch

from bad_inputs import Case, Env
from elk_lens.circuits import (
    attention_patterns,
    attribution_patching,
    direct_attribution,
    edge_attribution_patching,
    exact_patching,
    faithfulness,
    faithfulness_curve,
    layer_grid,
    smallest_circuit,
    spearman,
    top_heads,
)
from elk_lens.models import fingerprint
from elk_lens.quirky.twins import sum_vs_sloppy_pairs
from elk_lens.reporters import Reporter

SITE = "blocks.1.hook_resid_pre"
CLEAN = ["abc def", "one two", "is it?"]
CORRUPT = ["abd def", "one six", "is at?"]


def _reporter(env: Env) -> Reporter:
    w = torch.linspace(-1, 1, env.model.cfg.d_model, dtype=torch.float64)
    return Reporter(w, 0.0, w.clone(), "logistic", SITE, {"model": fingerprint(env.model)})


def _grid_without_heads(result, env: Env) -> None:
    rows, row_labels, columns = result
    assert row_labels == ["embed", "L0"] and columns == ["MLP"], (row_labels, columns)
    assert rows[0] == [1.0] and rows[1] == [2.0], rows


CASES = [
    Case(
        "circuits/unknown-component",
        lambda env: exact_patching(env.model, _reporter(env), CLEAN, CORRUPT, components=["L0H9"]),
        ValueError,
        r"unknown component\(s\) \['L0H9'\] for site blocks\.1\.hook_resid_pre; valid: \['embed', 'L0H0'",
    ),
    Case(
        "circuits/components-bare-string",
        lambda env: direct_attribution(env.model, _reporter(env), CLEAN, components="L0MLP"),
        TypeError,
        r"components must be a list of names, got the string 'L0MLP'; write \['L0MLP'\]",
    ),
    Case(
        "circuits/faithfulness-circuit-bare-string",
        lambda env: faithfulness(env.model, _reporter(env), CLEAN, CORRUPT, "L0H1"),
        TypeError,
        r"circuit must be a list of names, got the string 'L0H1'; write \['L0H1'\]",
    ),
    Case(
        "circuits/curve-order-bare-string",
        lambda env: faithfulness_curve(env.model, _reporter(env), CLEAN, CORRUPT, "embed"),
        TypeError,
        r"order must be a list of names, got the string 'embed'",
    ),
    Case(
        "circuits/mismatched-pair-lengths",
        lambda env: exact_patching(env.model, _reporter(env), CLEAN, CORRUPT[:2]),
        ValueError,
        r"3 clean statements but 2 corrupted twins; give one twin each",
    ),
    Case(
        "circuits/target-zero",
        lambda env: smallest_circuit({"embed": 1.0}, env.model, _reporter(env), CLEAN, CORRUPT, target=0),
        ValueError,
        r"target must be in \(0, 1\], got 0",
    ),
    Case(
        "circuits/target-as-percent",
        lambda env: smallest_circuit({"embed": 1.0}, env.model, _reporter(env), CLEAN, CORRUPT, target=80),
        ValueError,
        r"target must be in \(0, 1\], got 80",
    ),
    Case(
        "circuits/target-nan",
        lambda env: smallest_circuit({"embed": 1.0}, env.model, _reporter(env), CLEAN, CORRUPT, target=float("nan")),
        ValueError,
        r"target must be finite; got nan",
    ),
    Case(
        "circuits/scores-nan",
        lambda env: smallest_circuit({"embed": float("nan"), "L0MLP": 1.0}, env.model, _reporter(env), CLEAN, CORRUPT),
        ValueError,
        r"scores\['embed'\] contain NaN or inf",
    ),
    Case(
        "circuits/unknown-ablation",
        lambda env: faithfulness(env.model, _reporter(env), CLEAN, CORRUPT, ["embed"], ablation="zero"),
        ValueError,
        r"unknown ablation 'zero'; valid: \('twin', 'mean'\)",
    ),
    Case(
        "circuits/batch-size-float",
        lambda env: exact_patching(env.model, _reporter(env), CLEAN, CORRUPT, batch_size=2.5),
        TypeError,
        r"batch_size must be an int; got 2\.5",
    ),
    Case(
        "circuits/max-rows-zero",
        lambda env: faithfulness(env.model, _reporter(env), CLEAN, CORRUPT, ["embed"], max_rows=0),
        ValueError,
        r"max_rows must lie in \[1, inf\); got 0",
    ),
    Case(
        "circuits/ig-steps-float",
        lambda env: attribution_patching(env.model, _reporter(env), CLEAN, CORRUPT, ig_steps=2.5),
        TypeError,
        r"ig_steps must be an int; got 2\.5",
    ),
    Case(
        "circuits/eap-ig-steps-zero",
        lambda env: edge_attribution_patching(env.model, _reporter(env), CLEAN, CORRUPT, ig_steps=0),
        ValueError,
        r"ig_steps must be >= 1 \(1 = plain EAP\), got 0",
    ),
    Case(
        "circuits/reporter-without-fingerprint",  # cannot be checked against the model: refused, as on load
        lambda env: direct_attribution(
            env.model, Reporter(_reporter(env).w, 0.0, _reporter(env).v, "logistic", SITE), CLEAN
        ),
        ValueError,
        r"records no model fingerprint \(provenance\['model'\]\).*pass allow_other_model=True",
    ),
    Case(
        "circuits/reporter-not-a-reporter",
        lambda env: direct_attribution(env.model, _reporter(env).w, CLEAN),
        TypeError,
        r"reporter must be a Reporter \(elk_lens\.reporters\.Reporter\); got Tensor",
    ),
    Case(
        "circuits/top-heads-k-zero",
        lambda env: top_heads({"L0H0": 1.0, "L0H1": 2.0}, 0),
        ValueError,
        r"k must lie in \[1, inf\); got 0",
    ),
    Case(
        "circuits/top-heads-k-negative",
        lambda env: top_heads({"L0H0": 1.0, "L0H1": 2.0, "L1H0": 3.0}, -1),
        ValueError,
        r"k must lie in \[1, inf\); got -1",
    ),
    Case(
        "circuits/attention-head-out-of-range",
        lambda env: attention_patterns(env.model, "abc", ["L0H9"]),
        ValueError,
        r"head L0H9 is not in this model: it has layers 0\.\.1 and heads 0\.\.3",
    ),
    Case(
        "circuits/attention-text-list",
        lambda env: attention_patterns(env.model, ["abc"], ["L0H0"]),
        TypeError,
        r"text must be one prompt \(a str\); got list",
    ),
    Case(
        "circuits/spearman-nan",
        lambda env: spearman({"a": 1.0, "b": float("nan")}, {"a": 1.0, "b": 2.0}),
        ValueError,
        r"scores\['b'\] contain NaN or inf",
    ),
    Case(
        "circuits/sloppy-pairs-n-float", lambda env: sum_vs_sloppy_pairs(2.5), TypeError, r"n must be an int; got 2\.5"
    ),
    Case(
        "circuits/sloppy-pairs-unknown-character",
        lambda env: sum_vs_sloppy_pairs(3, character="Carol"),
        ValueError,
        r"character must be one of \['Alice', 'Bob'\]; got 'Carol'",
    ),
    Case(
        "circuits/layer-grid-without-heads",  # an MLP-only score dict is valid: a grid without head columns
        lambda env: layer_grid({"embed": 1.0, "L0MLP": 2.0}),
        check=_grid_without_heads,
    ),
]
