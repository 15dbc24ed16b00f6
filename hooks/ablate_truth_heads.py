"""Zero-ablate the attention heads that write a truth reporter's score, and see what the model loses.

Run as it is:

    python hooks/ablate_truth_heads.py                       # zoo:quirky-arith, blocks.3.hook_resid_pre, top 2 heads
    python hooks/ablate_truth_heads.py --top 3 --site blocks.2.hook_resid_pre --out ablation.json

Heads are ranked by exact activation patching of the reporter's score on sum-vs-sloppy twins
(``elk_lens.circuits``); the top ``--top`` heads' outputs (``hook_z``) are set to zero with a hook
context manager that fails loudly if a hook never fires. Printed (and written with ``--out``): the
reporter's AUROC vs truth at its site and the model's answer AUROC vs truth on Alice's test
statements, without ablation, with the top heads ablated, and with as many other heads (the lowest
ranked) ablated as a control.
"""

import argparse
import json
from pathlib import Path

import torch

import elk_lens as el
from elk_lens.circuits import exact_patching, mean_scores, top_heads
from elk_lens.circuits.components import Component
from elk_lens.quirky import sum_vs_sloppy_pairs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="zoo:quirky-arith", help="zoo:NAME or a local native model directory")
    p.add_argument("--site", default="blocks.3.hook_resid_pre", help="where the reporter reads")
    p.add_argument("--top", type=int, default=2, help="how many heads to ablate")
    p.add_argument("--pairs", type=int, default=128, help="twins used to rank the heads")
    p.add_argument("--rows", type=int, default=500, help="base rows of the quirky test split to score on")
    p.add_argument("--out", type=Path, help="also write the numbers to this JSON file")
    args = p.parse_args(argv)
    try:  # bad values end here, with the flag named, not after the model is loaded
        el.Site.parse(args.site)
        for flag, value in (("--top", args.top), ("--pairs", args.pairs), ("--rows", args.rows)):
            el.check_number(flag, value, kind=int, low=1)
        if args.out is not None and args.out.is_dir():
            raise ValueError(f"--out {str(args.out)!r} is a directory; give a JSON file name")
    except ValueError as e:
        p.error(str(e))
    return args


def zero_heads(model, heads: list[str]):
    """A loud hook context that zeroes the outputs (``hook_z``) of heads named ``L{layer}H{head}``."""
    by_layer: dict[int, list[int]] = {}
    for c in map(Component.from_name, heads):
        by_layer.setdefault(c.layer, []).append(c.head)

    def hook_for(chosen: list[int]):
        def zero(z: torch.Tensor, *, hook) -> torch.Tensor:
            z = z.clone()
            z[:, :, chosen] = 0.0
            return z

        return zero

    return el.loud_hooks(model, [(f"blocks.{layer}.attn.hook_z", hook_for(hs)) for layer, hs in by_layer.items()])


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    model = el.load_model(args.model)
    train = el.quirky_arithmetic(2000, split="val").where(character="Alice", easy=True)
    reporter = el.fit_logistic(
        el.capture(model, train, [args.site]).at(0),
        train.truth,
        site=args.site,
        provenance={"model": el.fingerprint(model)},
    )
    clean, corrupt = sum_vs_sloppy_pairs(args.pairs)
    scores = mean_scores(exact_patching(model, reporter, clean, corrupt))
    heads = top_heads(scores, len(scores))
    if not 0 < args.top <= len(heads) // 2:
        raise ValueError(f"--top must lie in 1..{len(heads) // 2} (the control ablates as many other heads)")
    top, control = heads[: args.top], heads[-args.top :]
    test = el.quirky_arithmetic(args.rows, split="test").where(character="Alice")

    def measure() -> dict:
        x = el.capture(model, test, [args.site]).at(0)
        return {
            "reporter AUROC": round(el.auroc(reporter(x), test.truth), 4),
            "answer AUROC": round(el.auroc(el.output_log_odds(model, test), test.truth), 4),
        }

    out = {
        "site": args.site,
        "top heads": top,
        "control heads": control,
        "scores": {h: round(scores[h], 4) for h in heads},
        "intact": measure(),
    }
    with zero_heads(model, top):
        out["top heads ablated"] = measure()
    with zero_heads(model, control):
        out["control heads ablated"] = measure()
    print(json.dumps(out, indent=2))
    if args.out is not None:
        el.atomic_write_text(args.out, json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
