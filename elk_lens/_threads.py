"""`torch_threads`: torch's intra-op thread count for one call, the caller's own setting back after it.

torch keeps one process-wide thread count. A library that sets it for its own work (the embedded model's
training recipe does: 2 threads) must not leave it changed behind the user's back (issue 18, item 5).
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from elk_lens._checks import check_number

__all__ = ["torch_threads"]


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Within the context torch uses ``n`` intra-op threads (None: as it is); on exit, also when the body
    raises, the count the caller had."""
    if n is None:
        yield
        return
    check_number("threads", n, kind=int, low=1)
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
