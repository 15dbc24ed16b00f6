"""Two processes against one on the CPU: data-parallel capture and a per-method sweep under ``torchrun``
(issue 19, item 4; a script, not a test).

The same worker runs once as a plain process and once under ``torchrun --nproc-per-node 2`` (gloo), one
torch thread per process, on ``zoo:quirky-arith``: (1) ``capture`` of every residual site for ``--statements``
statements into a fresh cache, shards of ``--shard-rows``; (2) a sweep — every method at every site, one
run stage per method (``RunDir.stages``, spread over the ranks), reading those activations. Each part is
timed on rank 0 between barriers; (3) the same fits as one list of (method, site) items spread over the
ranks (``elk_lens.distributed.spread``, as the quirky protocol and trajectory drift do), which balances
better than one stage per method. The launch's wall time (start-up included) is reported beside. The
results of the two launches are compared: equal bytes, or the speed-up means nothing.

    .venv/bin/python benchmarks/distributed_capture.py --out benchmarks/results/distributed_capture.json
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = ("logistic", "mean_diff", "lda", "ccs", "crc", "vinc")


def worker(n: int, shard_rows: int, work: Path) -> None:
    import numpy as np
    import torch

    from elk_lens.capturing import capture
    from elk_lens.contrast import capture_contrast
    from elk_lens.distributed import ranks, spread
    from elk_lens.models import load_model
    from elk_lens.quirky.data import quirky_arithmetic
    from elk_lens.report.rundir import RunDir
    from elk_lens.reporters.registry import METHODS as REGISTRY
    from elk_lens.reporters.registry import fit_method
    from elk_lens.sites import residual_sites

    torch.set_num_threads(1)
    r = ranks()
    model = load_model("zoo:quirky-arith")
    data = quirky_arithmetic(2 * n, split="val", seed=0).where(character="Alice").subset(np.arange(n))
    sites = residual_sites(model)
    cache = work / "cache"
    r.barrier()
    t0 = time.perf_counter()
    acts = capture(model, data, sites, cache_dir=cache, shard_rows=shard_rows, progress=False)
    pairs = capture_contrast(model, data, sites, cache_dir=cache, shard_rows=shard_rows, progress=False)
    r.barrier()
    t_capture = time.perf_counter() - t0

    def fit(job: tuple[str, int]) -> list[float]:
        method, i = job
        if REGISTRY[method].reads == "contrast":
            return fit_method(method, data.truth, site=sites[i].name, pair=pairs.at(i)).w.tolist()
        return fit_method(method, data.truth, site=sites[i].name, statement=acts.at(i)).w.tolist()

    def fits(method: str) -> dict:
        return {site.name: fit((method, i)) for i, site in enumerate(sites)}

    run = RunDir(work / "run", 'name = "sweep"\n')
    r.barrier()
    t0 = time.perf_counter()
    swept = run.stages({m: (lambda m=m: fits(m)) for m in METHODS})
    r.barrier()
    t_sweep = time.perf_counter() - t0
    jobs = [(m, i) for m in METHODS for i in range(len(sites))]
    r.barrier()
    t0 = time.perf_counter()
    spread_w = iter(spread(jobs, fit))
    r.barrier()
    t_spread = time.perf_counter() - t0
    spread_sweep = {m: {site.name: next(spread_w) for site in sites} for m in METHODS}
    if r.rank == 0:
        digest = hashlib.sha256(acts.values.numpy().tobytes() + pairs.true.values.numpy().tobytes())
        result = {
            "world": r.world,
            "capture_s": t_capture,
            "sweep_s": t_sweep,
            "spread_s": t_spread,
            "activations_sha256": digest.hexdigest(),
            "sweep_sha256": hashlib.sha256(json.dumps(swept, sort_keys=True).encode()).hexdigest(),
            "spread_sha256": hashlib.sha256(json.dumps(spread_sweep, sort_keys=True).encode()).hexdigest(),
        }
        (work / "result.json").write_text(json.dumps(result))


def launch(processes: int, n: int, shard_rows: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        args = [__file__, "--worker", "--statements", str(n), "--shard-rows", str(shard_rows), "--work", str(work)]
        if processes == 1:
            command = [sys.executable, *args]
        else:
            command = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc-per-node",
                str(processes),
            ]
            command += args
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        t0 = time.perf_counter()
        subprocess.run(command, env=env, check=True)
        wall = time.perf_counter() - t0
        return {**json.loads((work / "result.json").read_text()), "launch_wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--statements", type=int, default=4096)
    ap.add_argument("--shard-rows", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--work", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.worker:
        worker(args.statements, args.shard_rows, args.work)
        return
    runs = {1: [], 2: []}
    for _ in range(args.repeats):  # interleaved: one process, then two
        for processes in (1, 2):
            runs[processes].append(launch(processes, args.statements, args.shard_rows))
            print(processes, json.dumps(runs[processes][-1]), flush=True)
    same = {k: {r[k] for rs in runs.values() for r in rs} for k in ("activations_sha256", "sweep_sha256")}
    same["sweep_sha256"] |= {r["spread_sha256"] for rs in runs.values() for r in rs}  # the same fits, twice
    result = {
        "conditions": {"cpu count": os.cpu_count(), "statements": args.statements, "shard_rows": args.shard_rows},
        "runs": runs,
        "equal results across launches": all(len(v) == 1 for v in same.values()),
    }
    for part in ("capture_s", "sweep_s", "spread_s", "launch_wall_s"):
        one = sorted(r[part] for r in runs[1])[len(runs[1]) // 2]
        two = sorted(r[part] for r in runs[2])[len(runs[2]) // 2]
        result[f"speed-up, {part}"] = one / two
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
