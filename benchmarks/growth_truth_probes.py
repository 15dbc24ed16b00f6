"""The seed protocol's truth-set probes on a grown real LM: reporters fitted on the small model's truth
statements, transported through a growth run's exact map, scored on the grown model's checkpoints
(issue 17 item 7).

    ELK_LENS_CACHE=/tmp/elk_cache python benchmarks/growth_truth_probes.py \\
        --run "plain=runs/growth-smollm2-quirky" "anchored alice=runs/growth-smollm2-quirky-anchor-alice" \\
        --sites 9 15 25 --out benchmarks/results/growth_truth_probes_smollm2.json

The growth analysis transports reporters fitted on its own quirky-task probe rows; these are the truth
datasets' (``el.truth_set("cities")``, its own item split: train rows fit, test rows score, as in
analyses/smollm2_truth.toml, read at the final period). For each small-model layer: a logistic reporter on
the small model, moved with the run's ``GrowthMap`` (``growth_map/``: the conversion, then the growth) to the
grown model, scored at the run's first and last checkpoint beside a reporter refitted there and the
random-direction floor (q99 of 1,000 directions, sign fixed on train rows) at the same site and rows.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

import elk_lens as el
from elk_lens.capturing import content_position
from elk_lens.growth import GrowthMap
from elk_lens.reporters import random_direction_baseline
from elk_lens.trajectory import Trajectory


def read(model, statements, sites: list[str]):
    acts = el.capture(model, statements, sites, position=content_position(model), batch_size=32)
    assert all(acts.at(i).shape == (len(statements), model.cfg.d_model) for i in range(len(sites)))
    return acts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", nargs="+", required=True, help="LABEL=RUN_DIR of growth runs (one small model)")
    parser.add_argument("--sites", nargs="+", type=int, default=[9, 15, 25], help="small-model layers (resid_pre)")
    parser.add_argument("--set", default="cities", help="the truth dataset")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    start = time.perf_counter()
    data = el.truth_set(args.set)
    split = data.column("split")
    train, test = (data.subset(np.asarray(split) == part) for part in ("train", "test"))
    runs = dict(entry.split("=", 1) for entry in args.run)
    small_spec = json.loads((Path(next(iter(runs.values()))) / "manifest.json").read_text())["model_spec"]
    small = el.load_model(small_spec)
    sites = [f"blocks.{layer}.hook_resid_pre" for layer in args.sites]
    a_train, a_test = read(small, train, sites), read(small, test, sites)
    provenance = {"model": el.fingerprint(small)}
    reporters = {
        s: el.fit_logistic(a_train.at(i), train.truth, site=s, provenance=provenance) for i, s in enumerate(sites)
    }
    out = {
        "set": args.set,
        "n": {"train": len(train), "test": len(test)},
        "small": {s: round(el.auroc(r(a_test.at(i)), test.truth), 4) for i, (s, r) in enumerate(reporters.items())},
        "runs": {},
    }
    for label, run in runs.items():
        growth = GrowthMap.load(Path(run) / "growth_map")
        traj = Trajectory.load(Path(run) / "trajectory")
        moved = {s: growth.transport(r) for s, r in reporters.items()}
        grown_sites = [m.site for m in moved.values()]
        for step in (traj.steps[0], traj.steps[-1]):
            model = traj.model_at(traj.steps.index(step))
            g_train, g_test = read(model, train, grown_sites), read(model, test, grown_sites)
            rows = {}
            for i, (s, m) in enumerate(moved.items()):
                refit = el.fit_logistic(g_train.at(i), train.truth, site=m.site)
                floor = random_direction_baseline(g_train.at(i), train.truth, g_test.at(i), test.truth, seed=0)
                rows[f"{s} -> {m.site}"] = {
                    "transported": round(el.auroc(m(g_test.at(i)), test.truth), 4),
                    "refitted": round(el.auroc(refit(g_test.at(i)), test.truth), 4),
                    "floor_q99": round(floor["q0.99"], 4),
                }
            out["runs"].setdefault(label, {})[f"step {step}"] = rows
            print(label, step, json.dumps(rows), flush=True)
    out["seconds"] = round(time.perf_counter() - start, 1)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
