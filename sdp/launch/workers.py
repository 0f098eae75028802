"""Process pools that respect the machine: worker counts from this process's CPUs, local faults.

`usable_cpus()` is the number of CPUs this process may run on: its affinity mask
(`os.sched_getaffinity`), lowered by a cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`)
when one is set -- not `os.cpu_count()`, which counts the host's CPUs inside a container too.

`OrderedPool` runs a function over chunks of items in worker processes (pebble's `ProcessPool`,
spawned) and yields the results in input order, with a bounded number of chunks in flight, so
memory does not grow with the input. A worker that dies or hangs costs only its own chunk: that
chunk is retried item by item in parallel, and only the item that kills a worker again gets the
caller's fallback result (e.g. an `ok: null` "verifier crashed" verdict).
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def _cgroup_quota() -> float | None:
    """CPUs allowed by this process's cgroup CPU quota, or None when there is none."""
    try:
        rel = next(
            line.split(":", 2)[2].strip()
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if line.startswith("0::")
        )
    except (OSError, StopIteration):
        rel = ""
    for base in {Path("/sys/fs/cgroup") / rel.lstrip("/"), Path("/sys/fs/cgroup")}:
        try:
            quota, period = (base / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            continue
        if quota != "max":
            return int(quota) / int(period)
        return None
    try:
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 else None


def usable_cpus() -> int:
    """CPUs this process may use: affinity mask, capped by a cgroup quota (rounded up), at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def _worker_init() -> None:
    # Workers are single-threaded; N workers x M BLAS threads would oversubscribe the CPUs.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


class OrderedPool:
    """Map `fn(chunk) -> list of results` over chunks of items in worker processes, in order.

    `fallback(item, reason)` gives the result of an item whose worker died or hung even when it
    ran alone. `chunk_timeout(n)` is the wall-clock allowance of a chunk of n items.
    """

    def __init__(
        self,
        fn: Callable[[list[T]], list[R]],
        fallback: Callable[[T, str], R],
        *,
        workers: int,
        chunk_size: int = 32,
        chunk_timeout: Callable[[int], float] = lambda n: 60.0 + 10.0 * n,
    ) -> None:
        import pebble

        self.fn, self.fallback, self.chunk_size, self.chunk_timeout = fn, fallback, chunk_size, chunk_timeout
        self.workers = max(1, workers)
        # spawn, not fork: the calling process holds threads (tqdm, torch) that fork would copy broken.
        self._pool = pebble.ProcessPool(
            max_workers=self.workers, initializer=_worker_init, context=multiprocessing.get_context("spawn")
        )

    def __enter__(self) -> OrderedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.stop()
        self._pool.join()

    def _submit(self, chunk: list[T]) -> Future:
        return self._pool.schedule(self.fn, args=(chunk,), timeout=self.chunk_timeout(len(chunk)))

    def _collect(self, chunk: list[T], future: Future) -> list[R]:
        try:
            return list(future.result())
        except Exception as exc:  # ProcessExpired (worker died), TimeoutError, pickling errors
            reason = _fault(exc)
        if len(chunk) == 1:
            return [self.fallback(chunk[0], reason)]
        # Only this chunk is affected: retry its items one by one, in parallel, to find the culprit.
        singles = [(item, self._submit([item])) for item in chunk]
        return [r for item, f in singles for r in self._collect([item], f)]

    def map(self, items: Iterable[T], max_in_flight: int | None = None) -> Iterator[R]:
        """Results of every item, in input order; at most `max_in_flight` chunks pending at once."""
        limit = max_in_flight or self.workers * 4
        pending: deque[tuple[list[T], Future]] = deque()
        chunk: list[T] = []
        for item in items:
            chunk.append(item)
            if len(chunk) >= self.chunk_size:
                pending.append((chunk, self._submit(chunk)))
                chunk = []
                while len(pending) >= limit:
                    yield from self._collect(*pending.popleft())
        if chunk:
            pending.append((chunk, self._submit(chunk)))
        while pending:
            yield from self._collect(*pending.popleft())


def _fault(exc: BaseException) -> str:
    if isinstance(exc, FutureTimeout | TimeoutError):
        return "verifier timed out (its worker process was stopped)"
    name = type(exc).__name__
    if name == "ProcessExpired":
        return "verifier crashed"
    return f"verifier error: {name}: {exc}"


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of `size` items (the last may be shorter)."""
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
