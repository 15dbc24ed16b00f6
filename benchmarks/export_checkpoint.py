"""Write one checkpoint of a fine-tune's trajectory as a model directory `load_model` reads (`save_model`:
elk-lens's format for a native model, a verified HF directory for an HF-booted one), so that an analysis
can take it as its base model (e.g. analyses/growth_smollm2_quirky_lora.toml grows the quirky LoRA model).

    python benchmarks/export_checkpoint.py runs/smollm2-quirky-lora-s0/trajectory --checkpoint -1 \\
        --out runs/smollm2-quirky-lora-s0/step480

The directory's card records the trajectory, the step and how it was trained. An existing directory is
refused (``save_model`` never replaces what it did not write).
"""

import argparse
import json
from pathlib import Path

from elk_lens.models import fingerprint, save_model
from elk_lens.trajectory import Trajectory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trajectory", type=Path)
    parser.add_argument("--checkpoint", type=int, default=-1, help="checkpoint index (-1: the last)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    traj = Trajectory.load(args.trajectory)
    model = traj.model_at(args.checkpoint)
    step = traj.steps[args.checkpoint]
    card = {"exported_from": str(args.trajectory), "step": step, "training": traj.info}
    path = save_model(model, args.out, card=card)
    print(json.dumps({"out": str(path), "step": step, "fingerprint": fingerprint(model)}, indent=1))


if __name__ == "__main__":
    main()
