"""Capture speed and memory on a real LM (zoo:smollm2-135m), 4,096 truth statements (a script, not a test).

Parts, in the order they run (the JSON is rewritten after each, so a cut-short run keeps what it measured):

1. Padding: the share of the token positions a forward computes that are padding, for batches in the
   statements' order and for ``capture``'s length batches (``elk_lens.capturing.length_batches``), on
   ``--padding-n`` statements (no forward).
2. Memory: peak RSS of ``capture(..., cache_dir=...)`` for 1,024 vs 4,096 statements (``--memory-sizes``),
   each in a fresh process (``benchmarks/capture_bench.py``'s ``VmHWM`` reset), shards of
   ``--memory-shard-rows``.
3. Attention: TransformerLens 4.3 runs its own re-implementation of HF's eager attention inside
   ``PositionEmbeddingsAttentionBridge`` (the HF ``attn_implementation`` setting never reaches it). Timed
   against HF's own attention module put back into each decoder layer, eager and SDPA, forwards to the
   last block on the same batches; max |diff| of the last residual against the bridge.
4. Timing, for k = 1 mid-layer site, 4 sites and every residual site: (a) the bare forward to the
   deepest site (one hook there raising ``StopAtLayerException``) over the batches ``capture`` runs,
   pre-tokenized; (c) ``capture`` on the texts (tokenization included) and (t) the tokenization alone.
   For k = 1 also (a2) the bare forward over batches in the statements' order (before length batching).
   Methods are interleaved within each repeat; ratios are medians of per-repeat (paired) ratios.
   Target: capture <= 1.10 x (a).

    .venv/bin/python benchmarks/real_lm_capture.py --n 4096 --repeats 3 --threads 2

On 2 cores shared with other jobs (load average 4-7), two torch threads ran 1.8-3.3x slower than one,
and a full-depth pass over 4,096 statements took ~10 min; the figures in
``benchmarks/results/real_lm_capture.json`` come from the shorter
``--n 1024 --repeats 3 --threads 1 --attention-n 256`` (its ``conditions`` record the command and load).
"""

import argparse
import contextlib
import functools
import importlib
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import transformers
from capture_bench import peak_rss_mb, reset_peak, rss_mb
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.exceptions import StopAtLayerException

import elk_lens.capturing as cap
from elk_lens.data.truth_datasets import truth_set
from elk_lens.models import load_model
from elk_lens.sites import Site, residual_sites
from elk_lens.store import SHARD_ROWS

MODEL = "zoo:smollm2-135m"
SETS = ("cities", "neg_cities", "cities_conj", "cities_disj", "sp_en_trans", "larger_than", "element_symb")
TARGET = 1.10
RESULTS = Path(__file__).parent / "results" / "real_lm_capture.json"
BARE, CAPTURE, TOKENIZE = "(a) bare forward, capture's batches", "(c) capture", "(t) tokenize"
IN_ORDER = "(a2) bare forward, batches in order"


def statements(n: int) -> list[str]:
    """``n`` texts drawn without replacement from the truth sets pooled, in a seeded random order
    (short and long templates mixed, as a multi-dataset capture meets them)."""
    pool = [t for name in SETS for t in truth_set(name, seed=0).texts]
    if n > len(pool):
        raise ValueError(f"--n {n} is more than the {len(pool)} statements of {SETS}")
    return [pool[i] for i in np.random.default_rng(0).permutation(len(pool))[:n]]


def length_batched(tokens: cap.Tokens, batch_size: int) -> list[cap.Tokens]:
    """The batches ``capture`` runs: length batches within each shard of ``SHARD_ROWS`` statements."""
    return [
        tokens.take(start + index)
        for start, stop in cap._batches(len(tokens), SHARD_ROWS)
        for index in cap.length_batches(tokens.mask[start:stop], batch_size)
    ]


def in_order(tokens: cap.Tokens, batch_size: int) -> list[cap.Tokens]:
    return [tokens.rows(a, b) for a, b in cap._batches(len(tokens), batch_size)]


def padding_share(batches: list[cap.Tokens]) -> dict:
    computed = sum(b.ids.numel() for b in batches)
    real = sum(int(b.mask.sum()) for b in batches)
    return {"token positions computed": computed, "real tokens": real, "padding share": round(1 - real / computed, 4)}


@torch.no_grad()
def bare_forward(model: TransformerBridge, batches: list[cap.Tokens], hook_name: str) -> list[torch.Tensor]:
    """The forward ``capture`` cuts short, with one hook at ``hook_name`` and nothing recorded but the
    last position (returned, for the attention comparison)."""
    out = []

    def stop(t: torch.Tensor, *, hook) -> None:
        out.append(t[:, -1].clone())
        raise StopAtLayerException(t)

    with model.hooks(fwd_hooks=[(hook_name, stop)]):
        for b in batches:
            model(b.ids, attention_mask=None if bool(b.mask.all()) else b.mask)
    assert len(out) == len(batches), f"{hook_name} fired {len(out)} times in {len(batches)} forwards"
    return out


@contextlib.contextmanager
def hf_attention(model: TransformerBridge, implementation: str) -> Iterator[None]:
    """HF's own attention module back in every decoder layer, running ``implementation``; restored on exit.

    The bridge's attention component replaces ``layer.self_attn`` and keeps HF's module as its
    ``original_component``; putting that back skips the bridge's re-implementation (and its attention
    hooks), and ``config._attn_implementation`` then picks HF's kernel, as ``LlamaAttention.forward`` reads it.
    """
    config = model.original_model.config
    decoders = [block.original_component for block in model.blocks]  # HF's LlamaDecoderLayer of each block
    bridges = [block.attn for block in model.blocks]
    if any(d.self_attn is not b for d, b in zip(decoders, bridges, strict=True)):
        raise RuntimeError("the decoder layers do not call the bridge's attention: this TransformerLens differs")
    before = config._attn_implementation
    fired = []
    try:
        for decoder, bridge in zip(decoders, bridges, strict=True):
            decoder.self_attn = bridge.original_component
        config._attn_implementation = implementation
        with model.hooks(fwd_hooks=[("blocks.0.attn.hook_in", lambda t, *, hook: fired.append(1))]):
            yield
        if fired:
            raise RuntimeError("the bridge's attention still ran: the switch to HF's attention did not take effect")
    finally:
        config._attn_implementation = before
        for decoder, bridge in zip(decoders, bridges, strict=True):
            decoder.self_attn = bridge


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median_ratio(num: list[float], den: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


def site_sets(model: TransformerBridge) -> dict[str, list[Site]]:
    n = model.cfg.n_layers
    return {
        f"k=1 (resid_pre {n // 2})": [Site(n // 2, "resid_pre")],
        f"k=4 (resid_pre {', '.join(str(n // 5 * i) for i in range(1, 5))})": [
            Site(n // 5 * i, "resid_pre") for i in range(1, 5)
        ],
        f"k={n + 1} (every residual)": residual_sites(model),
    }


def attention_part(model: TransformerBridge, texts: list[str], batch_size: int, repeats: int) -> dict:
    batches = length_batched(cap.tokenize(model, texts), batch_size)
    last = model.cfg.n_layers - 1
    hook = f"blocks.{last}.hook_resid_post"
    modes = {
        "bridge (TransformerLens's eager re-implementation)": contextlib.nullcontext,
        "HF eager": lambda: hf_attention(model, "eager"),
        "HF sdpa": lambda: hf_attention(model, "sdpa"),
    }
    ref = bare_forward(model, batches, hook)
    out: dict = {"statements": len(texts), "site": hook}
    scale = max(float(r.abs().max()) for r in ref)
    for name, mode in modes.items():
        with mode():
            got = bare_forward(model, batches, hook)
        diff = max(float((g - r).abs().max()) for g, r in zip(got, ref, strict=True))
        out[name] = {"max |diff| vs bridge, last residual": diff, "relative to max |residual|": diff / scale}
    times: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(repeats):
        for name, mode in modes.items():
            with mode():
                times[name].append(timed(lambda: bare_forward(model, batches, hook)))
    bridge = next(iter(modes))
    for name, ts in times.items():
        out[name].update(
            seconds=ts, median_s=statistics.median(ts), paired_ratio_to_bridge=median_ratio(ts, times[bridge])
        )
    return out


def timing_part(
    model: TransformerBridge, texts: list[str], batch_size: int, repeats: int, save: Callable[[dict], None]
) -> dict:
    tokens = cap.tokenize(model, texts)
    sorted_batches = length_batched(tokens, batch_size)
    plain_batches = in_order(tokens, batch_size)
    results: dict = {}
    configs = site_sets(model)
    for sites in configs.values():  # warm-up: one batch of each method
        deepest = max(sites, key=lambda s: s.depth).hook_name
        bare_forward(model, sorted_batches[:1], deepest)
        cap.capture(model, texts[:batch_size], sites, batch_size=batch_size, progress=False)
    for repeat in range(repeats):
        for label, sites in configs.items():
            deepest = max(sites, key=lambda s: s.depth).hook_name
            methods: dict[str, Callable[[], object]] = {
                BARE: functools.partial(bare_forward, model, sorted_batches, deepest),
                CAPTURE: functools.partial(cap.capture, model, texts, sites, batch_size=batch_size, progress=False),
                TOKENIZE: functools.partial(cap.tokenize, model, texts),
            }
            if label.startswith("k=1 "):
                methods[IN_ORDER] = functools.partial(bare_forward, model, plain_batches, deepest)
            entry = results.setdefault(label, {"deepest site": deepest, "seconds": {m: [] for m in methods}})
            for name, fn in methods.items():
                entry["seconds"][name].append(timed(fn))
                print(f"repeat {repeat + 1}/{repeats} {label} {name}: {entry['seconds'][name][-1]:.1f} s", flush=True)
            summarize(entry)
            save(results)
    return results


def summarize(entry: dict) -> None:
    s = entry["seconds"]
    a, c, t = s[BARE], s[CAPTURE], s[TOKENIZE]
    entry["median_s"] = {name: statistics.median(ts) for name, ts in s.items()}
    entry["capture / (a)"] = median_ratio(c, a)
    entry["(capture - tokenize) / (a)"] = median_ratio([x - y for x, y in zip(c, t, strict=True)], a)
    entry["meets target"] = entry["capture / (a)"] <= TARGET
    if IN_ORDER in s:
        entry["(a2) / (a)"] = median_ratio(s[IN_ORDER], a)
        entry["capture / (a2)"] = median_ratio(c, s[IN_ORDER])


def memory_child(n: int, layer: int, shard_rows: int, batch_size: int) -> None:
    """Runs in a fresh process: prints one JSON line of RSS figures (MB)."""
    model = load_model(MODEL)
    texts = statements(n)
    before = rss_mb()
    with tempfile.TemporaryDirectory() as cache_dir:
        reset_peak()
        cap.capture(
            model,
            texts,
            [Site(layer, "resid_pre")],
            batch_size=batch_size,
            cache_dir=cache_dir,
            shard_rows=shard_rows,
            progress=False,
        )
        print(json.dumps({"statements": n, "rss before MB": before, "capture peak MB": peak_rss_mb()}))


def memory_part(args: argparse.Namespace) -> dict:
    rows = []
    for n in args.memory_sizes:
        cmd = [
            sys.executable,
            __file__,
            "--memory-child",
            str(n),
            "--threads",
            str(args.threads),
            "--memory-layer",
            str(args.memory_layer),
            "--memory-shard-rows",
            str(args.memory_shard_rows),
            "--batch-size",
            str(args.batch_size),
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        rows.append(json.loads(out))
    return {"site": f"blocks.{args.memory_layer}.hook_resid_pre", "shard_rows": args.memory_shard_rows, "runs": rows}


def conditions(args: argparse.Namespace) -> dict:
    sha = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
    )
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "model": MODEL,
        "torch threads": torch.get_num_threads(),
        "cpu count": os.cpu_count(),
        "load average at start (1, 5, 15 min)": os.getloadavg(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "transformer_lens": importlib.metadata.version("transformer-lens"),
        "git": sha.stdout.strip() + " (plus uncommitted changes)",
        "batch_size": args.batch_size,
        "statement sets": list(SETS),
    }


def print_tables(res: dict) -> None:
    c = res["conditions"]
    load = c["load average at start (1, 5, 15 min)"]
    print(f"\n{c['model']}, {c['torch threads']} torch threads on {c['cpu count']} cores; load average at start {load}")
    if "padding" in res:
        p = res["padding"]
        plain, batched = p["in order"]["padding share"], p["length batches"]["padding share"]
        print(
            f"padding share of the token positions computed, {p['statements']} statements, batches of "
            f"{p['batch_size']}: in order {plain:.1%}, length batches {batched:.1%}"
        )
    if "memory" in res:
        mem = res["memory"]
        for r in mem["runs"]:
            print(
                f"cache_dir, {r['statements']:>5} statements ({mem['site']}, shards of {mem['shard_rows']}): "
                f"RSS before {r['rss before MB']:.0f} MB, capture peak {r['capture peak MB']:.0f} MB"
            )
    if "attention" in res:
        att = res["attention"]
        print(f"\nattention, {att['statements']} statements to {att['site']}:")
        print(f"| {'attention':<52} | {'median s':>8} | {'paired ratio':>12} | {'max |diff|':>10} | {'relative':>8} |")
        print(f"|{'-' * 54}|{'-' * 10}|{'-' * 14}|{'-' * 12}|{'-' * 10}|")
        for name, r in att.items():
            if isinstance(r, dict) and "median_s" in r:
                diff, rel = r["max |diff| vs bridge, last residual"], r["relative to max |residual|"]
                print(
                    f"| {name:<52} | {r['median_s']:8.1f} | {r['paired_ratio_to_bridge']:12.3f} "
                    f"| {diff:10.2e} | {rel:8.1e} |"
                )
    if "timing" in res:
        print(f"\ncapture vs the bare forward to the deepest site (target <= {TARGET}):")
        print(
            f"| {'sites':<36} | {'(a) s':>7} | {'(c) s':>7} | {'(t) s':>6} | {'(c)/(a)':>7} | {'((c)-(t))/(a)':>13} "
            f"| {'meets':>5} | {'(a2)/(a)':>8} |"
        )
        print(f"|{'-' * 38}|{'-' * 9}|{'-' * 9}|{'-' * 8}|{'-' * 9}|{'-' * 15}|{'-' * 7}|{'-' * 10}|")
        for label, e in res["timing"].items():
            if "median_s" not in e:
                continue
            m = e["median_s"]
            saved = f"{e['(a2) / (a)']:.3f}" if "(a2) / (a)" in e else ""
            meets = "yes" if e["meets target"] else "NO"
            ratio, untokenized = e["capture / (a)"], e["(capture - tokenize) / (a)"]
            print(
                f"| {label:<36} | {m[BARE]:7.1f} | {m[CAPTURE]:7.1f} | {m[TOKENIZE]:6.2f} "
                f"| {ratio:7.3f} | {untokenized:13.3f} | {meets:>5} | {saved:>8} |"
            )
        print("ratios: medians of per-repeat ratios; (a2) = the bare forward over batches in the statements' order")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096, help="statements timed (default 4096)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats, methods interleaved (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--batch-size", type=int, default=64, help="statements per forward (capture's default 64)")
    parser.add_argument("--padding-n", type=int, default=4096, help="statements for the padding part (default 4096)")
    parser.add_argument("--attention-n", type=int, default=512, help="statements for the attention part (default 512)")
    parser.add_argument("--memory-sizes", type=int, nargs="+", default=[1024, 4096], help="statements per memory run")
    parser.add_argument("--memory-layer", type=int, default=2, help="layer of the memory part's site (default 2)")
    parser.add_argument("--memory-shard-rows", type=int, default=1024, help="shard size of the memory part")
    parser.add_argument(
        "--parts",
        nargs="*",
        default=["padding", "memory", "attention", "timing"],
        choices=["padding", "memory", "attention", "timing"],
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_child is not None:
        memory_child(args.memory_child, args.memory_layer, args.memory_shard_rows, args.batch_size)
        return
    res: dict = {"conditions": conditions(args)}

    def save(part: str, value: dict) -> None:
        res[part] = value
        res["conditions"]["load average now (1, 5, 15 min)"] = os.getloadavg()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n")

    model = load_model(MODEL)
    texts = statements(args.n)
    if "padding" in args.parts:
        padding_texts = statements(args.padding_n)
        tokens = cap.tokenize(model, padding_texts)
        save(
            "padding",
            {
                "statements": len(padding_texts),
                "batch_size": args.batch_size,
                "in order": padding_share(in_order(tokens, args.batch_size)),
                "length batches": padding_share(length_batched(tokens, args.batch_size)),
            },
        )
    if "memory" in args.parts:
        save("memory", memory_part(args))
    if "attention" in args.parts:
        save("attention", attention_part(model, texts[: args.attention_n], args.batch_size, args.repeats))
    print_tables(res)
    if "timing" in args.parts:
        timing_part(model, texts, args.batch_size, args.repeats, lambda t: save("timing", t))
    print_tables(res)


if __name__ == "__main__":
    main()
