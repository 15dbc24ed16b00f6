"""Exact patching: how many rows per forward, measured (issue 18, item 3; a script, not a test).

Part 1, the cost curve: seconds per row of one forward to the site (``blocks.3.hook_resid_pre`` of the
embedded model, the statements of ``sum_vs_sloppy_pairs``) for 16 to 4,096 rows. Per-forward overhead makes
small forwards dear per row; past some size the cost per row stops falling (on a CPU it rises again as the
activations leave the cache). ``elk_lens.circuits.patching.ROWS_PER_FORWARD`` holds the smallest size within
5% of the cheapest per row on each device type; this part prints that size for the machine it runs on.

Part 2, ``exact_patching`` (every component upstream of the site) against a plain TransformerLens loop over
the same components — per batch ``run_with_cache`` of the corrupted half, then one ``run_with_hooks`` per
component with ``stop_at_layer`` — at several numbers of pairs, with the old constant ``max_rows=4096`` and
with the default. One torch thread, methods interleaved within each repeat, ratios the median of per-repeat
(paired) ratios. Target: no slower than the plain loop at every size.

    .venv/bin/python benchmarks/patching_rows.py --out benchmarks/results/patching_rows.json
"""

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from _timing import interleaved, paired

from elk_lens.capturing import capture
from elk_lens.circuits import exact_patching
from elk_lens.circuits._engine import Batch, forward_to_site
from elk_lens.circuits._inputs import pair_tokens
from elk_lens.circuits.components import Component, upstream_components
from elk_lens.models import fingerprint, load_model
from elk_lens.quirky.data import quirky_arithmetic
from elk_lens.quirky.twins import sum_vs_sloppy_pairs
from elk_lens.reporters import fit_logistic
from elk_lens.sites import Site

SITE = "blocks.3.hook_resid_pre"
CURVE_ROWS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


def per_row_curve(model, tokens, repeats: int) -> dict[int, float]:
    site = Site.parse(SITE)
    out = {}
    for rows in CURVE_ROWS:
        batch = Batch.of(tokens, slice(0, rows))
        forward_to_site(model, site, batch, {})  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(max(1, 2048 // rows)):
                forward_to_site(model, site, batch, {})
            times.append((time.perf_counter() - t0) / (max(1, 2048 // rows) * rows))
        out[rows] = statistics.median(times)
    return out


def plain_loop(model, reporter, clean_tok, corrupt_tok, names: list[str], batch_size: int) -> dict[str, torch.Tensor]:
    """What a TransformerLens user writes: cache the twin, then patch one component per forward."""
    components = [Component.from_name(n) for n in names]
    hooks = sorted({c.hook for c in components})
    layer = Site.parse(SITE).layer
    w, b = reporter.w.to(torch.float32), float(reporter.b)
    out: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    with torch.no_grad():
        for start in range(0, len(clean_tok), batch_size):
            rows = slice(start, start + batch_size)
            clean, corrupt = Batch.of(clean_tok, rows), Batch.of(corrupt_tok, rows)
            _, twin = model.run_with_cache(corrupt.ids, names_filter=hooks, stop_at_layer=layer)
            index = torch.arange(len(clean))

            def score(resid, clean=clean, index=index):
                return resid[index, clean.read] @ w + b

            base = score(model(clean.ids, stop_at_layer=layer))
            for c in components:

                def patch(t, *, hook, c=c, twin=twin):
                    t = t.clone()
                    c.put(t, slice(None), c.take(twin[c.hook]))
                    return t

                resid = model.run_with_hooks(clean.ids, fwd_hooks=[(c.hook, patch)], stop_at_layer=layer)
                out[c.name].append(score(resid) - base)
    return {n: torch.cat(v) for n, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, nargs="+", default=[32, 128, 512, 1024])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model("zoo:quirky-arith")
    train = quirky_arithmetic(2000, split="val", seed=0).where(character="Alice", easy=True)
    reporter = fit_logistic(
        capture(model, train, [SITE], progress=False).at(0),
        train.truth,
        site=SITE,
        provenance={"model": fingerprint(model)},
    )
    clean, corrupt = sum_vs_sloppy_pairs(max(max(args.pairs), max(CURVE_ROWS)), split="test", seed=0)
    clean_tok, corrupt_tok = pair_tokens(model, clean, corrupt, Site.parse(SITE))
    result = {"conditions": {"torch threads": 1, "cpu count": os.cpu_count(), "load average": os.getloadavg()}}

    curve = per_row_curve(model, clean_tok, args.repeats)
    cheapest = min(curve.values())
    knee = min(r for r, t in curve.items() if t <= 1.05 * cheapest)
    result["per-row seconds by rows per forward"] = curve
    result["smallest rows within 5% of the cheapest"] = knee
    print("per-row us:", {r: round(t * 1e6, 2) for r, t in curve.items()}, "-> knee", knee, flush=True)

    names = upstream_components(model, SITE)
    result["components"] = len(names)
    result["by pairs"] = {}
    for n in args.pairs:
        c, k = clean[:n], corrupt[:n]
        ct, kt = clean_tok.rows(0, n), corrupt_tok.rows(0, n)
        bs = min(n, 1024)
        methods = {
            "plain loop": lambda ct=ct, kt=kt, bs=bs: plain_loop(model, reporter, ct, kt, names, bs),
            "max_rows=4096 (before)": lambda c=c, k=k: exact_patching(model, reporter, c, k, max_rows=4096),
            "default (after)": lambda c=c, k=k: exact_patching(model, reporter, c, k),
        }
        got = {name: fn() for name, fn in methods.items()}  # warm-up, and the agreement check
        diff = max(float((got["default (after)"][x] - got["plain loop"][x]).abs().max()) for x in names)
        times = interleaved(methods, args.repeats)
        row = {
            "median_s": {name: statistics.median(ts) for name, ts in times.items()},
            "max |default - plain loop|": diff,
        }
        for name in ("max_rows=4096 (before)", "default (after)"):
            row[f"{name} / plain loop"] = paired(times[name], times["plain loop"])
        result["by pairs"][n] = row
        print(n, "pairs:", json.dumps(row), flush=True)
        if args.out:
            args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
