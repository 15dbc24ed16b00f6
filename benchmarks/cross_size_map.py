"""Across pretrained sizes with no exact map: an affine map from SmolLM2-135M's residual to Gemma 3 270M's,
fitted on the same truth statements, and a SmolLM2 reporter carried through it (issue 17 item 7).

    OMP_NUM_THREADS=1 ELK_LENS_CACHE=/tmp/elk_cache python benchmarks/cross_size_map.py \
        --out benchmarks/results/cross_size_map_smollm2_gemma3.json

Both models read the ``cities`` statements (``el.truth_set``) at the final period, each its own
``resid_pre`` at layers paired by relative depth (0.25, 0.5, 0.75, fixed in advance) plus the layers the
truth analyses chose on cities' val split (SmolLM2 L12, Gemma L9; docs/real-models.md). The dataset's own
item split is kept: train rows fit everything, val rows pick the map's ridge (by residual, no labels),
test rows only score. Per layer pair:

- the map ``x_gemma ≈ G x_smol + c`` (``el.fit_growth_map``, least squares; 576 -> 640 is the growing
  direction) and its relative residual ``‖A Gᵀ + c − B‖ / ‖B − mean(B)‖`` on train, val and test rows;
- a logistic reporter fitted on SmolLM2's train rows: its test AUROC there, and through the map
  (``GrowthMap.transport``: readout as a covector, ``w' = G (GᵀG)⁻¹ w``) on Gemma's test rows;
- Gemma's own reporter refitted on its train rows, and the random-direction floor (1,000 directions, each
  signed on train) on each model's test rows;
- controls: the map fitted on train pairs shuffled across statements, and shuffled within each truth label
  (the class means stay paired, the statements do not).

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

from elk_lens import atomic_write_text, auroc, capture, fingerprint, fit_growth_map, fit_logistic, load_model
from elk_lens import truth_set as load_truth_set
from elk_lens.capture import content_position
from elk_lens.metrics import bootstrap_ci
from elk_lens.reporters.random_baseline import random_direction_baseline
from elk_lens.sites import Site

SMALL, BIG = "zoo:smollm2-135m", "zoo:gemma3-270m"
DEPTHS = (0.25, 0.5, 0.75)
CHOSEN_ON_VAL = (12, 9)  # cities' probe layers in smollm2-truth / gemma3-truth (docs/real-models.md)
RIDGES = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)  # times the mean eigenvalue of the source covariance
N_RANDOM = 1000
SEED = 0


def layers_for(n_layers: int, which: int, given: list[tuple[int, int]] | None) -> list[int]:
    """Model ``which``'s layer of every pair: the given pairs, else by relative depth, then the val choice."""
    if given:
        return [pair[which] for pair in given]
    return [min(n_layers - 1, int(d * n_layers + 0.5)) for d in DEPTHS] + [CHOSEN_ON_VAL[which]]


def read(spec: str, data, which: int, given, cache: Path) -> tuple[str, list[int], dict[int, torch.Tensor], dict]:
    """Load one model, capture its residual at its layers (or read the cache), check the shapes read back."""
    start = time.time()
    model = load_model(spec)
    layers = layers_for(model.cfg.n_layers, which, given)
    sites = [Site(layer) for layer in sorted(set(layers))]
    position = content_position(model)
    acts = capture(model, data, sites, position=position, batch_size=32, cache_dir=cache, shard_rows=512)
    x = {s.layer: acts.at(i).double() for i, s in enumerate(sites)}
    for layer, t in x.items():
        if t.shape != (len(data), model.cfg.d_model) or not torch.isfinite(t).all():
            raise RuntimeError(f"{spec} L{layer}: read back {tuple(t.shape)} (finite: {bool(torch.isfinite(t).all())})")
    print(f"{spec}: layers {sorted(x)} in {time.time() - start:.0f} s", flush=True)
    card = {"spec": spec, "n_layers": model.cfg.n_layers, "d_model": model.cfg.d_model, "position": position}
    return fingerprint(model), layers, x, card


def residual(m, a: torch.Tensor, b: torch.Tensor) -> float:
    """``‖a Gᵀ + c − b‖ / ‖b − mean(b)‖``: the share of the target's variation the map leaves."""
    return float(torch.linalg.norm(a @ m.P.T + m.offset - b) / torch.linalg.norm(b - b.mean(0)))


def within_label_perm(y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    perm = torch.arange(len(y))
    for cls in (True, False):
        idx = (y == cls).nonzero().squeeze(1)
        perm[idx] = idx[torch.randperm(len(idx), generator=g)]
    return perm


def with_ci(scores: torch.Tensor, y: torch.Tensor) -> list[float]:
    low, high = bootstrap_ci(auroc, scores, y, n_resamples=1000, seed=SEED)
    return [round(auroc(scores, y), 4), round(low, 4), round(high, 4)]


def floor(x: torch.Tensor, y: torch.Tensor, tr: torch.Tensor, te: torch.Tensor) -> dict:
    q = random_direction_baseline(x[tr], y[tr], x[te], y[te], n_directions=N_RANDOM, seed=SEED)
    return {k: round(q[k], 4) for k in ("mean", "q0.5", "q0.95", "q0.99")}


def one_pair(xs, xb, y, masks, small: int, big: int, fps: list[str], n_layers: list[int]) -> dict:
    tr, va, te = masks
    ss, bs = Site(small).name, Site(big).name
    rep = fit_logistic(xs[tr], y[tr], site=ss, provenance={"model": fps[0]})
    own = fit_logistic(xb[tr], y[tr], site=bs, provenance={"model": fps[1]})

    def fit(a: torch.Tensor, ridge: float):
        return fit_growth_map(
            a, xb[tr], source_site=ss, target_site=bs, source_model=fps[0], target_model=fps[1], ridge=ridge
        )

    ridges = [r for r in RIDGES if r > 0 or int(tr.sum()) > xs.shape[1]]  # plain lstsq needs n > d rows
    val_residual = {r: residual(fit(xs[tr], r), xs[va], xb[va]) for r in ridges}
    best = min(val_residual, key=val_residual.get)
    g = torch.Generator().manual_seed(SEED)
    pairings = {
        "paired": xs[tr],
        "shuffled": xs[tr][torch.randperm(int(tr.sum()), generator=g)],
        "shuffled_within_label": xs[tr][within_label_perm(y[tr], g)],
    }
    maps = []
    for ridge in sorted({ridges[0], best}):
        for name, a in pairings.items():
            m = fit(a, ridge)
            fitted = residual(m, a, xb[tr])
            assert abs(fitted - m.info["residual"]) < 1e-9, (fitted, m.info["residual"])  # the same definition
            moved = m.transport(rep)
            s_moved, s_small = moved(xb[te]), rep(xs[te])
            maps.append(
                {
                    "pairing": name,
                    "ridge": ridge,
                    "residual_train": round(fitted, 4),
                    "residual_val": round(residual(m, xs[va], xb[va]), 4),
                    "residual_test": round(residual(m, xs[te], xb[te]), 4),
                    "transported_auroc": with_ci(s_moved, y[te]),
                    "score_corr_test": round(float(torch.corrcoef(torch.stack([s_moved, s_small]))[0, 1]), 4),
                }
            )
    return {
        "small_site": ss,
        "big_site": bs,
        "relative_depth": [round(small / n_layers[0], 3), round(big / n_layers[1], 3)],
        "ridge_val_residual": {f"{r:g}": round(v, 4) for r, v in val_residual.items()},
        "ridge_chosen_on_val": best,
        "small_auroc": with_ci(rep(xs[te]), y[te]),
        "big_refit_auroc": with_ci(own(xb[te]), y[te]),
        "small_floor": floor(xs, y, tr, te),
        "big_floor": floor(xb, y, tr, te),
        "maps": maps,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/cross_size_map_smollm2_gemma3.json")
    parser.add_argument("--rows", type=int, default=0, help="cap the statements (stratified by split, label); 0: all")
    parser.add_argument("--sites", default="", help="layer pairs 'small:big,...'; default: by relative depth")
    parser.add_argument("--cache", default="runs/cross_size_map/cache")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.time()
    data = load_truth_set("cities", seed=SEED)
    data = data.sample(args.rows, seed=SEED) if args.rows else data
    split = np.asarray(data.column("split"))
    masks = [torch.as_tensor(split == s) for s in ("train", "val", "test")]
    y = data.truth

    given = [tuple(int(v) for v in p.split(":")) for p in args.sites.split(",")] if args.sites else None
    runs = [read(spec, data, which, given, Path(args.cache)) for which, spec in enumerate((SMALL, BIG))]
    fps, layers, xs, cards = (list(t) for t in zip(*runs, strict=True))
    n_layers = [c["n_layers"] for c in cards]
    rows = []
    for small, big in dict.fromkeys(zip(*layers, strict=True)):
        rows.append(one_pair(xs[0][small], xs[1][big], y, masks, small, big, fps, n_layers))
        r = rows[-1]
        head = next(m for m in r["maps"] if m["pairing"] == "paired" and m["ridge"] == r["ridge_chosen_on_val"])
        print(
            f"L{small}->L{big}: small {r['small_auroc'][0]} | transported {head['transported_auroc'][0]} "
            f"| refit {r['big_refit_auroc'][0]} | floor q99 {r['big_floor']['q0.99']} "
            f"| residual train/test {head['residual_train']}/{head['residual_test']}",
            flush=True,
        )
    result = {
        "command": " ".join(["python", *map(shlex.quote, sys.argv)]),
        "wall_s": round(time.time() - start, 1),
        "data": {
            "set": "cities",
            "seed": SEED,
            "rows": len(data),
            "split": "the dataset's own item split (elk_lens.data.truth_datasets.item_split)",
            **{f"n_{s}": int(m.sum()) for s, m in zip(("train", "val", "test"), masks, strict=True)},
        },
        "models": [{**c, "fingerprint": f} for c, f in zip(cards, fps, strict=True)],
        "settings": {"ridges": list(RIDGES), "n_random": N_RANDOM, "seed": SEED, "reporter": "fit_logistic, C=1"},
        "pairs": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {out} ({result['wall_s']} s)")


if __name__ == "__main__":
    main()
