"""What offloading costs: capture of every residual site of a real LM loaded whole, with half its blocks
offloaded to disk, and with all of it on disk (issue 19 item 3, docs/guide/scaling-out.md). A model larger
than its devices runs this way; on CPU it is the one multi-place dispatch this machine can run.

    .venv/bin/python benchmarks/offload_capture.py [--model zoo:smollm2-135m] [--statements 256] [--repeats 2]

Each placement's captures must equal the whole model's bytes (torch.equal) and its fingerprint the whole
model's; the script stops otherwise. One torch thread; the placements take turns within each repeat
(benchmarks/_timing.py). Prints JSON and writes it to benchmarks/results/offload_capture.json.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _timing import interleaved, paired

from elk_lens.capturing import capture
from elk_lens.models import fingerprint, load_model


def placements(n_layers: int, folder: Path) -> dict[str, dict]:
    """The whole model; its second half of blocks on disk; all of it on disk ("auto" given 1 KB of RAM)."""
    half = {f"model.layers.{i}": "cpu" if i < n_layers // 2 else "disk" for i in range(n_layers)}
    keep = {f"model.{m}": "cpu" for m in ("embed_tokens", "norm", "rotary_emb")} | {"lm_head": "cpu"}
    return {
        "whole": {},
        "half on disk": {"device_map": keep | half, "offload_folder": folder},
        "all on disk": {"device_map": "auto", "max_memory": {"cpu": "1KB"}, "offload_folder": folder},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="zoo:smollm2-135m")
    parser.add_argument("--statements", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "offload_capture.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    texts = [f"The number {i} is {'even' if i % 2 == 0 else 'odd'}." for i in range(args.statements)]
    with tempfile.TemporaryDirectory() as folder:
        n_layers = load_model(args.model).cfg.n_layers
        models, load_s = {}, {}
        for name, kwargs in placements(n_layers, Path(folder)).items():
            start = time.perf_counter()
            models[name] = load_model(args.model, **kwargs)
            load_s[name] = time.perf_counter() - start
        whole = models["whole"]
        sites = ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(whole.cfg.n_layers)]
        hash_s, values = {}, {}
        for name, model in models.items():
            start = time.perf_counter()
            digest = fingerprint(model)
            hash_s[name] = time.perf_counter() - start
            values[name] = capture(model, texts, sites).values
            meta = sum(p.is_meta for p in model.parameters())
            if digest != fingerprint(whole) or not torch.equal(values[name], values["whole"]):
                raise SystemExit(f"{name}: the fingerprint or the captures differ from the whole model's")
            print(f"{name}: {meta} of {len(list(model.parameters()))} parameters offloaded; equal", flush=True)
        times = interleaved({n: (lambda m=m: capture(m, texts, sites)) for n, m in models.items()}, args.repeats)
    out = {
        "conditions": {"model": args.model, "statements": args.statements, "sites": len(sites), "threads": 1},
        "equal to the whole model (captures and fingerprint)": True,
        "load s": {n: round(s, 2) for n, s in load_s.items()},
        "first fingerprint s": {n: round(s, 2) for n, s in hash_s.items()},
        "capture s (median)": {n: round(statistics.median(t), 2) for n, t in times.items()},
        "capture, x the whole model's": {n: round(paired(t, times["whole"]), 2) for n, t in times.items()},
    }
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
