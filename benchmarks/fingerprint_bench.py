"""What a model's fingerprint costs per call: hashing every weight (what `fingerprint` did on every call
before issue 18; `weights_fingerprint`) vs the cached call (`fingerprint` on unchanged weights: one pass
over the state dict's tensor metadata).

    .venv/bin/python benchmarks/fingerprint_bench.py [--models zoo:quirky-arith zoo:minilm zoo:smollm2-135m]

Prints JSON: per model, the median seconds of each over ``--repeats`` calls, one torch thread.
"""

import argparse
import json
import statistics
import time

import torch

from elk_lens._fingerprint import fingerprint, weights_fingerprint
from elk_lens.models import load_model


def seconds(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["zoo:quirky-arith", "zoo:minilm", "zoo:smollm2-135m"])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = {}
    for spec in args.models:
        model = load_model(spec)
        fingerprint(model)  # the first call hashes and keeps the hash
        full = seconds(lambda m=model: weights_fingerprint(m.cfg, m.state_dict()), args.repeats)
        cached = seconds(lambda m=model: fingerprint(m), args.repeats)
        n = sum(p.numel() for p in model.parameters())
        out[spec] = {"parameters": n, "hash_every_weight_s": round(full, 4), "cached_s": round(cached, 5)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
