"""The random-direction floor under the anchoring table: how well do random readouts of the same residual
read truth on the drift analysis's own evaluation subsets?

On the hemisphere task the Bob-hard disagreements are (north and east) vs (south and west) cities, and the
control rows (north and west) vs (south and east): both are continents apart, so many directions separate
them. The drift analysis reports reporter AUROCs without this floor; this script measures it at the anchored
site and one below, on the models kept on this machine: the base model (every run's step 0) and the last
checkpoint of each fine-tune given (plain or anchored), or its checkpoints at ``--steps``. Directions are drawn as in
``elk_lens.reporters.random_direction_baseline`` (sign fixed on the reporters' own training rows, the
scenario's Alice-easy probe set; never on the rows scored), 1,000 per cell.

    python benchmarks/anchoring_floor.py --spec analyses/drift_smollm2_quirky.toml \
        --sites blocks.24.hook_resid_pre blocks.25.hook_resid_pre \
        --trajectory "plain seed0=runs/anchoring/smollm2_quirky-none-seed0/trajectory" \
        "plain seed1=runs/smollm2-quirky-lora-s1/trajectory" --steps 16 480 \
        --out benchmarks/results/anchoring_floor_smollm2.json

On a growth run (analyses/growth_smollm2_quirky*.toml) the sites are the grown model's, so ``--no-base``
leaves out the small model, whose layer numbers differ; the trajectory's step 0 is the grown model.

Beside each floor it prints the AUROC of a logistic reporter fitted on that model's probe rows (the drift
analysis's "refit"), so the margin over the floor can be read off the same rows.
"""

import argparse
import json
from pathlib import Path

from elk_lens.analyses.scenario import Scenario
from elk_lens.capturing import capture
from elk_lens.metrics import auroc
from elk_lens.models import load_model
from elk_lens.reporters import fit_logistic, random_direction_baseline
from elk_lens.runner import load_spec
from elk_lens.trajectory import Trajectory

SUBSETS = ("BH_disagree", "BH_control")


def floors(model, scenario: Scenario, sites: list[str]) -> dict:
    """Per site and subset: the floor's median, 95th and 99th percentiles and the refitted reporter's AUROC."""
    probe = scenario.probe_set
    train = capture(model, probe, sites, batch_size=32)
    evals = {name: scenario.eval_sets[name] for name in SUBSETS}
    acts = {name: capture(model, s, sites, batch_size=32) for name, s in evals.items()}
    out = {}
    for i, site in enumerate(sites):
        reporter = fit_logistic(train.at(i), probe.truth, site=site)
        for name, s in evals.items():
            floor = random_direction_baseline(train.at(i), probe.truth, acts[name].at(i), s.truth, seed=0)
            out.setdefault(site, {})[name] = {
                "n": len(s),
                "refit": round(auroc(reporter(acts[name].at(i)), s.truth), 4),
                **{q: round(floor[q], 4) for q in ("q0.5", "q0.95", "q0.99")},
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=Path("analyses/drift_smollm2_quirky.toml"))
    parser.add_argument("--sites", nargs="+", default=["blocks.24.hook_resid_pre", "blocks.25.hook_resid_pre"])
    parser.add_argument("--trajectory", nargs="*", default=[], help="LABEL=TRAJECTORY_DIR of fine-tunes to measure")
    parser.add_argument("--steps", nargs="*", type=int, default=[], help="checkpoints' steps (default: the last)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--no-base", action="store_true", help="skip the base model (a growth run's sites are the grown model's)"
    )
    args = parser.parse_args()
    spec, _ = load_spec(args.spec)
    scenario = Scenario(spec)
    results = {} if args.no_base else {"step 0 (base model)": floors(load_model(spec.model.base), scenario, args.sites)}
    for entry in args.trajectory:
        label, path = entry.split("=", 1)
        traj = Trajectory.load(path)
        for step in args.steps or traj.steps[-1:]:
            model = traj.model_at(traj.steps.index(step))
            results[f"{label}, step {step}"] = floors(model, scenario, args.sites)
            print(json.dumps(results, indent=1), flush=True)
    args.out.write_text(json.dumps({"spec": str(args.spec), "floors": results}, indent=2) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
