"""Where CCS's batched restarts lose their lead at large n (issue 18, item 3): iterations per restart, how
many batched evaluations the run makes, and what one evaluation costs for one row against ten.

    .venv/bin/python benchmarks/ccs_profile.py [--rows 1024 4096]

Same data as ``benchmarks/fit_bench.py``'s part 2 (Alice's contrast pairs of zoo:quirky-arith at the last
residual site, Burns-normalized), same inits as ``ccs_restarts``, one torch thread. Prints JSON.
"""

import argparse
import json
import time

import numpy as np
import torch

from elk_lens.contrast import capture_contrast
from elk_lens.models import load_model
from elk_lens.quirky.data import quirky_arithmetic
from elk_lens.reporters.batched_lbfgs import batched_lbfgs
from elk_lens.reporters.ccs import ccs_value_and_grad
from elk_lens.reporters.pairs import BurnsNorm
from elk_lens.sites import residual_sites

RESTARTS, WEIGHT_DECAY, REPEATS = 10, 0.01, 50


def per_eval(stacked: torch.Tensor, x: torch.Tensor) -> float:
    start = time.perf_counter()
    for _ in range(REPEATS):
        ccs_value_and_grad(x, stacked, WEIGHT_DECAY)
    return (time.perf_counter() - start) / REPEATS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1024, 4096])
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model("zoo:quirky-arith")
    out = []
    for n in args.rows:
        statements = quirky_arithmetic(2 * n, split="val", seed=0).where(character="Alice").subset(np.arange(n))
        pairs = capture_contrast(model, statements, [residual_sites(model)[-1]], batch_size=512).at(0)
        x_true, x_false = (t.double() for t in pairs)
        z_true, z_false = (z.float() for z in BurnsNorm.fit(x_true, x_false)(x_true, x_false))
        d = z_true.shape[1]
        gen = torch.Generator().manual_seed(0)  # ccs_restarts' inits
        x0 = torch.cat([torch.randn(RESTARTS, d, generator=gen) / d**0.5, torch.zeros(RESTARTS, 1)], 1)
        stacked = torch.cat([z_true, z_false])
        evals, rows = 0, 0

        def value_and_grad(x: torch.Tensor, stacked=stacked):
            nonlocal evals, rows
            evals, rows = evals + 1, rows + x.shape[0]
            return ccs_value_and_grad(x, stacked, WEIGHT_DECAY)

        start = time.perf_counter()
        _, iters = batched_lbfgs(value_and_grad, x0, max_iter=1000)
        seconds = time.perf_counter() - start
        one, ten = per_eval(stacked, x0[:1]), per_eval(stacked, x0)
        out.append(
            {
                "pairs": n,
                "iterations_per_restart": iters.tolist(),
                "batched_evaluations": evals,
                "row_evaluations": rows,
                "batched_s": round(seconds, 3),
                "one_row_eval_ms": round(one * 1e3, 3),
                "ten_row_eval_ms": round(ten * 1e3, 3),
                "ten_over_one": round(ten / one, 2),
            }
        )
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
