"""Capture a model's residual stream for a statement set and save it to disk (safetensors).

Run as it is:

    python hooks/capture_residuals.py --model zoo:quirky-arith --layers all --out acts.safetensors
    python hooks/capture_residuals.py --model ./my_hf_dir --data facts.csv --text-column statement \
        --label-column label --layers 3,5 --kind resid_post --out facts.safetensors

The file holds ``activations`` [n, n_sites, d_model] and ``truth`` [n]; its metadata names the
sites, the read position, and the model and data fingerprints. Hooks attach through
``elk_lens.capture``, which fails loudly on a hook point that does not exist or never fires.
"""

import argparse
import json
from pathlib import Path

from safetensors.torch import save

import elk_lens as el
from elk_lens._atomic import atomic_write_bytes
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
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    model = el.load_model(args.model)
    if args.data == "quirky":
        data = el.quirky_arithmetic(args.rows, split="test")
    else:
        data = el.load_statements(args.data, text_column=args.text_column, label_column=args.label_column)
    if args.layers == "all":
        sites = el.residual_sites(model) if args.kind == "resid_pre" else [
            el.Site(layer, args.kind) for layer in range(model.cfg.n_layers)
        ]  # fmt: skip
    else:
        sites = [el.Site(int(x), args.kind) for x in args.layers.split(",")]
    position = args.position if args.position == "last" else int(args.position)
    acts = el.capture(model, data, sites, position=position, batch_size=args.batch_size)
    meta = {k: json.dumps(v) for k, v in acts.meta.items()}
    out = Path(args.out)
    atomic_write_bytes(out, save({"activations": acts.values.contiguous(), "truth": data.truth}, metadata=meta))
    print(f"wrote {tuple(acts.values.shape)} activations at {[s.name for s in sites]} to {out}")
    return out


if __name__ == "__main__":
    main()
