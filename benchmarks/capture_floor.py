"""Capture against its floor and its peers, in one process (issue 18, item 1; a script, not a test).

For each model and job (one mid-layer residual site, or every residual site; the last real token), on the
same length-sorted, pre-tokenized batches that ``capture`` runs, one torch thread, methods interleaved
within each repeat, ratios the median of per-repeat (paired) ratios:

- ``floor: bridge`` — the bare bridge forward, stopped by one hook at the deepest requested site;
- ``floor: unwrapped`` — the module under the bridge (for an HF model a copy set to SDPA attention; for the
  embedded model TransformerLens's ``NativeModel``), stopped by a forward hook on the deepest requested
  layer: the same computation without the bridge;
- ``capture`` — ``elk_lens.capture`` on the texts, minus ``tokenize`` timed on its own (also reported);
- ``run_with_cache`` — TransformerLens's own cache with a names filter (and ``stop_at_layer`` for one site);
- ``nnsight`` — ``NNsight(unwrapped)``'s trace saving the same layers' outputs at the same rows, then
  ``tracer.stop()``; only where nnsight imports (it is not a project dependency):

      .venv/bin/pip install --no-deps --target .bench-env nnsight greenlet websocket-client zstandard cloudpickle
      PYTHONPATH=.bench-env .venv/bin/python benchmarks/capture_floor.py --out benchmarks/results/capture_floor.json

Target: capture ≤ 1.03× its floor, and no slower than nnsight or ``run_with_cache``.
"""

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
from pathlib import Path

import torch
from _timing import interleaved, paired
from transformer_lens.model_bridge.exceptions import StopAtLayerException

import elk_lens.capturing as cap
from elk_lens.data.truth_datasets import truth_set
from elk_lens.models import load_model
from elk_lens.quirky.data import quirky_arithmetic
from elk_lens.sites import Site, residual_sites

try:
    from nnsight import NNsight
except ImportError:  # the benchmark's own environment may lack it
    NNsight = None

TRUTH_SETS = ("cities", "neg_cities", "sp_en_trans", "larger_than", "element_symb")
BATCH = 64


class _Stop(Exception):
    """Raised by the HF floor's forward hook at the deepest layer."""


def texts_for(spec: str, n: int) -> list[str]:
    if spec == "zoo:quirky-arith":
        return quirky_arithmetic(n // 2, split="test", seed=0).texts
    pool = [t for name in TRUTH_SETS for t in truth_set(name, seed=0).texts]
    return pool[:: max(1, len(pool) // n)][:n]


def unwrapped(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with every bridge component swapped back for the module it wraps (``_original_component``):
    the bridge installs its components inside the model it was booted from."""
    for name, child in list(module.named_children()):
        original = getattr(child, "_original_component", None)
        if original is not None:
            setattr(module, name, original)
            child = original
        unwrapped(child)
    return module


def agreement(model, hf, sites: list[Site], texts: list[str]) -> float:
    """max |difference| between the unwrapped module's residual and capture's, at each site's first batch:
    the floor computes what capture reads."""
    got = cap.capture(model, texts[:BATCH], sites, batch_size=BATCH, progress=False).values
    tokens = cap.tokenize(model, texts[:BATCH])
    read = cap._read_index(tokens.mask, "last")
    seen = []
    hooks = []
    for module, pre in hf_site_modules(hf, model.cfg.n_layers, sites):

        def keep(_m, args, out=None, pre=pre):
            seen.append(first(args[0] if pre else out)[torch.arange(len(read)), read])

        hooks.append(module.register_forward_pre_hook(keep) if pre else module.register_forward_hook(keep))
    try:
        with torch.no_grad():
            hf(input_ids=tokens.ids, attention_mask=None if bool(tokens.mask.all()) else tokens.mask)
    finally:
        for h in hooks:
            h.remove()
    return float((torch.stack(seen, 1) - got).abs().max())


def hf_layers(hf: torch.nn.Module, n_layers: int) -> torch.nn.ModuleList:
    """The HF model's stack of blocks: its one ModuleList of ``n_layers`` modules."""
    (stack,) = [m for m in hf.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n_layers]
    return stack


def hf_site_modules(hf: torch.nn.Module, n_layers: int, sites: list[Site]) -> list[tuple[torch.nn.Module, bool]]:
    """Per site, the HF module whose output (``False``) or input (``True``) is that residual."""
    layers = hf_layers(hf, n_layers)
    return [(layers[s.layer], s.kind == "resid_pre") for s in sites]


def first(x):
    return x[0] if isinstance(x, tuple) else x


def make_methods(model, texts: list[str], sites: list[Site]):
    tokens = cap.tokenize(model, texts)
    batches = [tokens.take(index) for index in cap.length_batches(tokens.mask, BATCH)]
    masks = [None if bool(b.mask.all()) else b.mask for b in batches]
    reads = [cap._read_index(b.mask, "last") for b in batches]
    deepest = max(sites, key=lambda s: s.depth)
    n_layers = model.cfg.n_layers
    hf = unwrapped(copy.deepcopy(model.original_model)).eval()
    if hasattr(hf, "set_attn_implementation"):  # an HF model; the embedded model's NativeModel has one path
        hf.set_attn_implementation("sdpa")
    hf_sites = hf_site_modules(hf, n_layers, sites)
    names = [s.hook_name for s in sites]

    def stop(t, *, hook):
        raise StopAtLayerException(t)

    @torch.no_grad()
    def floor_bridge():
        with model.hooks(fwd_hooks=[(deepest.hook_name, stop)]):
            for b, m in zip(batches, masks, strict=True):
                with contextlib.suppress(StopAtLayerException):
                    model(b.ids, attention_mask=m)

    @torch.no_grad()
    def floor_hf():
        module, pre = hf_sites[sites.index(deepest)]

        def raise_stop(*_):
            raise _Stop

        handle = module.register_forward_pre_hook(raise_stop) if pre else module.register_forward_hook(raise_stop)
        try:
            for b, m in zip(batches, masks, strict=True):
                with contextlib.suppress(_Stop):
                    hf(input_ids=b.ids, attention_mask=m)
        finally:
            handle.remove()

    @torch.no_grad()
    def run_with_cache():
        stop_at = None if deepest.kind == "resid_post" else deepest.layer
        for b, m in zip(batches, masks, strict=True):
            model.run_with_cache(b.ids, attention_mask=m, names_filter=names, stop_at_layer=stop_at)

    print("max |unwrapped - capture|:", agreement(model, hf, sites, texts), flush=True)
    methods = {
        "floor: bridge": floor_bridge,
        "floor: unwrapped": floor_hf,
        "capture": lambda: cap.capture(model, texts, sites, batch_size=BATCH, progress=False),
        "tokenize": lambda: cap.tokenize(model, texts),
        "run_with_cache": run_with_cache,
    }
    if NNsight is not None:
        traced = NNsight(hf)
        envoys = [(envoy_at(traced, module_path(hf, module)), pre) for module, pre in hf_sites]

        @torch.no_grad()
        def nnsight():
            out = []
            for b, m, read in zip(batches, masks, reads, strict=True):
                rows = torch.arange(len(b))
                saved = []  # outside the block: nnsight runs the block's body elsewhere, the list is shared
                with traced.trace(input_ids=b.ids, attention_mask=m) as tracer:
                    for envoy, pre in envoys:
                        value = first(envoy.input) if pre else first(envoy.output)
                        saved.append(value[rows, read].save())
                    tracer.stop()
                out.append(torch.stack(list(saved), 1))
            return out

        methods["nnsight"] = nnsight
    return methods


def envoy_at(traced, path: str):
    for part in path.split("."):
        traced = traced[int(part)] if part.isdigit() else getattr(traced, part)
    return traced


def module_path(root: torch.nn.Module, module: torch.nn.Module) -> str:
    (name,) = [n for n, m in root.named_modules() if m is module]
    return name


def measure(spec: str, n: int, repeats: int) -> dict:
    model = load_model(spec)
    texts = texts_for(spec, n)
    everything = residual_sites(model)
    jobs = {"one site": [everything[len(everything) // 2]], "all sites": everything}
    result = {}
    for job, sites in jobs.items():
        methods = make_methods(model, texts, sites)
        for fn in methods.values():  # warm-up
            fn()
        times = interleaved(methods, repeats)
        cap_net = [c - t for c, t in zip(times["capture"], times["tokenize"], strict=True)]
        result[job] = {
            "sites": [s.hook_name for s in sites],
            "median_s": {name: statistics.median(ts) for name, ts in times.items()},
            "capture minus tokenize / floor: bridge": paired(cap_net, times["floor: bridge"]),
            "capture minus tokenize / floor: unwrapped": paired(cap_net, times["floor: unwrapped"]),
            "capture / run_with_cache (tokenize included)": paired(times["capture"], times["run_with_cache"]),
            "run_with_cache / floor: bridge": paired(times["run_with_cache"], times["floor: bridge"]),
            "floor: bridge / floor: unwrapped": paired(times["floor: bridge"], times["floor: unwrapped"]),
        }
        if "nnsight" in times:
            result[job]["capture minus tokenize / nnsight"] = paired(cap_net, times["nnsight"])
            result[job]["nnsight / floor: unwrapped"] = paired(times["nnsight"], times["floor: unwrapped"])
        print(spec, job, json.dumps(result[job], indent=1), flush=True)
    return {"statements": len(texts), "batch_size": BATCH, "jobs": result}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["zoo:quirky-arith", "zoo:minilm", "zoo:smollm2-135m"])
    ap.add_argument("--n", type=int, nargs="+", default=[4096, 2048, 256], help="statements per model")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = {
        "conditions": {
            "command": "python benchmarks/capture_floor.py " + " ".join(os.sys.argv[1:]),
            "torch threads": 1,
            "cpu count": os.cpu_count(),
            "load average at start": os.getloadavg(),
            "machine": platform.machine(),
            "torch": torch.__version__,
            "nnsight": None if NNsight is None else __import__("nnsight").__version__,
        },
        "models": {},
    }
    for spec, n in zip(args.models, args.n, strict=True):
        out["models"][spec] = measure(spec, n, args.repeats)
        out["conditions"]["load average now"] = os.getloadavg()
        if args.out:
            args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
