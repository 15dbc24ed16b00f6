"""Across pretrained sizes with no exact map: an affine map from SmolLM2-135M's residual to Gemma 3 270M's,
fitted on the same truth statements, and a SmolLM2 reporter carried through it (issue 17 item 7).

    OMP_NUM_THREADS=1 ELK_LENS_CACHE=/tmp/elk_cache python benchmarks/cross_size_map.py \
        --out benchmarks/results/cross_size_map_smollm2_gemma3.json

Both models read the same truth statements (``el.truth_sets``, the ten sets of analyses/*_truth.toml) at
the final period, each its own ``resid_pre``, at layers paired by relative depth (0.25, 0.5, 0.75, fixed
in advance) plus the layers the truth analyses chose on cities' val split (SmolLM2 L12, Gemma L9;
docs/real-models.md). The datasets' own item split is kept: train rows fit everything, val rows pick the
map's ridge (by residual: no labels), test rows only score. Per layer pair:

- reporters (logistic) on ``cities`` train rows: SmolLM2's, and Gemma's own refitted one, scored on cities
  test rows, beside the random-direction floor (1,000 directions, each signed on train) of each model;
- the map ``x_gemma ≈ G x_smol + c`` (``el.fit_growth_map``, least squares; 576 -> 640 is the growing
  direction), fitted on the train pairs of cities, of all ten sets, or of the six with no city in them
  (the map then sees no city statement), with its relative residual
  ``‖A Gᵀ + c − B‖ / ‖B − mean(B)‖`` (``info["residual"]`` on fitted rows) on train, val and cities test;
- SmolLM2's reporter through it (``GrowthMap.transport``: ``w' = G (GᵀG)⁻¹ w``) scored on Gemma's cities
  test rows, and its scores' correlation with the original's; for comparison the readout through the
  reverse regression (``x_smol ≈ H x_gemma``, same ridge): ``w' = Hᵀ w``;
- controls: maps fitted on the same train rows with the pairs shuffled, across all rows or within each
  (dataset, truth label) group (class means stay paired, statements do not).

Activations are cached in ``runs/cross_size_map/cache`` (checksummed shards, written atomically): a rerun
reads them instead of running the models.
"""

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

import elk_lens as el
from elk_lens.capturing import content_position
from elk_lens.metrics import bootstrap_ci
from elk_lens.reporters.random_baseline import random_direction_baseline
from elk_lens.sites import Site

SMALL, BIG = "zoo:smollm2-135m", "zoo:gemma3-270m"
DEPTHS = (0.25, 0.5, 0.75)
CHOSEN_ON_VAL = (12, 9)  # cities' probe layers in smollm2-truth / gemma3-truth (docs/real-models.md)
RIDGES = (0.0, 1e-3, 1e-2, 1e-1, 1.0, 10.0)  # times the mean eigenvalue of the source covariance
N_RANDOM = 1000
SEED = 0


def read(spec: str, sets: dict, which: int, given, cache: Path) -> tuple[str, list[int], dict, dict]:
    """Load one model, capture every set at its layer of each pair (the given pairs, else by relative depth,
    then the val choice) or read them from the cache, and check the shapes read back."""
    start, model = time.time(), el.load_model(spec)
    n = model.cfg.n_layers
    by_depth = [min(n - 1, int(d * n + 0.5)) for d in DEPTHS] + [CHOSEN_ON_VAL[which]]
    layers = [p[which] for p in given] if given else by_depth
    sites = [Site(layer) for layer in sorted(set(layers))]
    position = content_position(model)
    acts = [el.capture(model, d, sites, position=position, cache_dir=cache, shard_rows=512) for d in sets.values()]
    x = {s.layer: torch.cat([a.at(i) for a in acts]).double() for i, s in enumerate(sites)}
    want = (sum(len(d) for d in sets.values()), model.cfg.d_model)
    for layer, t in x.items():
        if t.shape != want or not torch.isfinite(t).all():
            raise RuntimeError(f"{spec} L{layer}: read back {tuple(t.shape)}, want {want}, all finite")
    print(f"{spec}: layers {sorted(x)}, {want[0]} statements, {time.time() - start:.0f} s", flush=True)
    card = {"spec": spec, "n_layers": n, "d_model": model.cfg.d_model, "position": position}
    card["load_and_capture_s"] = round(time.time() - start, 1)  # a few seconds when read from the cache
    return el.fingerprint(model), layers, x, card


def residual(m, a: torch.Tensor, b: torch.Tensor) -> float:
    """``‖a Gᵀ + c − b‖ / ‖b − mean(b)‖``: the share of the target's variation the map leaves."""
    return float(torch.linalg.norm(a @ m.P.T + m.offset - b) / torch.linalg.norm(b - b.mean(0)))


def reverse_readout(b: torch.Tensor, a: torch.Tensor, ridge: float, w: torch.Tensor) -> torch.Tensor:
    """``Hᵀ w`` for ``a ≈ b Hᵀ`` (centred ridge least squares, the ridge scaled as fit_growth_map scales it)."""
    b_c, a_c = b - b.mean(0), a - a.mean(0)
    gram = b_c.T @ b_c
    lam = ridge * float(torch.diagonal(gram).mean())
    return torch.linalg.solve(gram + lam * torch.eye(len(gram), dtype=gram.dtype), b_c.T @ (a_c @ w))


def within_group_perm(group: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A permutation that moves every row to another row of its own group (here: dataset and truth label)."""
    perm = torch.arange(len(group))
    for k in group.unique():
        idx = (group == k).nonzero().squeeze(1)
        perm[idx] = idx[torch.randperm(len(idx), generator=g)]
    return perm


def with_ci(scores: torch.Tensor, y: torch.Tensor) -> list[float]:
    low, high = bootstrap_ci(el.auroc, scores, y, n_resamples=1000, seed=SEED)
    return [round(el.auroc(scores, y), 4), round(low, 4), round(high, 4)]


def agreement(scores: torch.Tensor, s_small: torch.Tensor, y: torch.Tensor) -> tuple[list[float], float]:
    """AUROC [95% CI] of ``scores``, and their correlation with the SmolLM2 reporter's on the same statements."""
    return with_ci(scores, y), round(float(torch.corrcoef(torch.stack([scores, s_small]))[0, 1]), 4)


def floor(x: torch.Tensor, y: torch.Tensor, tr: torch.Tensor, te: torch.Tensor) -> dict:
    q = random_direction_baseline(x[tr], y[tr], x[te], y[te], n_directions=N_RANDOM, seed=SEED)
    return {k: round(q[k], 4) for k in ("mean", "q0.5", "q0.95", "q0.99")}


def one_pair(xs, xb, y, group, rows: dict, sites: tuple[str, str], fps: list[str]) -> dict:
    """Reporters, floors and every map (fit rows x ridge x pairing) at one layer pair."""
    tr, te = rows["cities"]["train"], rows["cities"]["test"]
    rep = el.fit_logistic(xs[tr], y[tr], site=sites[0], provenance={"model": fps[0]})
    own = el.fit_logistic(xb[tr], y[tr], site=sites[1], provenance={"model": fps[1]})
    s_small = rep(xs[te])
    out = {"small_site": sites[0], "big_site": sites[1], "small_auroc": with_ci(s_small, y[te])}
    out |= {"big_refit_auroc": with_ci(own(xb[te]), y[te]), "small_floor": floor(xs, y, tr, te)}
    out |= {"big_floor": floor(xb, y, tr, te), "ridge_choice": {}, "maps": []}
    print(sites, {k: out[k] for k in ("small_auroc", "big_refit_auroc", "big_floor")}, flush=True)
    g = torch.Generator().manual_seed(SEED)
    for fit_on in ("cities", "all_sets", "no_city_sets"):
        m_tr, m_va = rows[fit_on]["train"], rows[fit_on]["val"]
        a, b = xs[m_tr], xb[m_tr]

        def fit(a: torch.Tensor, ridge: float, b=b):
            return el.fit_growth_map(
                a, b, source_site=sites[0], target_site=sites[1], source_model=fps[0], target_model=fps[1], ridge=ridge
            )

        ridges = [r for r in RIDGES if r > 0 or len(a) > a.shape[1]]  # plain least squares needs n > d
        val_residual = {r: residual(fit(a, r), xs[m_va], xb[m_va]) for r in ridges}
        best = min(val_residual, key=val_residual.get)
        out["ridge_choice"][fit_on] = {"val_residual": {f"{r:g}": round(v, 4) for r, v in val_residual.items()}}
        out["ridge_choice"][fit_on]["chosen"] = best
        pairings = {
            "paired": a,
            "shuffled": a[torch.randperm(len(a), generator=g)],
            "shuffled_within_set_label": a[within_group_perm(group[m_tr], g)],
        }
        for ridge in sorted({ridges[0], best}):
            for name, a_fit in pairings.items():
                m = fit(a_fit, ridge)
                fitted = residual(m, a_fit, b)
                assert abs(fitted - m.info["residual"]) < 1e-9, (fitted, m.info["residual"])  # one definition
                row = {"fit_on": fit_on, "n_pairs": len(a), "pairing": name, "ridge": ridge}
                row |= {"residual_train": round(fitted, 4), "residual_val": round(residual(m, xs[m_va], xb[m_va]), 4)}
                row["residual_cities_test"] = round(residual(m, xs[te], xb[te]), 4)
                row["transported_auroc"], row["transported_corr"] = agreement(m.transport(rep)(xb[te]), s_small, y[te])
                s_reverse = xb[te] @ reverse_readout(b, a_fit, ridge, rep.w)
                row["reverse_readout_auroc"], row["reverse_corr"] = agreement(s_reverse, s_small, y[te])
                out["maps"].append(row)
                if (name, ridge) == ("paired", best):
                    keys = ("transported_auroc", "reverse_readout_auroc", "residual_train", "residual_cities_test")
                    print(sites, fit_on, {k: row[k] for k in keys}, flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/cross_size_map_smollm2_gemma3.json")
    parser.add_argument("--rows", type=int, default=0, help="cap each set (stratified by split and label); 0: all")
    parser.add_argument("--sites", default="", help="layer pairs 'small:big,...'; default: by relative depth")
    parser.add_argument("--cache", default="runs/cross_size_map/cache")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.time()
    sets = {n: d.sample(args.rows, seed=SEED) if args.rows else d for n, d in el.truth_sets(seed=SEED).items()}
    split = np.concatenate([np.asarray(d.column("split")) for d in sets.values()])
    name = np.concatenate([np.full(len(d), n) for n, d in sets.items()])
    y = torch.cat([d.truth for d in sets.values()])
    no_city = np.array(["cities" not in n for n in name])  # cities, neg_cities, cities_conj, cities_disj out
    subsets = {"cities": name == "cities", "all_sets": np.ones(len(name), dtype=bool), "no_city_sets": no_city}
    group = torch.as_tensor(np.unique(name, return_inverse=True)[1]) * 2 + y.long()  # (dataset, truth label)
    rows = {
        k: {s: torch.as_tensor((split == s) & keep) for s in ("train", "val", "test")} for k, keep in subsets.items()
    }
    given = [tuple(int(v) for v in p.split(":")) for p in args.sites.split(",")] if args.sites else None
    runs = [read(spec, sets, which, given, Path(args.cache)) for which, spec in enumerate((SMALL, BIG))]
    fps, layers, xs, cards = (list(t) for t in zip(*runs, strict=True))
    pairs = []
    for small, big in dict.fromkeys(zip(*layers, strict=True)):
        r = one_pair(xs[0][small], xs[1][big], y, group, rows, (Site(small).name, Site(big).name), fps)
        r["relative_depth"] = [round(small / cards[0]["n_layers"], 3), round(big / cards[1]["n_layers"], 3)]
        pairs.append(r)
    result = {
        "command": " ".join(["python", *map(shlex.quote, sys.argv)]),
        "wall_s": round(time.time() - start, 1),
        "data": {"sets": {n: len(d) for n, d in sets.items()}, "seed": SEED},
        "rows": {k: {s: int(m.sum()) for s, m in v.items()} for k, v in rows.items()},
        "split": "each set's own item split (elk_lens.data.truth_datasets.item_split): no test item is fitted on",
        "models": [{**c, "fingerprint": f} for c, f in zip(cards, fps, strict=True)],
        "settings": {"ridges": list(RIDGES), "n_random": N_RANDOM, "seed": SEED, "reporter": "fit_logistic, C=1"},
        "pairs": pairs,
    }
    el.atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out} ({result['wall_s']} s)")


if __name__ == "__main__":
    main()
