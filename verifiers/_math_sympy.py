"""The sympy half of the math verifier, run in a child process that can be killed.

sympy has no cancellation, and ``signal.alarm`` only works in the main thread of the main
process. So the hard comparisons (surds, symbolic identities, equations) run in a persistent
child (``python -m verifiers._math_sympy``) that answers length-prefixed pickles on its
stdin/stdout. A check that overruns its limit gets the child killed and a fresh one started
at once, so the next check does not pay for it. The child exits when its stdin closes, so
it never outlives its parent.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

_HEADER = struct.Struct("<I")
STARTUP_TIMEOUT = 60.0  # importing sympy on a loaded machine; never counted against a check


class WorkerTimeout(Exception):
    """The child did not answer within the check's limit (it has been replaced)."""


class SympyWorker:
    """Client for one child process; thread-safe (one request at a time)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._ready = False
        self._lock = threading.Lock()
        self._owner = os.getpid()

    @property
    def started(self) -> bool:
        """Whether this process has started a child (alive or not: `call` replaces a dead one)."""
        return self._proc is not None and self._owner == os.getpid()

    def start(self) -> None:
        """Start the child now (it imports sympy in the background)."""
        if self._owner != os.getpid():
            # Forked: the pipes belong to the parent's conversation; never share them.
            self._proc, self._owner = None, os.getpid()
        if self._proc is None or self._proc.poll() is not None:
            root = str(Path(__file__).resolve().parent.parent)
            env = dict(os.environ)
            env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
            env.setdefault("OMP_NUM_THREADS", "1")
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "verifiers._math_sympy"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                bufsize=0,
            )
            self._ready = False
            weakref.finalize(self, _kill, self._proc)

    def close(self) -> None:
        """Stop the child (a later call starts a new one)."""
        with self._lock:
            if self._proc is not None:
                _kill(self._proc)
                self._proc = None

    def call(self, request: Any, timeout: float) -> tuple[Any, float]:
        """Send ``request``; return (reply, seconds spent waiting for the child to start).

        Raises WorkerTimeout after ``timeout`` s; a fresh child's start-up is not counted.
        """
        with self._lock:
            self.start()
            proc = self._proc
            assert proc is not None and proc.stdin is not None and proc.stdout is not None
            startup_wait = 0.0
            if not self._ready:
                started = time.monotonic()
                if _read(proc, STARTUP_TIMEOUT) != "ready":
                    raise RuntimeError("sympy worker failed to start")
                self._ready = True
                startup_wait = time.monotonic() - started
            payload = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
            try:
                _write_all(proc.stdin.fileno(), _HEADER.pack(len(payload)) + payload)
                return _read(proc, timeout), startup_wait
            except (WorkerTimeout, BrokenPipeError, EOFError, OSError) as exc:
                _kill(proc)
                self._proc = None
                self.start()  # replacement warms up while the caller moves on
                if isinstance(exc, WorkerTimeout):
                    raise
                raise RuntimeError(f"sympy worker died: {exc!r}") from exc


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(proc: subprocess.Popen, n: int, deadline: float) -> bytes:
    fd = proc.stdout.fileno()  # type: ignore[union-attr]
    chunks, got = [], 0
    while got < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise WorkerTimeout()
        chunk = os.read(fd, n - got)
        if not chunk:
            raise EOFError("sympy worker exited")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read(proc: subprocess.Popen, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    (size,) = _HEADER.unpack(_read_exact(proc, _HEADER.size, deadline))
    return pickle.loads(_read_exact(proc, size, deadline))


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


# ---- child side ---------------------------------------------------------------------------


def _serve() -> None:
    # Keep the protocol channel private: anything sympy prints goes to stderr instead.
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    stdin = sys.stdin.buffer
    from verifiers import _math_symbolic  # imports sympy

    _math_symbolic.warmup()

    def send(obj: Any) -> None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        _write_all(out.fileno(), _HEADER.pack(len(data)) + data)

    send("ready")
    while True:
        header = stdin.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return  # parent closed the pipe
        (size,) = _HEADER.unpack(header)
        request = pickle.loads(stdin.read(size))
        try:
            reply = _math_symbolic.handle(request)
        except Exception as exc:  # one bad request must not kill the worker
            reply = ("error", f"{type(exc).__name__}: {exc}")
        send(reply)


def main() -> None:
    try:
        _serve()
    except BrokenPipeError:
        # The parent went away (e.g. a stage ended with os._exit before its verifiers closed):
        # nobody is left to answer, so end quietly instead of printing a traceback on its stderr.
        os._exit(0)


if __name__ == "__main__":
    main()
