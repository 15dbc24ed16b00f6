"""A markdown table of a finished drift run at a few sites: how far the truth direction moved (cosine to
step 0 beside its noise floor), how the step-0 reporter and a refitted one read the truth on the Bob-hard
disagreements and the control, and the representation's CKA to step 0 beside its floor.

    python benchmarks/drift_run_table.py runs/anchoring/smollm2_quirky-none-seed0 --sites 1 13 25 29

Reads ``metrics.json`` and ``manifest.json``; computes nothing new. ``--sites`` are block numbers (each
block's input residual; the last block's number also adds its output).
"""

import argparse
import json
from pathlib import Path

from quirky_run_tables import table  # benchmarks/, on the path when a script here runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--sites", nargs="+", type=int, default=[1])
    parser.add_argument("--method", default="logistic")
    args = parser.parse_args()
    m = json.loads((args.run / "metrics.json").read_text())
    manifest = json.loads((args.run / "manifest.json").read_text())
    method = args.method
    print(
        f"{args.run.name}: steps {m['steps'][0]}..{m['steps'][-1]} ({len(m['steps'])} checkpoints), "
        f"{manifest['wall_seconds']:.0f} s wall; stage seconds {manifest['stage_seconds']}"
    )
    print("final accuracy:", {k: round(v, 3) for k, v in m["final_accuracy"].items()})
    print("held-out answer loss:", {k: round(v, 4) for k, v in m["task_loss"].items()})
    out = m["output_auroc"]
    print("output AUROC vs truth, first -> last:", {k: (round(v[0], 3), round(v[-1], 3)) for k, v in out.items()})
    names = [f"blocks.{b}.hook_resid_pre" for b in args.sites]
    last = max(args.sites)
    if f"blocks.{last}.hook_resid_post" in m["sites"]:
        names.append(f"blocks.{last}.hook_resid_post")
    head = [
        "site",
        "cos(w, w0) end",
        "floor q05",
        "step-0 reporter BH_disagree first / min / end",
        "refit BH_disagree end",
        "step-0 reporter BH_control end",
        "refit BH_control end",
        "CKA to step 0 end",
    ]
    rows = []
    for site in names:
        cos = m["cos_w"][method][site]["to_first"][-1]
        floor = m["floors"]["cos_w"][method][site]["q05"]
        initial, refit = m["auroc_initial"][method][site], m["auroc_refit"][method][site]
        d = initial["BH_disagree"]
        cells = [
            site,
            f"{cos:.3f}",
            f"{floor:.3f}",
            f"{d[0]:.3f} / {min(d):.3f} / {d[-1]:.3f}",
            f"{refit['BH_disagree'][-1]:.3f}",
            f"{initial['BH_control'][-1]:.3f}",
            f"{refit['BH_control'][-1]:.3f}",
            f"{m['cka_to_first'][site][-1]:.3f}",
        ]
        rows.append(cells)
    print("\n" + table(head, rows))


if __name__ == "__main__":
    main()
