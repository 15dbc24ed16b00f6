"""Is a grown model the same function as the model it grew from? max |Δlogit| over the whole vocabulary at
every position of held-out statements (the growth analysis's own ``grow`` stage records the change of the
output log-odds and the held-out answer loss of both; this adds the full logits).

    .venv/bin/python benchmarks/growth_function_check.py analyses/growth_smollm2_quirky.toml \\
        --grown runs/growth-smollm2-quirky/grown --rows 64

The small model is the spec's ``model.base``; the statements are the first ``--rows`` of the scenario's
test split (the rows the growth stage's answer loss reads). Prints JSON.
"""

import argparse
import json
import time
from pathlib import Path

import torch

from elk_lens.analyses.scenario import Scenario
from elk_lens.models import load_model
from elk_lens.runner import load_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="the growth analysis spec (TOML)")
    parser.add_argument("--grown", type=Path, required=True, help="the run's grown model directory")
    parser.add_argument("--rows", type=int, default=64, help="held-out statements to compare on")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    spec, _ = load_spec(args.spec)
    scenario = Scenario(spec)
    start = time.perf_counter()
    small, grown = load_model(spec.model.base), load_model(str(args.grown))
    texts = scenario.test_set.texts[: args.rows]
    worst, largest = 0.0, 0.0
    with torch.no_grad():
        for i in range(0, len(texts), args.batch_size):
            tokens = small.to_tokens(texts[i : i + args.batch_size])
            assert torch.equal(tokens, grown.to_tokens(texts[i : i + args.batch_size])), "the tokenizers differ"
            a, b = small(tokens), grown(tokens)
            worst, largest = max(worst, float((a - b).abs().max())), max(largest, float(a.abs().max()))
    out = {
        "small": spec.model.base,
        "grown": str(args.grown),
        "rows": len(texts),
        "max_abs_logit_change": worst,
        "max_abs_logit": largest,
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
