"""Reporter fitting speed on the quirky-arithmetic model (a script, not a test).

Part 1: wall time to fit every method (logistic, mean_diff, lda, ccs, crc, vinc) at every residual
site for N statements, against the wall time to capture the activations they read (the statements'
residuals and both halves of their contrast pairs), with the same thread count. The target is
fit < capture.

Part 2: CCS's 10 restarts as one batched L-BFGS (``vectorized=True``) against a loop over the same
restarts (same inits, same algorithm, one row at a time), on the final site's pairs, for several
row counts, on CPU and (with ``--device cuda``) on a GPU. The target is >= 5x.

    .venv/bin/python benchmarks/fit_bench.py [--threads 2] [--rows 4096] [--device cpu|cuda] [--repeats 3]
"""

import argparse
import json
import statistics
import time

import numpy as np
import torch

from elk_lens.capturing import capture
from elk_lens.contrast import capture_contrast
from elk_lens.models import load_model
from elk_lens.quirky.data import quirky_arithmetic
from elk_lens.reporters.ccs import ccs_restarts
from elk_lens.reporters.pairs import BurnsNorm
from elk_lens.reporters.registry import METHODS, fit_method
from elk_lens.sites import residual_sites

FIT_METHODS = ("logistic", "mean_diff", "lda", "ccs", "crc", "vinc")


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def capture_and_fit(model, n: int, batch: int) -> dict:
    statements = quirky_arithmetic(2 * n, split="val", seed=0).where(character="Alice").subset(np.arange(n))
    sites = residual_sites(model)
    t0 = time.perf_counter()
    acts = capture(model, statements, sites, batch_size=batch)
    pairs = capture_contrast(model, statements, sites, batch_size=batch)
    t1 = time.perf_counter()
    per_method = dict.fromkeys(FIT_METHODS, 0.0)
    for i, site in enumerate(sites):
        for name in FIT_METHODS:
            started = time.perf_counter()
            if METHODS[name].reads == "contrast":
                fit_method(name, statements.truth, site=site.name, pair=pairs.at(i))
            else:
                fit_method(name, statements.truth, site=site.name, statement=acts.at(i))
            per_method[name] += time.perf_counter() - started
    return {
        "rows": len(statements),
        "capture_s": round(t1 - t0, 3),
        "fit_s": round(sum(per_method.values()), 3),
        "fit_s_per_method": {k: round(v, 3) for k, v in per_method.items()},
    }


def ccs_speedup(model, n: int, batch: int, device: str, repeats: int) -> dict:
    statements = quirky_arithmetic(2 * n, split="val", seed=0).where(character="Alice").subset(np.arange(n))
    site = residual_sites(model)[-1]
    x_true, x_false = (t.double() for t in capture_contrast(model, statements, [site], batch_size=batch).at(0))
    z_true, z_false = (z.float().to(device) for z in BurnsNorm.fit(x_true, x_false)(x_true, x_false))
    times = {True: [], False: []}
    losses = {}
    for _ in range(repeats):
        for vectorized in (True, False):
            _sync(device)
            started = time.perf_counter()
            fit = ccs_restarts(z_true, z_false, vectorized=vectorized)
            _sync(device)
            times[vectorized].append(time.perf_counter() - started)
            losses[vectorized] = fit.loss.cpu()
    vec, seq = statistics.median(times[True]), statistics.median(times[False])
    gap = float((losses[True] - losses[False]).abs().max())
    return {
        "rows": len(statements),
        "device": device,
        "vectorized_s": round(vec, 3),
        "sequential_s": round(seq, 3),
        "speedup": round(seq / vec, 2),
        "max_loss_gap": gap,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("zoo:quirky-arith")
    out = {"threads": args.threads}
    ccs_speedup(model, 256, args.batch, args.device, 1)  # warm-up
    if args.device == "cpu":
        capture_and_fit(model, 256, args.batch)  # warm-up
        out["fit_vs_capture"] = capture_and_fit(model, args.rows, args.batch)
    out["ccs_vectorized_vs_sequential"] = [
        ccs_speedup(model, n, args.batch, args.device, args.repeats) for n in (1024, args.rows)
    ]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
