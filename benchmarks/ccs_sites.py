"""Would one batched CCS search over every site beat a search per site? (issue 18, item 2; a script, not a test)

A prototype, not library code: the restarts of all sites as rows of one ``batched_lbfgs`` run, each row
carrying its site's index as a last parameter whose gradient is zero (L-BFGS then never moves it, so a row
always knows its site), evaluated site by site inside the value function. Against it, ``ccs_restarts`` at
each site in turn — what the sweep does now. Same inits per site, the final losses compared; 1 thread,
interleaved repeats, the median of per-repeat ratios, for 5 sites of width 128 (the embedded model) and
several numbers of pairs (random normalized halves with a planted truth axis).

    .venv/bin/python benchmarks/ccs_sites.py --out benchmarks/results/ccs_sites.json
"""

import argparse
import json
import statistics
from functools import partial
from pathlib import Path

import torch
from _timing import interleaved, paired

from elk_lens.reporters.batched_lbfgs import batched_lbfgs
from elk_lens.reporters.ccs import ccs_loss, ccs_restarts, ccs_value_and_grad

RESTARTS, WEIGHT_DECAY = 10, 0.01


def halves(sites: int, pairs: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    truth = torch.randn(sites, 1, d, generator=gen)
    sign = torch.where(torch.rand(sites, pairs, 1, generator=gen) > 0.5, 1.0, -1.0)
    base = torch.randn(sites, pairs, d, generator=gen)
    z_true = base + sign * truth + 0.5 * torch.randn(sites, pairs, d, generator=gen)
    z_false = base - sign * truth + 0.5 * torch.randn(sites, pairs, d, generator=gen)
    return z_true - z_true.mean(1, keepdim=True), z_false - z_false.mean(1, keepdim=True)


def per_site(z_true: torch.Tensor, z_false: torch.Tensor) -> torch.Tensor:
    return torch.stack(
        [ccs_restarts(t, f, n_restarts=RESTARTS, seed=0).loss for t, f in zip(z_true, z_false, strict=True)]
    )


def all_sites(z_true: torch.Tensor, z_false: torch.Tensor) -> torch.Tensor:
    sites, _, d = z_true.shape
    gen = torch.Generator().manual_seed(0)  # ccs_restarts's inits, the same at every site
    x0 = torch.cat([torch.randn(RESTARTS, d, generator=gen) / d**0.5, torch.zeros(RESTARTS, 1)], 1)
    site_col = torch.arange(sites).repeat_interleave(RESTARTS)[:, None].float()
    x0 = torch.cat([x0.repeat(sites, 1), site_col], 1)
    stacked = torch.cat([z_true, z_false], 1)

    def value_and_grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        value, grad = torch.empty(len(x)), torch.zeros_like(x)
        site = x[:, -1].long()
        for s in site.unique().tolist():
            rows = (site == s).nonzero().squeeze(1)
            value[rows], grad[rows, :-1] = ccs_value_and_grad(x[rows, :-1], stacked[s], WEIGHT_DECAY)
        return value, grad

    x, _ = batched_lbfgs(value_and_grad, x0, max_iter=1000)
    theta, bias = x[:, :d].view(sites, RESTARTS, d), x[:, d].view(sites, RESTARTS)
    return torch.stack([ccs_loss(theta[s], bias[s], z_true[s], z_false[s]) for s in range(sites)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--sites", type=int, default=5)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    result = {}
    for pairs in args.pairs:
        z_true, z_false = halves(args.sites, pairs, args.d)
        gap = float((per_site(z_true, z_false) - all_sites(z_true, z_false)).abs().max())
        calls = {"per site": per_site, "all sites": all_sites}
        times = interleaved({name: partial(fn, z_true, z_false) for name, fn in calls.items()}, args.repeats)
        result[pairs] = {
            "per site s": statistics.median(times["per site"]),
            "all sites s": statistics.median(times["all sites"]),
            "per site / all sites": paired(times["per site"], times["all sites"]),
            "max |loss gap|": gap,
        }
        print(pairs, json.dumps(result[pairs]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
