"""Capture speed and memory on the quirky-arithmetic model (a script, not a test).

Part 1 times ``capture`` of one mid-layer residual (last token) against three baselines on the same
batches: (a) a bare forward of the whole model, (b) a forward stopped at that layer
(``stop_at_layer``), (c) ``run_with_cache`` without a names filter. The target is capture <= 1.05 x (b).
Methods are interleaved within each repeat, so slow drift in machine load hits them all alike.

Part 2 measures peak memory (max RSS) of ``capture(..., cache_dir=...)`` for 4,096 and 65,536
statements, each in a fresh subprocess so the sizes do not pollute each other, and the peak while
materializing ``.values``. The peak is the kernel's high-water mark of this process image (``VmHWM``),
reset before each measured step (``/proc/self/clear_refs``), so the model load and the statement
generation before it do not hide capture's own peak. (``getrusage``'s ``ru_maxrss`` cannot be used
as is: a child started by fork + exec inherits the parent's RSS at fork time as its starting maximum.)
Off Linux it falls back to ``ru_maxrss`` without the reset.

    .venv/bin/python benchmarks/capture_bench.py [--model DIR] [--quick]
"""

import argparse
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import elk_lens.capturing as cap
from elk_lens.models import load_model
from elk_lens.quirky.data import quirky_arithmetic
from elk_lens.zoo import zoo_names

ZOO_MODEL = "quirky-arith"
BATCH = 512
THREADS = 2
N_STATEMENTS = 4096
MEMORY_SIZES = (4096, 65536)


def model_spec(arg: str | None) -> str:
    if arg is not None:
        return arg
    if ZOO_MODEL in zoo_names():
        return f"zoo:{ZOO_MODEL}"
    sys.exit(f"zoo:{ZOO_MODEL} is not embedded (zoo: {zoo_names()}); pass --model DIR")


def statements(n: int):
    stmts = quirky_arithmetic(n // 2, split="test", seed=0)
    assert len(stmts) == n
    return stmts


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def rss_mb() -> float:
    return _status_mb("VmRSS") or float("nan")


def peak_rss_mb() -> float:
    """Peak RSS since the last :func:`reset_peak` (or process start)."""
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS to the current RSS


def time_part(spec: str, repeats: int, layer: int) -> None:
    model = load_model(spec)
    stmts = statements(N_STATEMENTS)
    site = f"blocks.{layer}.hook_resid_pre"
    # baselines get pre-tokenized batches (the same rows capture's forward passes see)
    tokens = cap.tokenize(model, stmts.texts)
    batches = [tokens.rows(a, b).ids for a, b in cap._batches(len(tokens), BATCH)]

    @torch.no_grad()
    def run_all(**kwargs):
        for ids in batches:
            model(ids, **kwargs)

    text_batches = [stmts.texts[a:b] for a, b in cap._batches(len(stmts), BATCH)]

    @torch.no_grad()
    def run_texts(**kwargs):  # the forward a TransformerLens user writes on prompts: the bridge tokenizes
        for texts in text_batches:
            model(texts, **kwargs)

    @torch.no_grad()
    def run_cache():
        for ids in batches:
            model.run_with_cache(ids)

    methods = {
        "capture": lambda: cap.capture(model, stmts, [site], batch_size=BATCH, progress=False),
        "(a) forward": lambda: run_all(),
        f"(b) forward stop_at_layer={layer}": lambda: run_all(stop_at_layer=layer),
        "(b') same, on the texts": lambda: run_texts(stop_at_layer=layer),
        "(c) run_with_cache": run_cache,
        "(t) tokenize (inside capture)": lambda: cap.tokenize(model, stmts.texts),
    }
    times: dict[str, list[float]] = {name: [] for name in methods}
    for fn in methods.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)

    med = {name: statistics.median(ts) for name, ts in times.items()}
    cap_t = med["capture"]

    def paired(name: str) -> float:  # median over repeats of capture / call measured back to back
        return statistics.median(c / t for c, t in zip(times["capture"], times[name], strict=True))

    print(
        f"model {spec}, {len(stmts)} statements x {tokens.ids.shape[1]} tokens, batch {BATCH}, site {site}, "
        f"torch threads {torch.get_num_threads()}, {repeats} repeats after 1 warm-up"
    )
    print(
        f"| {'call':<34} | {'median ms':>9} | {'min ms':>8} | {'max ms':>8} | {'capture / call':>14} "
        f"| {'paired ratio':>12} |"
    )
    print(f"|{'-' * 36}|{'-' * 11}|{'-' * 10}|{'-' * 10}|{'-' * 16}|{'-' * 14}|")
    for name, ts in times.items():
        ratio = "" if name == "capture" else f"{cap_t / med[name]:.3f}"
        pair = "" if name == "capture" else f"{paired(name):.3f}"
        print(
            f"| {name:<34} | {med[name] * 1e3:9.1f} | {min(ts) * 1e3:8.1f} | {max(ts) * 1e3:8.1f} | {ratio:>14} "
            f"| {pair:>12} |"
        )
    print("capture / call = ratio of medians; paired ratio = median of per-repeat ratios (robust to load drift)")
    b_name, t_name = f"(b) forward stop_at_layer={layer}", "(t) tokenize (inside capture)"
    b, t = med[b_name], med[t_name]
    verdict = "meets" if cap_t <= 1.05 * b else "MISSES"
    print(f"capture / (b) = {cap_t / b:.3f} (paired {paired(b_name):.3f}): {verdict} the target <= 1.05")
    bt = [x + y for x, y in zip(times[b_name], times[t_name], strict=True)]
    print(
        f"capture / ((b) + (t)) = {cap_t / (b + t):.3f} (paired "
        f"{statistics.median(c / x for c, x in zip(times['capture'], bt, strict=True)):.3f}); "
        f"the baselines get pre-tokenized batches, capture takes texts"
    )
    bp_name = "(b') same, on the texts"
    verdict = "meets" if cap_t <= 1.05 * med[bp_name] else "MISSES"
    print(
        f"capture / (b') = {cap_t / med[bp_name]:.3f} (paired {paired(bp_name):.3f}): {verdict} the target <= 1.05 "
        f"against the forward on the same texts"
    )


def memory_child(spec: str, n: int, layer: int) -> None:
    """Runs in a fresh process: prints one JSON line of RSS figures (MB)."""
    model = load_model(spec)
    stmts = statements(n)
    setup_peak, before = peak_rss_mb(), rss_mb()
    with tempfile.TemporaryDirectory() as cache_dir:
        reset_peak()
        acts = cap.capture(
            model, stmts, [f"blocks.{layer}.hook_resid_pre"], batch_size=BATCH, cache_dir=cache_dir, progress=False
        )
        capture_peak, after = peak_rss_mb(), rss_mb()
        reset_peak()
        values = acts.values
        values_peak = peak_rss_mb()
        size = values.numel() * values.element_size() / 2**20
    out = dict(
        n=n, setup_peak=setup_peak, before=before, capture=capture_peak, after=after, values=values_peak, values_mb=size
    )
    print(json.dumps(out))


def memory_part(spec: str, layer: int, threads: int) -> None:
    print()
    print("RSS (MB) around capture(..., cache_dir=...) of one site, each size in a fresh process:")
    print("before = RSS after imports, model load and statement generation; peak = high-water mark during the step")
    print(
        f"| {'statements':>10} | {'before':>6} | {'capture peak':>12} | {'after':>6} | {'.values peak':>12} "
        f"| {'values size':>11} |"
    )
    print(f"|{'-' * 12}|{'-' * 8}|{'-' * 14}|{'-' * 8}|{'-' * 14}|{'-' * 13}|")
    for n in MEMORY_SIZES:
        cmd = [
            sys.executable,
            __file__,
            "--model",
            spec,
            "--memory-child",
            str(n),
            "--layer",
            str(layer),
            "--threads",
            str(threads),
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        print(
            f"| {n:>10,} | {r['before']:6.0f} | {r['capture']:12.0f} | {r['after']:6.0f} | {r['values']:12.0f} "
            f"| {r['values_mb']:11.1f} |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help=f"model directory (default: zoo:{ZOO_MODEL} if embedded)")
    parser.add_argument("--quick", action="store_true", help="2 repeats instead of 7")
    parser.add_argument("--layer", type=int, default=2, help="layer of the captured resid_pre (default 2)")
    parser.add_argument("--threads", type=int, default=THREADS, help=f"torch threads (default {THREADS})")
    parser.add_argument("--skip-memory", action="store_true", help="timing only")
    parser.add_argument("--skip-timing", action="store_true", help="memory only")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = model_spec(args.model)
    if args.memory_child is not None:
        memory_child(spec, args.memory_child, args.layer)
        return
    if not args.skip_timing:
        time_part(spec, 2 if args.quick else 7, args.layer)
    if not args.skip_memory:
        memory_part(spec, args.layer, args.threads)


if __name__ == "__main__":
    main()
