"""Markdown tables of a finished ``truth_generalization`` run on a real LM: per dataset, the probe at the
layer chosen on val beside the model's own answers, the random floor at that layer, the read positions,
and the run's wall time. What docs/real-models.md quotes.

    python benchmarks/real_lm_tables.py runs/smollm2-truth runs/gemma3-truth
"""

import argparse
import json
from pathlib import Path


def _ci(auroc: float, low: float, high: float) -> str:
    return f"{auroc:.3f} [{low:.3f}, {high:.3f}]"


def tables(run: Path) -> str:
    metrics = json.loads((run / "metrics.json").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    floor = {(r["dataset"], r["site"]): r for r in metrics["floor"]}
    answers = {(a["dataset"], a["prompt"]): a for a in metrics["answers"]}
    prompts = list(dict.fromkeys(a["prompt"] for a in metrics["answers"]))
    asked = ["probe > every prompt"] if prompts else []  # a run without [answer] prompts has no gap to judge
    head = ["dataset", "probe layer (val)", "probe AUROC [95% CI]", "random q95", *prompts, *asked]
    lines = [f"### {manifest['model_spec']} ({run.name})", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    gap = {g["dataset"]: g for g in metrics["gap"]}
    for r in metrics["chosen"]:
        if r["method"] != "logistic" or r["train"] != r["test"]:
            continue
        q95 = floor[(r["test"], r["site"])]["q0.95"]
        cells = [
            r["test"],
            r["site"].replace("blocks.", "L").replace(".hook_", " "),
            _ci(r["auroc"], r["ci_low"], r["ci_high"]),
            f"{q95:.3f}",
        ]
        for p in prompts:
            a = answers.get((r["test"], p))
            cells.append(_ci(a["auroc"], a["ci_low"], a["ci_high"]) + f" (says True {a['says_true']:.0%})" if a else "")
        if asked:
            cells.append("yes" if gap.get(r["test"], {}).get("knows_more") else "no")
        lines.append("| " + " | ".join(cells) + " |")
    for position, rows in metrics.get("positions", {}).items():
        own = {x["test"]: x for x in rows if x["train"] == x["test"]}
        base = {x["test"]: x for x in metrics["chosen"] if x["method"] == "logistic" and x["train"] == x["test"]}
        lines += [
            "",
            f"Read position: final period vs `{position}` (logistic, layer chosen on val):",
            "",
            "| dataset | final period | " + position + " |",
            "|---|---|---|",
        ]
        lines += [
            f"| {t} | {_ci(base[t]['auroc'], base[t]['ci_low'], base[t]['ci_high'])} | "
            f"{_ci(o['auroc'], o['ci_low'], o['ci_high'])} |"
            for t, o in own.items()
        ]
    stages = manifest["stage_seconds"]
    lines += [
        "",
        f"Wall time {manifest['wall_seconds'] / 60:.1f} min (resumed stages: "
        f"{manifest['resumed_stages'] or 'none'}); per stage (s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in stages.items()),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    for run in parser.parse_args().runs:
        print(tables(run), end="\n\n")


if __name__ == "__main__":
    main()
