"""Interleaved timing for the benchmark scripts: every method once per repeat, in turn, so slow drift in the
machine's load hits them all alike; ratios are medians of per-repeat (paired) ratios."""

import statistics
import time
from collections.abc import Callable, Sequence


def interleaved(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each call, ``repeats`` times, the calls alternating within each repeat."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t0)
    return times


def paired(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """The median of the per-repeat ratios ``numerator[i] / denominator[i]``."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))
