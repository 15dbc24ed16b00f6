"""Plain vs concept-anchored fine-tuning over seeds: runs the drift analysis per (scenario, anchor, seed).

    .venv/bin/python analyses/anchoring_seeds.py [--scenarios quirk_allft quirk_flip] [--weights 1] [--seeds 0 1 2]

Each run is `elk-lens run` of `analyses/drift_<scenario>.toml` with the seed and the anchor set, into
`runs/anchoring/<scenario>-<anchor>-seed<S>/` (resumable). The table printed at the end (and written to
runs/anchoring/summary-<scenarios>.json) holds, at the last checkpoint: Bob's and Alice's accuracy on
their trained labels, the last batch's and the held-out answer loss, and the AUROC vs truth on Bob-hard
disagreements of the base reporter (fitted at step 0) and of a refitted one, at the anchored site and
one layer below.
"""

import argparse
import json
import re
import sys
from pathlib import Path

from elk_lens.runner import run_analysis

ROOT = Path(__file__).resolve().parent
ANCHOR = '\n[anchor]\non = "{on}"\nweight = {weight}\nsite = "blocks.3.hook_resid_pre"\n'


def run_name(scenario: str, anchor: str, seed: int, weight: float) -> str:
    suffix = "" if anchor == "none" or weight == 1.0 else f"-w{weight:g}"
    return f"{scenario}-{anchor}{suffix}-seed{seed}"


def spec_text(scenario: str, anchor: str, seed: int, weight: float) -> str:
    text = (ROOT / f"drift_{scenario}.toml").read_text()
    text = re.sub(r"^seed = \d+", f"seed = {seed}", text, flags=re.M)
    text = re.sub(r'^name = ".*"', f'name = "{run_name(scenario, anchor, seed, weight)}"', text, flags=re.M)
    return text + ANCHOR.format(on=anchor, weight=weight) + '\n[drift]\nmethods = ["logistic"]\n'


def summarize(run: Path) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    end = -1
    out = {
        "bob_acc": m["final_accuracy"]["Bob vs the trained labels"],
        "alice_acc": m["final_accuracy"]["Alice vs the trained labels"],
        "label_loss_end": m["fine_tune"]["history"][-1]["loss"],
        "held_out_loss_end": list(m["task_loss"].values())[-1],
    }
    for site in ("blocks.2.hook_resid_pre", "blocks.3.hook_resid_pre"):
        out[f"base reporter {site}"] = m["auroc_initial"]["logistic"][site]["BH_disagree"][end]
        out[f"refit {site}"] = m["auroc_refit"]["logistic"][site]["BH_disagree"][end]
        out[f"base reporter min over steps {site}"] = min(m["auroc_initial"]["logistic"][site]["BH_disagree"])
    out["base reporter on control, blocks.3.hook_resid_pre"] = m["auroc_initial"]["logistic"][
        "blocks.3.hook_resid_pre"
    ]["BH_control"][end]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", nargs="+", default=["quirk_allft", "quirk_flip"])
    parser.add_argument("--anchors", nargs="+", default=["none", "all", "alice"])
    parser.add_argument(
        "--weights",
        nargs="+",
        type=float,
        default=[1.0],
        help="anchor weights (lambda); the plain run is made once per seed",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--runs", type=Path, default=Path("runs/anchoring"))
    args = parser.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    rows = []
    for scenario in args.scenarios:
        for seed in args.seeds:
            for anchor in args.anchors:
                for weight in [1.0] if anchor == "none" else args.weights:
                    spec = args.runs / f"{run_name(scenario, anchor, seed, weight)}.toml"
                    spec.write_text(spec_text(scenario, anchor, seed, weight))
                    run = run_analysis(spec, runs_root=args.runs)
                    row = {"scenario": scenario, "anchor": anchor, "weight": weight, "seed": seed}
                    rows.append({**row, **summarize(run)})
                    print(json.dumps(rows[-1]), flush=True)
    tag = "-".join(args.scenarios + [f"w{w:g}" for w in args.weights if w != 1.0])
    (args.runs / f"summary-{tag}.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    sys.exit(main())
