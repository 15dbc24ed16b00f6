"""What a cached capture costs against the first one: 4,096 statements at one mid-layer site, the first call
into an empty cache directory, then the same call again (every shard read and verified).

    .venv/bin/python benchmarks/cached_capture_bench.py [--repeats 5]

Run it at an older commit (``git worktree add /tmp/before <commit>``, then ``PYTHONPATH=/tmp/before``) for
the before figure. Prints JSON: per model, the first call's seconds, the cached call's median seconds and
their ratio (values loaded, as a caller reads them), on one torch thread.
"""

import argparse
import json
import statistics
import tempfile
import time

import torch

import elk_lens
from elk_lens.data import truth_sets
from elk_lens.models import load_model
from elk_lens.quirky import quirky_arithmetic

N = 4096


def jobs() -> dict:
    truth = [t for s in truth_sets(["cities", "neg_cities", "larger_than", "smaller_than"]).values() for t in s.texts]
    return {
        "zoo:quirky-arith": (quirky_arithmetic(N // 2, split="test", seed=0).texts, "blocks.2.hook_resid_pre"),
        "zoo:minilm": ((truth * (N // len(truth) + 1))[:N], "blocks.3.hook_resid_pre"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = {}
    for spec, (texts, site) in jobs().items():
        model = load_model(spec)
        with tempfile.TemporaryDirectory() as cache:
            times = []
            for _ in range(1 + args.repeats):  # the first call computes, the others read the cache
                start = time.perf_counter()
                acts = elk_lens.capture(model, texts, [site], batch_size=64, cache_dir=cache, progress=False)
                assert acts.values.shape[0] == N  # the values loaded from the shards, as a caller reads them
                times.append(time.perf_counter() - start)
        first, cached = times[0], statistics.median(times[1:])
        out[spec] = {"first_s": round(first, 3), "cached_s": round(cached, 4), "ratio": round(cached / first, 4)}
    print(json.dumps({"elk_lens": elk_lens.__file__, "statements": N, **out}, indent=1))


if __name__ == "__main__":
    main()
