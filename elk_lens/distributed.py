"""Data parallelism on ``torch.distributed``: which rank this process is, and the few collectives elk-lens uses.

Under ``torchrun --nproc-per-node N`` each process runs the same script; ``capture`` deals the shards of its
statements over the ranks in turn (:meth:`Ranks.deal`), :func:`spread` deals a list of independent fits the
same way, and every rank ends with the whole result (docs/guide/scaling-out.md). The process
group is the caller's if one exists; otherwise, when torchrun's environment names more than one process
(``WORLD_SIZE > 1``), it is made here on first use — gloo on a machine without CUDA, NCCL with it — so a
script or ``elk-lens run SPEC`` needs no change to run data-parallel. Outside torchrun this is one rank of one.
"""

import atexit
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from elk_lens._wire import pack, unpack

__all__ = ["ALONE", "Ranks", "alone", "ranks", "spread"]

T, R = TypeVar("T"), TypeVar("R")


@dataclass(frozen=True)
class Ranks:
    """This process's ``rank`` among ``world`` processes."""

    rank: int
    world: int

    def deal(self, n: int) -> list[int]:
        """The ranks of the next ``n`` pieces of shared work (shards, spread items, spread stages), dealt in
        turn from where the last deal stopped: a job of many one-shard captures still spreads. Every rank
        must deal the same pieces in the same order, as code that runs the same collectives does."""
        global _dealt
        if self.world == 1:
            return [0] * n
        owners = [(_dealt + j) % self.world for j in range(n)]
        _dealt += n
        return owners

    def mine(self, items: Sequence[T]) -> list[T]:
        """This rank's share of ``items``, dealt as :meth:`deal` deals them."""
        return [x for x, owner in zip(items, self.deal(len(items)), strict=True) if owner == self.rank]

    def barrier(self) -> None:
        """Wait for every rank (e.g. until every shard is written)."""
        if self.world > 1:
            dist.barrier()

    def all_true(self, flag: bool) -> bool:
        """``flag`` on every rank: ranks that decide alone which path to take could wait on each other forever."""
        if self.world == 1:
            return flag
        t = torch.tensor([int(flag)], device=_device())
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())

    def broadcast_(self, t: Tensor, src: int) -> None:
        """Overwrite ``t`` on every rank with rank ``src``'s, byte for byte (no arithmetic)."""
        if self.world == 1:
            return
        device = _device()
        moved = t if t.device == device else t.to(device)
        dist.broadcast(moved, src=src)
        if moved is not t:
            t.copy_(moved)

    def broadcast_bytes(self, data: bytes | None, src: int) -> bytes:
        """Rank ``src``'s ``data`` on every rank (the others pass None): its length, then its bytes."""
        if self.world == 1:
            return data
        length = torch.tensor([len(data) if self.rank == src else 0], dtype=torch.int64)
        self.broadcast_(length, src)
        buffer = (
            torch.frombuffer(bytearray(data), dtype=torch.uint8)
            if self.rank == src
            else torch.empty(int(length), dtype=torch.uint8)
        )
        self.broadcast_(buffer, src)
        return data if self.rank == src else buffer.numpy().tobytes()


ALONE = Ranks(0, 1)  # a process outside torchrun
_dealt = 0  # pieces of shared work dealt so far in this process: the same count on every rank
_WORKING_ALONE: ContextVar[bool] = ContextVar("elk_lens_working_alone", default=False)


@contextmanager
def alone() -> Iterator[None]:
    """Within the block this process works as if it were the only one (``ranks()`` is one of one): for work
    one rank does while the others do other work, where a collective would wait for them forever."""
    token = _WORKING_ALONE.set(True)
    try:
        yield
    finally:
        _WORKING_ALONE.reset(token)


def _device() -> torch.device:
    """Where collectives run: the CPU on gloo; this rank's GPU on NCCL."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def ranks() -> Ranks:
    """This process's place in the job; makes the process group from torchrun's environment if needed."""
    if _WORKING_ALONE.get():
        return ALONE
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return ALONE
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={world} (torchrun?) but this torch build has no torch.distributed")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    atexit.register(_leave)  # the group is elk-lens's: it is elk-lens's to destroy
    return Ranks(dist.get_rank(), dist.get_world_size())


def _leave() -> None:
    """Destroy the process group this module made, while the interpreter is still whole: left to interpreter
    exit, gloo's worker threads can abort the process ("terminate called without an active exception",
    SIGABRT; pytorch/pytorch#190489), and torchrun then reports a finished run as failed (once in about 30
    launches of tests/distributed_job.py, in a loaded ``make test``). No barrier: a rank exiting on an error
    would wait for the others forever."""
    if dist.is_initialized():
        dist.destroy_process_group()


def spread(items: Sequence[T], work: Callable[[T], R]) -> list[R]:
    """``[work(x) for x in items]``, the items dealt over the ranks under ``torchrun`` (:meth:`Ranks.deal`),
    each computed alone by its rank.

    Every rank must call it with the same items; each ends with every result, sent between ranks as bytes
    (``elk_lens._wire``: JSON values, tuples, tensors and reporters, no pickle), so they equal one process's
    results as long as ``work`` depends on its item only (its own seed, no shared random state). Results
    arrive on the CPU. ``work`` runs :func:`alone`: a capture inside it does not wait for the others.
    Outside torchrun it is the plain list.
    """
    here = ranks()
    if here.world == 1:
        return [work(x) for x in items]
    owners = here.deal(len(items))
    with alone():
        mine = [work(x) for x, owner in zip(items, owners, strict=True) if owner == here.rank]
    results: list = [None] * len(items)
    for src in range(here.world):
        got = unpack(here.broadcast_bytes(pack(mine) if src == here.rank else None, src))
        for i, r in zip([i for i, owner in enumerate(owners) if owner == src], got, strict=True):
            results[i] = r
    return results
