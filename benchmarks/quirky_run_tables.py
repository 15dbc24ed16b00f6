"""Markdown tables of finished quirky-protocol runs (``elk-lens run analyses/smollm2_quirky_s*.toml``), seeds
side by side: the probe by layer against the random floor on the disagreements and the control subset,
the model's output, PGR with intervals, anomaly detection, and the wall time.

    python benchmarks/quirky_run_tables.py runs/smollm2-quirky-s0 runs/smollm2-quirky-s1 [--every 3]

Reads ``metrics.json`` and ``manifest.json`` of each run; computes nothing new.
"""

import argparse
import json
from pathlib import Path

from elk_lens.sites import every_nth


def _fmt(x) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(_fmt(x) for x in r) + " |" for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--every", type=int, default=1, help="show every n-th site (and the last)")
    args = parser.parse_args()
    for run in args.runs:
        m = json.loads((run / "metrics.json").read_text())
        manifest = json.loads((run / "manifest.json").read_text())
        seed = manifest["seeds"]["data"]
        print(f"\n### {run.name} (data seed {seed}; {manifest['wall_seconds']:.0f} s wall)\n")
        output = next(r for r in m["auroc"] if r["scored"].startswith("model output"))
        print("Answer accuracy on the test split:", {k: round(v, 3) for k, v in m["accuracy"].items()}, "\n")
        floor = {(r["site"], r["subset"]): r for r in m["random_floor"]}
        sites = list(dict.fromkeys(r["site"] for r in m["random_floor"]))
        shown = every_nth(sites, args.every)
        rows = []
        for site in shown:
            d, c = floor[(site, "BH_disagree")], floor[(site, "BH_control")]
            rows.append(
                [site, d["probe"], d["random median"], d["random q99"], d["margin over q99"]]
                + [c["probe"], c["random median"], c["random q99"], c["margin over q99"]]
            )
        rows.append(["model output", output["BH_disagree"], "", "", "", output["BH_control"], "", "", ""])
        head = ["site", "BH_disagree probe", "random median", "random q99", "margin"]
        print(table(head + ["BH_control probe", "random median", "random q99", "margin"], rows))
        print("\nSplit layers (probe ≥ 0.90 on BH_disagree, output ≤ 0.10):", m["split_layers"] or "none")
        print("Above the floor on both subsets:", m["split_above_floor"] or "none", "\n")
        pgr = [
            [r["transfer"], r["method"], r["site (EIL)"], r["pgr"], f"[{r['low']:.3f}, {r['high']:.3f}]"]
            for r in m["pgr"]
        ]
        print(table(["transfer", "method", "EIL site", "PGR", "95% CI"], pgr), "\n")
        anomaly = [
            [r["score"], r["auroc"], f"[{r['low']:.3f}, {r['high']:.3f}]", r["trusted rows"]] for r in m["anomaly"]
        ]
        print(table(["anomaly score", "AUROC (AH normal vs BH)", "95% CI", "trusted rows"], anomaly))


if __name__ == "__main__":
    main()
