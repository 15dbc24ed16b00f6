"""Capture a model's residual stream for a statement set and save it to disk (safetensors).

Run as it is:

    python hooks/capture_residuals.py --model zoo:quirky-arith --layers all --out acts.safetensors
    python hooks/capture_residuals.py --model ./my_hf_dir --data facts.csv --text-column statement \
        --label-column label --layers 3,5 --kind resid_post --out facts.safetensors

The file holds ``activations`` [n, n_sites, d_model] and ``truth`` [n]; its metadata names the
sites, the read position, and the model and data fingerprints. Hooks attach through
``elk_lens.capturing``, which fails loudly on a hook point that does not exist or never fires.
"""

import argparse
import json
from pathlib import Path

from safetensors.torch import save

import elk_lens as el
from elk_lens.sites import SITE_KINDS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="zoo:quirky-arith", help="zoo:NAME, a local directory or a hub name")
    p.add_argument("--data", default="quirky", help="'quirky' (quirky arithmetic, test split) or a CSV/JSONL file")
    p.add_argument("--rows", type=int, default=1000, help="base rows for --data quirky")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--layers", default="all", help="'all' or comma-separated block indices")
    p.add_argument("--kind", default="resid_pre", choices=SITE_KINDS)
    p.add_argument("--position", default="last", help="'last' or an int (index among real tokens)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--out", required=True, help="output .safetensors file")
    args = p.parse_args(argv)
    try:  # bad values end here, with the flag named, not after the model is loaded
        el.check_number("--rows", args.rows, kind=int, low=1)
        el.check_number("--batch-size", args.batch_size, kind=int, low=1)
        if args.layers != "all":
            args.layers = [
                _int("--layers", x, "'all' or comma-separated block indices") for x in args.layers.split(",")
            ]
            for layer in args.layers:
                el.check_number("--layers", layer, kind=int, low=0)
        if args.position != "last":
            args.position = _int("--position", args.position, "'last' or an integer")
        if Path(args.out).is_dir():
            raise ValueError(f"--out {args.out!r} is a directory; give a .safetensors file name")
    except ValueError as e:
        p.error(str(e))
    return args


def _int(flag: str, text: str, valid: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{flag} must be {valid}; got {text!r}") from None


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    model = el.load_model(args.model)
    if args.data == "quirky":
        data = el.quirky_arithmetic(args.rows, split="test")
    else:
        data = el.load_statements(args.data, text_column=args.text_column, label_column=args.label_column)
    if args.layers == "all":
        sites = (
            el.residual_sites(model)
            if args.kind == "resid_pre"
            else [el.Site(layer, args.kind) for layer in range(model.cfg.n_layers)]
        )
    else:
        sites = [el.Site(layer, args.kind) for layer in args.layers]
    acts = el.capture(model, data, sites, position=args.position, batch_size=args.batch_size)
    meta = {k: json.dumps(v) for k, v in acts.meta.items()}
    out = Path(args.out)
    el.atomic_write_bytes(out, save({"activations": acts.values.contiguous(), "truth": data.truth}, metadata=meta))
    print(f"wrote {tuple(acts.values.shape)} activations at {[s.name for s in sites]} to {out}")
    return out


if __name__ == "__main__":
    main()
