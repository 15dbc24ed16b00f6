"""Track a reporter across a directory of checkpoints: its AUROC vs truth at every one, beside a refit.

Run as it is:

    python hooks/track_checkpoints.py runs/drift-quirk-allft/trajectory          # a fine-tune trajectory
    python hooks/track_checkpoints.py ckpts/ --dirs                              # ckpts/step100/, ckpts/step200/, ...

The reporter is fitted at the first checkpoint (logistic, Alice-easy statements) at ``--site`` and kept
fixed; at each checkpoint the script also refits one, and scores both on Bob-hard disagreements of
the quirky test split (or ``--data``: a CSV/JSONL of your own statements, even rows fit and odd rows
score). Activations come through ``elk_lens.capturing``'s hooks. Checkpoints of another architecture
are refused (a grown model needs its growth map: see the growth analysis).
"""

import argparse
import json
from pathlib import Path

import numpy as np

import elk_lens as el


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "path", type=Path, help="a trajectory directory (trajectory.json), or with --dirs a parent of model dirs"
    )
    p.add_argument(
        "--dirs", action="store_true", help="path holds one model directory per checkpoint, step in each name"
    )
    p.add_argument("--site", default="blocks.3.hook_resid_pre")
    p.add_argument("--data", default="quirky", help="'quirky' or a CSV/JSONL with text and label columns")
    p.add_argument("--rows", type=int, default=2000, help="base rows for --data quirky")
    p.add_argument("--out", type=Path, help="also write the table to this JSON file")
    args = p.parse_args(argv)
    try:  # bad values end here, with the argument named, not after the first checkpoint is loaded
        if not args.path.is_dir():
            raise ValueError(
                f"path {str(args.path)!r} is not a directory (a trajectory, or with --dirs a parent "
                "of model directories)"
            )
        el.Site.parse(args.site)
        el.check_number("--rows", args.rows, kind=int, low=1)
        if args.out is not None and args.out.is_dir():
            raise ValueError(f"--out {str(args.out)!r} is a directory; give a JSON file name")
    except ValueError as e:
        p.error(str(e))
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.dirs:
        children = sorted((d for d in args.path.iterdir() if d.is_dir()), key=lambda d: d.name)
        traj = el.Trajectory.from_dirs(children)
    else:
        traj = el.Trajectory.load(args.path)
    if args.data == "quirky":
        train = el.quirky_arithmetic(args.rows, split="val").where(character="Alice", easy=True)
        test = el.quirky_arithmetic(args.rows, split="test").where(character="Bob", hard=True, disagreement=True)
    else:
        data = el.load_statements(args.data)  # even rows fit the reporter, odd rows score it
        train, test = data.subset(np.arange(0, len(data), 2)), data.subset(np.arange(1, len(data), 2))
    rows, first = [], None
    for i, step in enumerate(traj.steps):
        model = traj.model_at(i)
        fitted = el.fit_logistic(el.capture(model, train, [args.site]).at(0), train.truth, site=args.site)
        first = first or fitted
        x = el.capture(model, test, [args.site]).at(0)
        rows.append(
            {
                "step": step,
                "first reporter": round(el.auroc(first(x), test.truth), 4),
                "refitted": round(el.auroc(fitted(x), test.truth), 4),
            }
        )
        print(json.dumps(rows[-1]))
    if args.out is not None:
        el.atomic_write_text(args.out, json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
