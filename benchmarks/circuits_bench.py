"""Circuit-scoring speed and quality on the quirky-arithmetic zoo model (a script, not a test).

Scores every component upstream of ``blocks.3.hook_resid_pre`` (embed, 12 heads, 3 MLPs) for N
contrast pairs (same a + b, shown = sum vs shown = sloppy sum, said by Alice) with direct attribution
(both halves), attribution patching and exact patching, and prints the wall time of each. The goal is
<= 60 s for all three at N = 1024 on 2 CPU cores.

With ``--edge-pairs K`` (default 128) it also scores every edge (EAP, EAP-IG and exact edge
patching, one forward per edge) on the first K pairs.

It also prints what the scores are worth: Spearman(AP, exact) and Spearman(AP-IG, exact) over
components (per-pair-averaged scores), the direct-attribution identity error, and the faithfulness
curve / smallest circuit at F >= 0.8 under twin and mean ablation (components ordered by exact scores).

    .venv/bin/python benchmarks/circuits_bench.py [--pairs 1024] [--threads 2] [--ig-steps 4] [--json out.json]
"""

import argparse
import json
import time

import torch

from elk_lens.capturing import capture
from elk_lens.circuits import (
    attribution_patching,
    direct_attribution,
    edge_attribution_patching,
    exact_edge_patching,
    exact_patching,
    mean_scores,
    smallest_circuit,
    spearman,
)
from elk_lens.models import fingerprint, load_model
from elk_lens.quirky.data import quirky_arithmetic
from elk_lens.quirky.twins import sum_vs_sloppy_pairs
from elk_lens.reporters import fit_logistic

SITE = "blocks.3.hook_resid_pre"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ig-steps", type=int, default=4)
    parser.add_argument("--edge-pairs", type=int, default=128, help="pairs for the edge scores (0: skip them)")
    parser.add_argument("--model", default="zoo:quirky-arith")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = load_model(args.model)
    train = quirky_arithmetic(2000, split="val", seed=0).where(character="Alice", easy=True)
    x = capture(model, train, [SITE]).at(0)
    reporter = fit_logistic(x, train.truth, site=SITE, provenance={"model": fingerprint(model)})
    clean, corrupt = sum_vs_sloppy_pairs(args.pairs, split="test", seed=0)
    print(f"{args.model} float32, {torch.get_num_threads()} threads, {len(clean)} pairs, site {SITE}")
    print(f"reporter: logistic on {len(train)} Alice-easy val statements; e.g. {clean[0]!r} vs {corrupt[0]!r}")

    (da_clean, da_corrupt), t_da = timed(
        lambda: (direct_attribution(model, reporter, clean), direct_attribution(model, reporter, corrupt))
    )
    ap, t_ap = timed(lambda: attribution_patching(model, reporter, clean, corrupt))
    exact, t_exact = timed(lambda: exact_patching(model, reporter, clean, corrupt))
    total = t_da + t_ap + t_exact
    print(f"time: DA (both halves) {t_da:.2f} s, AP {t_ap:.2f} s, exact {t_exact:.2f} s; total {total:.2f} s")
    ig, t_ig = timed(lambda: attribution_patching(model, reporter, clean, corrupt, ig_steps=args.ig_steps))
    print(f"time: AP-IG ({args.ig_steps} steps) {t_ig:.2f} s (not in the total)")

    score = reporter(capture(model, clean, [SITE]).at(0))
    identity = float((sum(da_clean.values()) + reporter.b - score).abs().max())
    da_effect = {n: da_corrupt[n] - da_clean[n] for n in exact}  # direct part of the same change
    rho = {"AP": spearman(ap, exact), f"AP-IG{args.ig_steps}": spearman(ig, exact), "DA": spearman(da_effect, exact)}
    print(f"DA identity max |sum(DA) + b - score| (float32 model): {identity:.2e}")
    print("Spearman vs exact over components: " + ", ".join(f"{k} {v:.3f}" for k, v in rho.items()))

    table = {k: mean_scores(v) for k, v in {"exact": exact, "AP": ap, "AP-IG": ig, "DA": da_effect}.items()}
    print(f"{'component':>10} " + " ".join(f"{k:>8}" for k in table))
    for name in exact:
        print(f"{name:>10} " + " ".join(f"{table[k][name]:8.3f}" for k in table))

    circuits = {}
    for ablation in ("twin", "mean"):
        circuit, t_c = timed(lambda a=ablation: smallest_circuit(exact, model, reporter, clean, corrupt, ablation=a))
        circuits[ablation] = circuit
        print(
            f"{ablation} ablation ({t_c:.1f} s): M_diff {circuit.m_diff:.3f}, smallest circuit at F >= 0.8: "
            f"{circuit.size} of {len(circuit.order)} {list(circuit.components)}"
        )
        print("  F curve (k = 0..n): " + " ".join(f"{f:.2f}" for f in circuit.curve.tolist()))

    edge_numbers = {}
    if args.edge_pairs:
        c, k = clean[: args.edge_pairs], corrupt[: args.edge_pairs]
        eap, t_eap = timed(lambda: edge_attribution_patching(model, reporter, c, k))
        eap_ig, t_eap_ig = timed(lambda: edge_attribution_patching(model, reporter, c, k, ig_steps=args.ig_steps))
        exact_e, t_exact_e = timed(lambda: exact_edge_patching(model, reporter, c, k))
        edge_numbers = {
            "pairs": len(c),
            "edges": len(exact_e),
            "seconds": {"eap": t_eap, "eap_ig": t_eap_ig, "exact": t_exact_e},
            "spearman": {"EAP": spearman(eap, exact_e), f"EAP-IG{args.ig_steps}": spearman(eap_ig, exact_e)},
        }
        top = sorted(exact_e, key=lambda e: -abs(float(exact_e[e].mean())))[:8]
        print(
            f"edges ({len(exact_e)}, {len(c)} pairs): EAP {t_eap:.1f} s, EAP-IG{args.ig_steps} {t_eap_ig:.1f} s, "
            f"exact {t_exact_e:.1f} s; Spearman vs exact: "
            + ", ".join(f"{n} {v:.3f}" for n, v in edge_numbers["spearman"].items())
        )
        print("  top edges by |exact|: " + ", ".join(f"{e} {float(exact_e[e].mean()):.2f}" for e in top))

    if args.json:
        out = {
            "pairs": len(clean),
            "threads": torch.get_num_threads(),
            "seconds": {"da": t_da, "ap": t_ap, "exact": t_exact, "total": total, "ap_ig": t_ig},
            "identity_error": identity,
            "spearman": rho,
            "mean_scores": table,
            "circuits": {
                a: {"size": c.size, "components": list(c.components), "curve": c.curve.tolist(), "m_diff": c.m_diff}
                for a, c in circuits.items()
            },
            "edges": edge_numbers,
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
