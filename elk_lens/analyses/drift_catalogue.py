"""One table across drift runs: the step-0 reporter's AUROC at the end of each scenario, beside the rest.

.venv/bin/python -m elk_lens.analyses.drift_catalogue runs/   # writes runs/drift_catalogue.{csv,html}
"""

import json
import sys
from pathlib import Path

from elk_lens._atomic import atomic_write_text
from elk_lens._csv import write_csv
from elk_lens.drift_result import DriftResult
from elk_lens.report.pages.drift import catalogue_html
from elk_lens.sites import Site

__all__ = ["catalogue_rows", "write_catalogue"]


def catalogue_rows(runs_root: Path, *, site: Site | str = "blocks.3.hook_resid_pre") -> list[dict]:
    """A row per finished drift run under ``runs_root`` (any depth), sorted by run name."""
    rows = []
    for manifest_path in sorted(Path(runs_root).rglob("manifest.json")):
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("analysis") != "drift":
            continue
        m = json.loads((manifest_path.parent / "metrics.json").read_text())
        d = DriftResult.from_dict(m)
        s, method = manifest["settings"], d.methods[0]
        rows.append(
            {
                "run": manifest["name"],
                "labels": s["train.labels"],
                "frozen": " ".join(s["train.frozen"]) or "-",
                "lr": s["train.lr"],
                "steps": s["train.steps"],
                "seed": s["train.seed"],
                "anchor": s["anchor.on"],
                "Bob acc": round(m["final_accuracy"]["Bob vs the trained labels"], 4),
                "method": method,
                "step-0 reporter at end": d.auroc(method, site, "BH_disagree", reporter="initial")[-1],
                "refitted at end": d.auroc(method, site, "BH_disagree")[-1],
                "output at end": d.output_auroc["BH_disagree"][-1],
                "cos v to step 0": d.cos_v_series(site)[-1],
                "cos v floor q05": d.floor("cos_v", site)["q05"],
            }
        )
    return rows


def write_catalogue(runs_root: Path) -> Path:
    rows = catalogue_rows(runs_root)
    if not rows:
        raise FileNotFoundError(f"no finished drift runs under {runs_root}")
    root = Path(runs_root)
    write_csv(root / "drift_catalogue.csv", rows)
    atomic_write_text(root / "drift_catalogue.html", catalogue_html(rows))
    return root / "drift_catalogue.html"


if __name__ == "__main__":
    print(write_catalogue(Path(sys.argv[1] if len(sys.argv) > 1 else "runs")))
