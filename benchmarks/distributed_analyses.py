"""Whole analyses under ``torchrun``: ``elk-lens run SPEC`` once as one process and once as two (gloo, one
torch thread each), on small scenarios of four analyses; the two runs' files must be equal (issue 19, item 2;
a script, not a test).

Every stage file is compared — tensor stages byte for byte, JSON stages' results with the wall-time fields
(``seconds``, ``capture_s``, ...) left out, since a time is not a result — and so are the CSV tables. The
launch's wall time (start-up included) and each stage's seconds (the manifest's) are reported for both.

    .venv/bin/python benchmarks/distributed_analyses.py --out benchmarks/results/distributed_analyses.json
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from safetensors.torch import load_file

SPECS = {
    "quirky_elk": """
name = "quirky"
analysis = "quirky_elk"
[model]
spec = "zoo:quirky-arith"
[data]
train_rows = 3000
test_rows = 800
[capture]
batch_size = 256
[causal]
test_rows = 400
n_random = 4
""",
    "drift": """
name = "drift"
analysis = "drift"
[train]
rows = 400
steps = 8
batch_size = 16
[drift]
methods = ["logistic", "mean_diff"]
eval_rows = 300
probe_rows = 1500
""",
    "circuits": """
name = "circuits"
analysis = "circuits"
[train]
rows = 200
steps = 4
batch_size = 16
[drift]
probe_rows = 800
[circuits]
pairs = 16
ig_steps = 2
""",
    "truth_generalization": """
name = "truth"
analysis = "truth_generalization"
[model]
spec = "zoo:minilm"
[data]
sets = ["cities", "neg_cities", "larger_than", "element_symb", "neg_element_symb"]
max_rows = 200
[probe]
methods = ["logistic", "mean_diff", "ccs", "ttpd"]
[eval]
n_boot = 200
""",
}
TIMES = ("seconds", "capture_s", "fit_s", "wall_s")  # JSON keys that hold a wall time


def _untimed(x: object) -> object:
    if isinstance(x, dict):
        return {k: _untimed(v) for k, v in x.items() if k not in TIMES}
    if isinstance(x, list):
        return [_untimed(v) for v in x]
    return x


def _files(run: Path) -> dict[str, object]:
    """What the run computed: its stages (results, untimed) and tables."""
    out: dict[str, object] = {}
    for f in sorted((run / "stages").iterdir()):
        if f.suffix == ".safetensors":
            out[f.name] = {k: v.numpy().tobytes().hex() for k, v in load_file(str(f)).items()}
        else:
            out[f.name] = json.dumps(_untimed(json.loads(f.read_text())["result"]), sort_keys=True)
    for f in sorted(run.glob("*.csv")):
        out[f.name] = f.read_text()
    return out


def launch(processes: int, spec: Path, runs: Path) -> dict:
    command = [sys.executable, "-m", "elk_lens.cli", "run", str(spec), "--runs", str(runs)]
    if processes > 1:  # torchrun runs the module given after its own options
        command[1:1] = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
    t0 = time.perf_counter()
    subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    (run,) = [d for d in runs.iterdir() if d.is_dir()]
    manifest = json.loads((run / "manifest.json").read_text())
    return {"launch_wall_s": round(wall, 2), "stage_seconds": manifest["stage_seconds"], "files": _files(run)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--analyses", nargs="+", default=list(SPECS), choices=list(SPECS))
    ap.add_argument("--out", type=Path)
    ap.add_argument("--keep", type=Path, help="copy both runs of every analysis here, for inspection")
    args = ap.parse_args()
    result = {"conditions": {"cpu count": os.cpu_count(), "threads per process": 1}, "analyses": {}}
    for name in args.analyses:
        with tempfile.TemporaryDirectory() as tmp:
            spec = Path(tmp) / f"{name}.toml"
            spec.write_text(SPECS[name])
            got = {n: launch(n, spec, Path(tmp) / f"runs{n}") for n in (1, 2)}
            if args.keep:
                shutil.copytree(tmp, args.keep / name)
        one, two = got[1], got[2]
        differ = sorted(
            k for k in one["files"].keys() | two["files"].keys() if one["files"].get(k) != two["files"].get(k)
        )
        row = {
            "spec": SPECS[name],
            "equal files": not differ,
            "differing files": differ,
            "compared files": sorted(one["files"]),
            "launch wall s, 1 process": one["launch_wall_s"],
            "launch wall s, 2 processes": two["launch_wall_s"],
            "speed-up, launch": round(one["launch_wall_s"] / two["launch_wall_s"], 3),
            "stage seconds, 1 process": one["stage_seconds"],
            "stage seconds, 2 processes": two["stage_seconds"],
        }
        result["analyses"][name] = row
        print(name, json.dumps({k: v for k, v in row.items() if k not in ("spec", "compared files")}), flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
