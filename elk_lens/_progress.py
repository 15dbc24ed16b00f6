"""Progress a long run reports: tqdm bars on a terminal, and plain lines where there is none.

tqdm hides its bar when stderr is not a terminal (a log file, CI, a notebook's subprocess), so a run of
minutes would print nothing. There the bars here become a line every 10% of the work or every 30 s,
sent to the ``elk_lens.progress`` logger; RunDir announces its stages to the same logger. A library
caller sees nothing unless it asks (logging's default shows warnings only); ``elk-lens run`` shows them
on stderr through :func:`progress_to`.
"""

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from tqdm.auto import tqdm

__all__ = ["LineProgress", "log", "progress_bar", "progress_to"]

log = logging.getLogger("elk_lens.progress")


class LineProgress:
    """The part of tqdm's interface that elk-lens uses (``update``, ``n``, ``set_postfix``, ``close``), as
    lines: one when a tenth of ``total`` more is done or ``every`` seconds have passed, and one at the end."""

    def __init__(self, total: int, desc: str, *, initial: int = 0, unit: str = "it", every: float = 30.0):
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.n = initial
        self._started = self._said = time.perf_counter()
        self._tenth = self._tenths(initial)
        self._postfix = ""

    def _tenths(self, n: int) -> int:
        return 10 * n // self.total if self.total else 10

    def _line(self, what: str) -> None:
        elapsed = time.perf_counter() - self._started
        log.info("%s: %s %d/%d %s, %.1f s%s", self.desc, what, self.n, self.total, self.unit, elapsed, self._postfix)
        self._said = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n
        tenth = self._tenths(self.n)
        if tenth > self._tenth or time.perf_counter() - self._said >= self.every:
            self._tenth = tenth
            if self.n < self.total:
                self._line(f"{100 * self.n // self.total}%")

    def set_postfix(self, **values: object) -> None:
        self._postfix = "".join(f", {k}={v}" for k, v in values.items())

    def close(self) -> None:
        self._line("done")


def progress_bar(total: int, desc: str, *, progress: bool | None = None, **kwargs) -> tqdm | LineProgress:
    """A tqdm bar; with ``progress=None`` and no terminal on stderr, lines (:class:`LineProgress`) instead.

    ``progress=True`` forces the tqdm bar and ``False`` shows nothing, as before; ``kwargs`` go to tqdm
    (``initial`` and ``unit`` to the lines too).
    """
    if progress is None and not sys.stderr.isatty():
        return LineProgress(total, desc, initial=kwargs.get("initial", 0), unit=kwargs.get("unit", "it"))
    return tqdm(total=total, desc=desc, disable=not progress if progress is not None else None, **kwargs)


@contextmanager
def progress_to(stream: TextIO) -> Iterator[None]:
    """Write the ``elk_lens.progress`` lines to ``stream`` (e.g. stderr), one line each, while inside."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("elk-lens: %(message)s"))
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
