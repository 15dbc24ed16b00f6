"""Torch threads for small models: one thread against two, on a quiet machine and beside a busy process
(issue 18, item 5; a script, not a test).

For capture of one mid-layer site on each model and for the fits of a sweep (logistic and CCS on the
embedded model's width and SmolLM2's), the seconds at 1 and at 2 intra-op threads, alternated within each
repeat, first with the other core idle, then with a busy-looping process on it (what a test run with two
workers, or any second job, does). Ratios are medians of per-repeat (paired) ratios, 2 threads over 1.

    .venv/bin/python benchmarks/threads_bench.py --out benchmarks/results/threads_bench.json
"""

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from elk_lens._threads import torch_threads
from elk_lens.capturing import capture
from elk_lens.data.truth_datasets import truth_set
from elk_lens.models import load_model
from elk_lens.quirky.data import quirky_arithmetic
from elk_lens.reporters import fit_ccs, fit_logistic
from elk_lens.sites import residual_sites

MODELS = {"zoo:quirky-arith": 1024, "zoo:minilm": 256, "zoo:smollm2-135m": 64}


@contextlib.contextmanager
def busy_core():
    """A process spinning on one core for as long as the block runs."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        proc.kill()
        proc.wait()


def paired(jobs: dict, repeats: int) -> dict:
    times = {(name, n): [] for name in jobs for n in (1, 2)}
    for fn in jobs.values():
        fn()
    for _ in range(repeats):
        for name, fn in jobs.items():
            for n in (1, 2):
                with torch_threads(n):
                    t0 = time.perf_counter()
                    fn()
                    times[(name, n)].append(time.perf_counter() - t0)
    return {
        name: {
            "1 thread s": statistics.median(times[(name, 1)]),
            "2 threads s": statistics.median(times[(name, 2)]),
            "2 / 1": statistics.median(b / a for a, b in zip(times[(name, 1)], times[(name, 2)], strict=True)),
        }
        for name in jobs
    }


def jobs() -> dict:
    out = {}
    for spec, n in MODELS.items():
        model = load_model(spec)
        if spec == "zoo:quirky-arith":
            texts = quirky_arithmetic(n // 2, split="test", seed=0).texts
        else:
            texts = truth_set("cities", seed=0).texts[:n]
        site = residual_sites(model)[model.cfg.n_layers // 2]
        out[f"capture {spec}, {n} statements"] = lambda model=model, texts=texts, site=site: capture(
            model, texts, [site], progress=False
        )
    gen = torch.Generator().manual_seed(0)
    for d in (128, 576):
        x = torch.randn(4096, d, generator=gen)
        y = x[:, 0] + 0.5 * torch.randn(4096, generator=gen) > 0
        out[f"fit_logistic 4096 x {d}"] = lambda x=x, y=y: fit_logistic(x, y, site="s")
        xp, xn = x[:2048], x[2048:]
        out[f"fit_ccs 2048 pairs x {d}"] = lambda xp=xp, xn=xn, y=y[:2048]: fit_ccs(xp, xn, y, site="s", seed=0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    work = jobs()
    result = {"conditions": {"cpu count": os.cpu_count(), "load average at start": os.getloadavg()}}
    result["quiet"] = paired(work, args.repeats)
    print("quiet", json.dumps(result["quiet"], indent=1), flush=True)
    with busy_core():
        result["beside a busy core"] = paired(work, args.repeats)
    print("busy", json.dumps(result["beside a busy core"], indent=1), flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
