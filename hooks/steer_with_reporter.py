"""Steer a model along a saved reporter's truth direction and print how its answers move.

Run as it is:

    python hooks/steer_with_reporter.py --reporter my_reporter/ --alpha 1.0            # zoo:quirky-arith
    python hooks/steer_with_reporter.py --fit blocks.3.hook_resid_post --save-reporter my_reporter/

The reporter (``Reporter.save`` format) is checked against the model's fingerprint. The steering vector
is its concept vector ``v`` (a residual-stream vector, the class-mean difference of its training data)
times ``alpha``, added at the reporter's site on each statement's last token through
``elk_lens.steer``, a hook context manager that fails loudly on a missing hook. Printed and written
(``--out``, JSON): the mean answer log-odds (True minus False) on true and on false statements, without
and with the edit, on the quirky test split said by ``--character``.
"""

import argparse
import json
from pathlib import Path

import elk_lens as el


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="zoo:quirky-arith", help="zoo:NAME, a local directory or a hub name")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--reporter", type=Path, help="a saved reporter directory")
    src.add_argument("--fit", metavar="SITE", help="fit a mean-difference reporter on Alice-easy statements here")
    p.add_argument("--save-reporter", type=Path, help="with --fit: where to save the fitted reporter")
    p.add_argument("--alpha", type=float, default=1.0, help="multiple of the concept vector to add")
    p.add_argument("--rows", type=int, default=300, help="base rows of the quirky test split")
    p.add_argument("--character", default="Bob", choices=["Alice", "Bob"])
    p.add_argument("--out", type=Path, help="also write the numbers to this JSON file")
    args = p.parse_args(argv)
    try:  # bad values end here, with the flag named, not after the model is loaded
        if args.fit is not None:
            el.Site.parse(args.fit)
        elif args.save_reporter is not None:
            raise ValueError("--save-reporter saves a reporter fitted with --fit; --reporter is already saved")
        el.check_number("--alpha", args.alpha)
        el.check_number("--rows", args.rows, kind=int, low=1)
        if args.out is not None and args.out.is_dir():
            raise ValueError(f"--out {str(args.out)!r} is a directory; give a JSON file name")
    except ValueError as e:
        p.error(str(e))
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    model = el.load_model(args.model)
    if args.reporter is not None:
        reporter = el.Reporter.load(args.reporter)
        el.check_compatible(reporter, model)
    else:
        train = el.quirky_arithmetic(2000, split="val").where(character="Alice", easy=True)
        reporter = el.fit_mean_diff(
            el.capture(model, train, [args.fit]).at(0),
            train.truth,
            site=args.fit,
            provenance={"model": el.fingerprint(model)},
        )
        if args.save_reporter is not None:
            reporter.save(args.save_reporter)
    data = el.quirky_arithmetic(args.rows, split="test").where(character=args.character)
    direction = reporter.v
    plain = el.output_log_odds(model, data)
    steered = el.output_log_odds(
        model, data, intervention=lambda pos: el.steer(model, reporter.site, direction, alpha=args.alpha, positions=pos)
    )
    out = {"site": reporter.site, "alpha": args.alpha, "character": args.character, "statements": len(data)}
    for name, rows in (("true", data.truth), ("false", ~data.truth)):
        out[f"log_odds_{name}"] = float(plain[rows].mean())
        out[f"log_odds_{name}_steered"] = float(steered[rows].mean())
    print(json.dumps(out, indent=2))
    if args.out is not None:
        el.atomic_write_text(args.out, json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
