"""A thread-safe pool of warm sandboxes, created lazily, one pool per process.

Starting a sandbox (bwrap + Python) costs tens of milliseconds; a warm worker forks a
fresh, rlimited child per program instead, which costs about a millisecond. The pool
grows on demand up to ``size`` workers, replaces a worker that died, and is closed at
interpreter exit. After ``fork()`` a child process gets a pool of its own.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sandbox.execution import ExecResult, Limits, SandboxUnavailable, Worker, job_frames, result_from_reply

logger = logging.getLogger(__name__)

DEFAULT_LIMITS = Limits()


class SandboxPool:
    """Up to ``size`` warm sandboxes shared by any number of threads."""

    def __init__(self, size: int | None = None, *, tmp_size_mb: int = 64) -> None:
        self.size = max(1, size or os.cpu_count() or 1)
        self.tmp_size_mb = tmp_size_mb
        self._idle: queue.LifoQueue[Worker] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._free_slots = list(range(self.size))
        self._workers: dict[int, Worker] = {}
        self._closed = False
        self._pid = os.getpid()
        # bwrap's --die-with-parent is tied to the *thread* that started it, so all workers
        # are started from this one long-lived thread, never from a short-lived caller.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-spawn")

    # ------------------------------------------------------------------ public API

    def run_script(self, code: str, *, stdin: str | None = None, limits: Limits = DEFAULT_LIMITS) -> ExecResult:
        """Run ``code`` as ``__main__`` with ``stdin`` (closed when None); capture its output."""
        return self._run(job_frames("script", code, limits, stdin=stdin), limits)

    def run_tests(self, code: str, tests: str, *, entry_point: str | None = None,
                  limits: Limits = DEFAULT_LIMITS) -> ExecResult:  # fmt: skip
        """Import ``code``, then run ``tests`` (and ``check(entry_point)`` if both exist).

        ``result.passed`` is True only if the judge process ran every test to the end.
        """
        return self._run(job_frames("call", code, limits, tests=tests, entry_point=entry_point), limits)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop every worker. Idempotent; the pool cannot be used afterwards."""
        with self._lock:
            self._closed = True
            workers = list(self._workers.values())
            self._workers.clear()
        self._idle.put(None)  # wake waiters: they find the pool closed
        if os.getpid() != self._pid:
            return  # a forked child must not stop its parent's sandboxes
        for worker in workers:
            worker.close()
        self._spawner.shutdown(wait=False)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _run(self, frames: list[dict], limits: Limits) -> ExecResult:
        worker = self._acquire()
        started = time.monotonic()
        reply = None
        try:
            reply = worker.run(frames, limits.wall_s)
        finally:
            self._release(worker)
        return result_from_reply(reply, limits, started)

    def _acquire(self) -> Worker:
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                worker = None
            if worker is None:
                with self._lock:
                    if self._closed:
                        raise SandboxUnavailable("the sandbox pool is closed")
                    slot = self._free_slots.pop() if self._free_slots else None
                if slot is not None:
                    return self._start(slot)
                worker = self._idle.get()  # every slot is busy; None means one was freed
                if worker is None:
                    continue
            if worker.alive:
                return worker
            self._forget(worker)

    def _start(self, slot: int) -> Worker:
        try:
            worker = self._spawner.submit(Worker, slot=slot, tmp_size_mb=self.tmp_size_mb).result()
        except BaseException:
            self._free_slot(slot)
            raise
        with self._lock:
            self._workers[slot] = worker
        return worker

    def _free_slot(self, slot: int) -> None:
        with self._lock:
            self._free_slots.append(slot)
        self._idle.put(None)  # wake a thread waiting for a worker: it may start one now

    def _release(self, worker: Worker) -> None:
        if worker.alive and not self._closed:
            self._idle.put(worker)
        else:
            self._forget(worker)

    def _forget(self, worker: Worker) -> None:
        worker.kill()
        with self._lock:
            mine = self._workers.get(worker.slot) is worker
            if mine:
                del self._workers[worker.slot]
        if mine:
            self._free_slot(worker.slot)


_pools: dict[int, SandboxPool] = {}
_pools_lock = threading.Lock()


def get_pool(size: int | None = None) -> SandboxPool:
    """This process's shared pool, created on first use (``size`` applies then only)."""
    pid = os.getpid()
    pool = _pools.get(pid)
    if pool is None or pool.closed:
        with _pools_lock:
            pool = _pools.get(pid)
            if pool is None or pool.closed:
                pool = _pools[pid] = SandboxPool(size)
    return pool


@atexit.register
def _close_pools() -> None:
    pool = _pools.pop(os.getpid(), None)
    if pool is not None:
        pool.close()


def _after_fork_in_child() -> None:
    # The parent's workers belong to the parent: forget them without touching them.
    _pools.clear()
    global _pools_lock
    _pools_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
