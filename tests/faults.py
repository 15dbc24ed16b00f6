"""Hard kills at an exact write, for the fault-injection tests (``test_faults.py``).

Every file elk-lens writes reaches its name by a rename: ``atomic_write_bytes`` renames a temporary
sibling over it (``os.replace``); ``save_dir`` renames a temporary directory into place (``os.rename``)
or, when overwriting, each of its files (``os.replace``), the marker last. Those renames are the commit
points, so that is where a kill goes. :func:`kill` runs an operation in a fork of the test process,
counts its renames, and at the k-th one ends the process with ``os._exit(137)`` (no ``finally``, no
``atexit``, no clean-up of temporary files: as under SIGKILL) at one of three moments:

- ``"before"``: the temporary file (or directory) is whole but not renamed;
- ``"half"``: it holds only the first half of its bytes: a kill midway through writing them (the disk
  then looks exactly so, since the bytes are written before the rename);
- ``"after"``: renamed, and nothing after it ran (in a multi-file save: some files replaced, not all).

The premise, that nothing is written in place, is checked too: in the fork, opening a file for writing
from Python anywhere but inside a temporary name (``.<name>.<random>.tmp``) ends it with
:data:`IN_PLACE` and names the file.

Every run (the uninterrupted reference, the killed one, the resume, the reads after the kill) is a
fork of the test process, which runs none of them itself: each starts from the same memory, so only
the files on disk carry over from one to the next, deterministically, and without paying the seconds
of importing torch and TransformerLens again for every run.
"""

import builtins
import io
import os
import pickle
import select
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["IN_PLACE", "KILLED", "WHEN", "Kill", "call", "kill", "kills", "leftovers", "visible_files"]

KILLED = 137  # the exit status of a process killed by SIGKILL, as a shell reports it
IN_PLACE = 98  # a fork that opened a non-temporary file for writing
WHEN = ("before", "half", "after")


@dataclass(frozen=True)
class Kill:
    at: int  # the k-th rename of the operation, from 1
    when: str  # one of WHEN

    def __str__(self) -> str:
        return f"kill {self.when} rename {self.at}"


def kills(n: int, when: tuple[str, ...] = WHEN, at: Iterable[int] | None = None) -> list[Kill]:
    """A kill at each of ``at`` (default: every one of the ``n`` renames), at each moment of ``when``."""
    return [Kill(k, w) for k in (range(1, n + 1) if at is None else at) for w in when]


def _is_temporary(path: Path) -> bool:
    return any(part.startswith(".") and part.endswith(".tmp") for part in path.parts)


def visible_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` a reader could find (temporary files left by a kill excluded), by relative path."""
    if not root.exists():
        return {}
    return {
        str(f.relative_to(root)): f.read_bytes()
        for f in sorted(root.rglob("*"))
        if f.is_file() and not _is_temporary(f.relative_to(root))
    }


def leftovers(root: Path) -> list[str]:
    """The temporary files and directories a kill left under ``root``."""
    return sorted(
        str(f.relative_to(root)) for f in root.rglob("*") if f.name.startswith(".") and f.name.endswith(".tmp")
    )


def _halve(path: Path) -> None:
    for f in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
        os.truncate(f, f.stat().st_size // 2)


class _Renames:
    """Counts ``os.replace`` and ``os.rename`` (``Path.replace`` and ``Path.rename`` call them) and dies at the kill."""

    def __init__(self, at: Kill | None):
        self.at, self.done = at, []  # the destinations renamed onto, in order

    def install(self) -> None:
        for name in ("replace", "rename"):
            setattr(os, name, self._wrap(getattr(os, name)))

    def _wrap(self, real: Callable) -> Callable:
        def commit(src, dst, *args, **kwargs):
            self.done.append(os.fspath(dst))
            if self.at is None or len(self.done) != self.at.at:
                return real(src, dst, *args, **kwargs)
            if self.at.when == "half":
                _halve(Path(src))
            if self.at.when == "after":
                real(src, dst, *args, **kwargs)
            os._exit(KILLED)

        return commit


def _refuse_writes_in_place() -> None:
    real = io.open

    def guarded(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+") and not _is_temporary(Path(file)):
            sys.stderr.write(
                f"{file} was opened for writing in place (mode {mode!r}): a kill would leave it half-written\n"
            )
            sys.stderr.flush()
            os._exit(IN_PLACE)
        return real(file, mode, *args, **kwargs)

    io.open = builtins.open = guarded


def _child(fn: Callable[[], object], at: Kill | None, out_fd: int, err_fd: int) -> None:
    code = 1
    try:
        os.dup2(err_fd, 2)
        sys.stderr = os.fdopen(err_fd, "w", buffering=1)
        renames = _Renames(at)
        renames.install()
        _refuse_writes_in_place()
        value = fn()
        with os.fdopen(out_fd, "wb") as out:
            out.write(pickle.dumps((value, renames.done)))
        code = 0
    except BaseException:
        traceback.print_exc(file=sys.stderr)
    finally:
        sys.stderr.flush()
        os._exit(code)


def _fork(fn: Callable[[], object], at: Kill | None, timeout: float) -> tuple[int, bytes, str]:
    """(exit status, what the child sent back, its stderr)."""
    r, w = os.pipe()
    with tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:  # the child never returns
            os.close(r)
            _child(fn, at, w, err.fileno())
        os.close(w)
        data, deadline = b"", time.monotonic() + timeout
        with os.fdopen(r, "rb", buffering=0) as pipe:
            while True:
                if not select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))[0]:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    raise TimeoutError(f"the forked run did not finish in {timeout} s")
                chunk = pipe.read(1 << 20)
                if not chunk:
                    break
                data += chunk
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        err.seek(0)
        return status, data, err.read().decode(errors="replace")


def call(fn: Callable[[], object], *, timeout: float = 120.0) -> tuple[object, list[str]]:
    """Run ``fn()`` to the end in a fork; returns (its picklable result, the paths it renamed onto, in order)."""
    status, data, err = _fork(fn, None, timeout)
    if status != 0:
        raise AssertionError(f"the forked run failed (exit status {status}):\n{err}")
    return pickle.loads(data)


def kill(fn: Callable[[], object], at: Kill, *, timeout: float = 120.0) -> None:
    """Run ``fn()`` in a fork killed at ``at``; fails if it ended otherwise (e.g. made fewer renames)."""
    status, _, err = _fork(fn, at, timeout)
    if status != KILLED:
        raise AssertionError(f"{at}: the forked run was not killed there (exit status {status}):\n{err}")
