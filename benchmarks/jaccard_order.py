"""Why a circuits run's weighted-Jaccard series may differ in the last bits from a run made before
commit 197d86c: that code summed over a ``set``, whose order follows the hash seed, so its bits varied
run to run. This recomputes ``weighted_jaccard_prev`` (``elk_lens.circuit_drift.circuit_series``) from a
run's own ``metrics.json`` (each checkpoint's circuit and scores; a run without growth): in set order
under many hash seeds, and in sorted order (the code now), and says how many distinct series each gives
and whether one equals the run's stored series.

    python benchmarks/jaccard_order.py RUN_DIR [--seeds 64]
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

# the series as circuit_series computes it, standalone so that each hash seed costs one bare interpreter
_RECOMPUTE = """
import json, sys
circuits, scores, order = json.loads(sys.stdin.read())
def weighted_jaccard(a, b):
    keys = set(a) | set(b)
    keys = sorted(keys) if order == "sorted" else keys
    top = sum(max(abs(a.get(k, 0.0)), abs(b.get(k, 0.0))) for k in keys)
    low = sum(min(abs(a.get(k, 0.0)), abs(b.get(k, 0.0))) for k in keys)
    return 1.0 if top == 0 else low / top
within = [{k: v for k, v in s.items() if k in set(c)} for c, s in zip(circuits, scores)]
print(json.dumps([weighted_jaccard(p, s) for p, s in zip([within[0], *within[:-1]], within)]))
"""


def recompute(metrics: dict, order: str, hash_seed: int) -> list[float]:
    payload = json.dumps([[x["circuit"] for x in metrics["at"]], metrics["exact_in_final_names"], order])
    env = {**os.environ, "PYTHONHASHSEED": str(hash_seed)}
    out = subprocess.run([sys.executable, "-c", _RECOMPUTE], input=payload, text=True, capture_output=True, env=env)
    out.check_returncode()
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--seeds", type=int, default=64)
    args = parser.parse_args()
    metrics = json.loads((args.run / "metrics.json").read_text())
    if metrics["grown_at"]:
        raise SystemExit(f"{args.run} walks a growth run; its circuits are relabelled through maps (not handled)")
    stored = json.dumps(metrics["drift"]["weighted_jaccard_prev"])
    for order in ("set", "sorted"):
        found = {json.dumps(recompute(metrics, order, seed)) for seed in range(args.seeds)}
        print(
            f"{order:6} order over {args.seeds} hash seeds: {len(found)} distinct series; "
            f"one equals the stored series: {stored in found}"
        )


if __name__ == "__main__":
    main()
