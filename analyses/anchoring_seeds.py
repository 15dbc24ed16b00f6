"""Plain vs concept-anchored fine-tuning over seeds: runs the drift analysis per (scenario, anchor, seed).

    .venv/bin/python analyses/anchoring_seeds.py [--scenarios quirk_allft quirk_flip] [--weights 1] [--seeds 0 1 2]
        [--site blocks.3.hook_resid_pre] [--write-only]

Each run is `elk-lens run` of `analyses/drift_<scenario>.toml` with the seed and the anchor set, into
`runs/anchoring/<scenario>-<anchor>-seed<S>/` (resumable). The table printed at the end (and written to
runs/anchoring/summary-<scenarios>.json) holds, at the last checkpoint: Bob's and Alice's accuracy on
their trained labels, the last batch's and the held-out answer loss, and the AUROC vs truth on Bob-hard
disagreements of the base reporter (fitted at step 0) and of a refitted one, at the anchored site and
one layer below. ``--write-only`` writes the specs and stops, for running them as parallel ``elk-lens run``
processes (``--device cuda`` where there is a GPU); a second call with ``--read-only`` then reads the
finished runs without resuming them.
"""

import argparse
import json
import re
import sys
from dataclasses import replace
from pathlib import Path

from elk_lens.runner import run_analysis
from elk_lens.sites import Site

ROOT = Path(__file__).resolve().parent
ANCHOR = '\n[anchor]\non = "{on}"\nweight = {weight}\nsite = "{site}"\n'


def run_name(scenario: str, anchor: str, seed: int, weight: float) -> str:
    suffix = "" if anchor == "none" or weight == 1.0 else f"-w{weight:g}"
    return f"{scenario}-{anchor}{suffix}-seed{seed}"


def spec_text(scenario: str, anchor: str, seed: int, weight: float, site: str) -> str:
    text = (ROOT / f"drift_{scenario}.toml").read_text()
    text = re.sub(r"^seed = \d+", f"seed = {seed}", text, flags=re.M)
    text = re.sub(r'^name = ".*"', f'name = "{run_name(scenario, anchor, seed, weight)}"', text, flags=re.M)
    text += ANCHOR.format(on=anchor, weight=weight, site=site)
    return text if "\n[drift]" in text else text + '\n[drift]\nmethods = ["logistic"]\n'


def summarize(run: Path, site: str) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    end = -1
    out = {
        "bob_acc": m["final_accuracy"]["Bob vs the trained labels"],
        "alice_acc": m["final_accuracy"]["Alice vs the trained labels"],
        "label_loss_end": m["fine_tune"]["history"][-1]["loss"],
        "held_out_loss_end": list(m["task_loss"].values())[-1],
    }
    anchored = Site.parse(site)
    below = replace(anchored, layer=anchored.layer - 1).name
    for at in (below, anchored.name):
        out[f"base reporter {at}"] = m["auroc_initial"]["logistic"][at]["BH_disagree"][end]
        out[f"refit {at}"] = m["auroc_refit"]["logistic"][at]["BH_disagree"][end]
        out[f"base reporter min over steps {at}"] = min(m["auroc_initial"]["logistic"][at]["BH_disagree"])
    control = m["auroc_initial"]["logistic"][anchored.name]["BH_control"]
    out[f"base reporter on control, {anchored.name}"] = control[end]
    out[f"base reporter on control, min over steps, {anchored.name}"] = min(control)
    out["output on BH_disagree"] = m["output_auroc"]["BH_disagree"][end]
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
    parser.add_argument("--site", default="blocks.3.hook_resid_pre", help="the anchored site")
    parser.add_argument("--write-only", action="store_true", help="write the specs, run nothing")
    parser.add_argument(
        "--read-only", action="store_true", help="summarize finished runs (e.g. run elsewhere with --device cuda)"
    )
    args = parser.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    rows = []
    for scenario in args.scenarios:
        for seed in args.seeds:
            for anchor in args.anchors:
                for weight in [1.0] if anchor == "none" else args.weights:
                    name = run_name(scenario, anchor, seed, weight)
                    spec = args.runs / f"{name}.toml"
                    if args.read_only:
                        run = args.runs / name
                    else:
                        spec.write_text(spec_text(scenario, anchor, seed, weight, args.site))
                        if args.write_only:
                            print(spec)
                            continue
                        run = run_analysis(spec, runs_root=args.runs)
                    row = {"scenario": scenario, "anchor": anchor, "weight": weight, "seed": seed}
                    rows.append({**row, **summarize(run, args.site)})
                    print(json.dumps(rows[-1]), flush=True)
    if args.write_only:
        return
    tag = "-".join(args.scenarios + [f"w{w:g}" for w in args.weights if w != 1.0])
    (args.runs / f"summary-{tag}.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    sys.exit(main())
