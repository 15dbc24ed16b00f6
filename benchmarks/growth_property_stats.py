"""What the growth property test (tests/growth/test_growth_property.py) draws and measures: models,
steps, refusals per operator, max |Δlogit| per dtype and its ratio to the tolerance's scale.

    .venv/bin/python benchmarks/growth_property_stats.py [--examples N]

Runs the test itself (same derandomized draws as ``make test`` at its default count) and prints JSON.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "growth"))

import test_growth_property as prop  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=prop.FUZZ.max_examples, help="hypothesis examples")
    args = parser.parse_args()
    inner = prop.test_every_growth_step_keeps_the_logits_or_refuses_as_documented.hypothesis.inner_test
    test = settings(prop.FUZZ, max_examples=args.examples)(given(data=st.data())(inner))
    start = time.perf_counter()
    test()
    out = {
        **prop.STATS,
        "examples": args.examples,
        "tol_factor": prop.TOL_FACTOR,
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
