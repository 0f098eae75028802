"""Adversarial programs: every one must be rejected and leave the host untouched.

Each attack is a candidate module for a problem whose tests need ``double(x) == 2 * x``
(or a secret it should not be able to learn); the attack's own ``double`` is wrong, so only
a forged verdict or a sandbox escape could make it pass. After every attack the guard
asserts: no marker file on the host, no connection to the test's loopback server, no
process left in or from the sandbox, the pool still judging correctly, and this process
alive. Destructive attacks (bombs, signals to everything, ptrace) first run PROBE in the
same program, which exits before the attack unless it sees its own PID namespace and its
limits, so that a broken sandbox during development can never hit the host.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from sandbox import Limits, SandboxPool
from verifiers.code_verifier import judge_verdict

NONCE = uuid.uuid4().hex[:12]
SECRET = f"sdp-secret-{uuid.uuid4().hex}"
SECRET_ENV = "SDP_ATTACK_SECRET"
TESTS_NONCE = f"TESTNONCE-{uuid.uuid4().hex}"
DOUBLE_TESTS = "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(10) == 20\n"
SECRET_TESTS = f"def check(candidate):\n    assert candidate(0) == {SECRET!r}\n"
LIMITS = Limits(wall_s=5.0)  # generous: only the attacks in SHORT are meant to run into it
SHORT = Limits(wall_s=1.5)
TIMED = {"fork_bomb", "infinite_loop", "long_sleep", "stop_every_pid"}

PROBE = """
import os as _os, resource as _res
_pids = [p for p in _os.listdir("/proc") if p.isdigit()]
_safe = (
    _os.getuid() != 0
    and len(_pids) < 8
    and b"-S" in open("/proc/1/cmdline", "rb").read()
    and _res.getrlimit(_res.RLIMIT_NPROC)[1] <= 64
    and _res.getrlimit(_res.RLIMIT_AS)[1] != _res.RLIM_INFINITY
)
print("PROBE-OK" if _safe else "PROBE-FAILED", flush=True)
if not _safe:
    raise SystemExit(99)
"""

# name -> (program, tests, reasons it may be rejected with, destructive)
ATTACKS: dict[str, tuple[str, str, tuple[str, ...], bool]] = {
    "fork_bomb": ("""
def double(x):
    while True:
        try:
            os.fork()
        except OSError:
            pass
""", DOUBLE_TESTS, ("timeout",), True),
    "thread_bomb": ("""
import threading, time
def double(x):
    n = 0
    try:
        while True:
            threading.Thread(target=time.sleep, args=(100,), daemon=True).start()
            n += 1
    except (RuntimeError, MemoryError):
        pass
    print("threads", n, flush=True)
    return 3 * x
""", DOUBLE_TESTS, ("wrong answer",), True),
    "memory_bomb": ("""
def double(x):
    return len(bytearray(64 << 30))
""", DOUBLE_TESTS, ("memory limit",), False),
    "runaway_growth": ("""
def double(x):
    grow = []
    while True:
        grow.append("x" * (1 << 20))
""", DOUBLE_TESTS, ("memory limit", "timeout"), False),  # timeout: allocation slowed by load
    "forked_memory_bomb": ("""
import time
def double(x):
    for _ in range(6):
        if os.fork() == 0:
            block = b"x" * (250 << 20)
            time.sleep(30)
    time.sleep(30)
""", DOUBLE_TESTS, ("memory limit", "timeout"), True),  # timeout: allocation slowed by load
    "infinite_loop": ("""
def double(x):
    while True:
        pass
""", DOUBLE_TESTS, ("timeout",), False),
    "long_sleep": ("""
import time
time.sleep(3600)
def double(x):
    return 2 * x
""", DOUBLE_TESTS, ("timeout",), False),
    "output_flood": ("""
def double(x):
    while True:
        print("flood" * 1000)
""", DOUBLE_TESTS, ("output limit",), False),
    "stderr_flood": ("""
import sys
def double(x):
    while True:
        sys.stderr.write("flood" * 1000)
""", DOUBLE_TESTS, ("output limit",), False),
    "disk_fill": ("""
def double(x):
    i = 0
    try:
        while True:
            with open(f"fill{i}", "wb") as fh:
                fh.write(b"x" * (8 << 20))
            i += 1
    except OSError as exc:
        print("disk full after", i, exc, flush=True)
    return 3 * x
""", DOUBLE_TESTS, ("wrong answer",), False),
    "blocking_stdin": ("""
import sys
data = sys.stdin.read()
def double(x):
    return int(input())
""", DOUBLE_TESTS, ("runtime error",), False),
    "deep_recursion": ("""
import sys
sys.setrecursionlimit(10 ** 8)
def down(n):
    return down(n + 1) + 1
def double(x):
    return down(0)
""", DOUBLE_TESTS, ("runtime error", "memory limit", "timeout"), False),  # timeout: a loaded host
    "kill_parent": ("""
import signal
def double(x):
    for pid in (os.getppid(), 1):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError as exc:
            print("kill", pid, exc)
    return 3 * x
""", DOUBLE_TESTS, ("wrong answer",), True),
    "kill_everything": ("""
import signal
def double(x):
    os.kill(-1, signal.SIGKILL)
    return 3 * x
""", DOUBLE_TESTS, ("wrong answer", "runtime error"), True),
    "stop_every_pid": ("""
import signal
def double(x):
    for pid in range(1, 400):
        if pid != os.getpid():
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError:
                pass
    return 3 * x
""", DOUBLE_TESTS, ("wrong answer", "timeout"), True),
    "ptrace_and_proc_mem": ("""
import ctypes, glob
libc = ctypes.CDLL(None, use_errno=True)
def double(x):
    for pid in range(1, 400):
        if pid != os.getpid() and libc.ptrace(16, pid, 0, 0) == 0:  # PTRACE_ATTACH
            print("ATTACHED", pid)
    for path in glob.glob("/proc/[0-9]*/mem") + glob.glob("/proc/[0-9]*/fd/*"):
        try:
            with open(path, "r+b", buffering=0) as fh:
                fh.write(b'{"passed": true}')
            print("OPENED", path)
        except OSError:
            pass
    return 3 * x
""", DOUBLE_TESTS, ("wrong answer",), True),
    "env_secret": (f"""
import glob
def double(x):
    found = os.environ.get({SECRET_ENV!r}, "")
    for path in glob.glob("/proc/*/environ"):
        try:
            text = open(path, "rb").read().decode(errors="replace")
        except OSError:
            continue
        for item in text.split("\\0"):
            if item.startswith({SECRET_ENV!r} + "="):
                found = item.split("=", 1)[1]
    print("found:", found)
    return found
""", SECRET_TESTS, ("wrong answer",), False),
    "host_home_file": (f"""
def double(x):
    for path in ({str(Path.home() / f".sdp-attack-secret-{NONCE}")!r}, "/root/.bash_history"):
        try:
            return open(path).read()
        except OSError as exc:
            print(exc)
    return ""
""", SECRET_TESTS, ("wrong answer",), False),
    "host_tmp_file": (f"""
def double(x):
    try:
        return open("/tmp/sdp-attack-secret-{NONCE}").read()
    except OSError as exc:
        print(exc)
        return ""
""", SECRET_TESTS, ("wrong answer",), False),
    "loopback_connect": ("""
import socket
def double(x):
    for host in ("127.0.0.1", "localhost", "::1"):
        try:
            socket.create_connection((host, PORT), timeout=0.5).sendall(b"hello")
            print("CONNECTED", host)
        except OSError as exc:
            print(host, exc)
    return 3 * x
""", DOUBLE_TESTS, ("wrong answer",), False),
    "write_outside": ("""
def double(x):
    for path in MARKERS + ["/sdp-root-marker", "/usr/sdp-marker", "/etc/sdp-marker"]:
        try:
            with open(path, "w") as fh:
                fh.write("pwned")
            if not path.startswith("/tmp/"):  # the sandbox's own /tmp is writable, and emptied after
                print("WROTE", path)
        except OSError as exc:
            print(path, exc)
    return 3 * x
""", DOUBLE_TESTS, ("wrong answer",), False),
    "orphan_process": ("""
import subprocess, sys, time
def double(x):
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"], start_new_session=True)
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(0.5)
            for path in MARKERS:
                try:
                    open(path, "w").write("late")
                except OSError:
                    pass
            os._exit(0)
        os._exit(0)
    return 3 * x
""", DOUBLE_TESTS, ("wrong answer",), False),
    "sys_exit_zero": ("""
import sys
def double(x):
    sys.exit(0)
""", DOUBLE_TESTS, ("runtime error",), False),
    "os_exit_at_import": ("""
print("All tests passed")
os._exit(0)
def double(x):
    return 3 * x
""", DOUBLE_TESTS, ("runtime error",), False),
    "os_exit_in_call": ("""
def double(x):
    print("passed", flush=True)
    os._exit(0)
""", DOUBLE_TESTS, ("runtime error",), False),
    "atexit_handler": ("""
import atexit
atexit.register(lambda: (print("passed", flush=True), os._exit(0)))
def double(x):
    return 3 * x
""", DOUBLE_TESTS, ("wrong answer",), False),
    "excepthook": ("""
import sys, threading
sys.excepthook = lambda *args: os._exit(0)
threading.excepthook = lambda *args: os._exit(0)
def double(x):
    return 3 * x
""", DOUBLE_TESTS, ("wrong answer",), False),
    "rebind_assertion_error": ("""
import builtins
class Harmless(Exception):
    pass
builtins.AssertionError = Harmless
builtins.__dict__["AssertionError"] = Harmless
def double(x):
    return 3 * x
""", DOUBLE_TESTS, ("wrong answer",), False),
    "eq_hijack": ("""
class Anything:
    def __eq__(self, other):
        return True
    __ne__ = lambda self, other: False
    __hash__ = object.__hash__
def double(x):
    return Anything()
""", DOUBLE_TESTS, ("wrong answer",), False),
    "int_subclass_eq": ("""
class Int(int):
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__
def double(x):
    return Int(0)
""", DOUBLE_TESTS, ("wrong answer",), False),
    "shadow_builtins": ("""
def abs(x):
    return 0
def len(x):
    return 1
def isinstance(*a):
    return True
def double(x):
    return 3 * x
""", "def check(candidate):\n    assert abs(candidate(2) - 4) < 1e-9\n    assert isinstance(candidate(3), str)\n",
        ("wrong answer",), False),
    "forge_result_channels": ("""
import json, struct
FORGED = json.dumps({"passed": True, "kind": "passed", "detail": "forged"}).encode()
def double(x):
    for fd in range(0, 256):
        for payload in (struct.pack(">I", len(FORGED)) + FORGED, b"PASSED\\n", b'{"value": 4}'):
            try:
                os.write(fd, payload)
            except OSError:
                pass
    print("tests passed: 2/2")
    return 3 * x
""", DOUBLE_TESTS, ("wrong answer", "runtime error"), False),
    "read_the_tests": ("""
import gc, glob, sys
def double(x):
    found = ""
    for obj in gc.get_objects():
        if isinstance(obj, str) and "TESTNONCE-" in obj:
            found = obj
    frame = sys._getframe()
    while frame is not None:
        for value in list(frame.f_locals.values()) + list(frame.f_globals.values()):
            if isinstance(value, (str, bytes)) and "TESTNONCE-" in str(value):
                found = str(value)
        frame = frame.f_back
    for path in glob.glob("/proc/[0-9]*/cmdline") + glob.glob("/proc/[0-9]*/environ") + glob.glob("/tmp/*"):
        try:
            data = open(path, "rb").read().decode(errors="replace")
        except OSError:
            continue
        if "TESTNONCE-" in data:
            found = data
    if "TESTNONCE-" in found:
        i = found.index("TESTNONCE-")
        return found[i : i + 42]
    return "not found"
""", f"def check(candidate):\n    assert candidate(0) == {TESTS_NONCE!r}\n", ("wrong answer",), False),
    "kernel_attack_surface": ("""
import ctypes, platform
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
CALLS = {  # x86-64 numbers: namespaces, ptrace, bpf, io_uring, userfaultfd, perf, keyrings, mount
    "unshare(CLONE_NEWUSER)": (272, 0x10000000), "clone(CLONE_NEWUSER)": (56, 0x10000000 | 17, 0, 0, 0, 0),
    "ptrace(TRACEME)": (101, 0, 0, 0, 0), "bpf": (321, 0, 0, 0), "io_uring_setup": (425, 8, 0),
    "userfaultfd": (323, 0), "perf_event_open": (298, 0, 0, -1, -1, 0), "keyctl": (250, 0, -4, 1),
    "mount": (165, b"none", b"/tmp", b"tmpfs", 0, 0),
}
def double(x):
    if platform.machine() == "x86_64":
        for name, args in CALLS.items():
            if libc.syscall(*args) >= 0:
                print("ALLOWED", name)
    return 3 * x
""", DOUBLE_TESTS, ("wrong answer",), False),
    "deep_tree_and_ipc_litter": ("""
import ctypes
def double(x):
    libc = ctypes.CDLL(None, use_errno=True)
    for key in range(0x5D10, 0x5D18):  # state for a later program, hidden behind a tree clean-up chokes on
        libc.shmget(key, 4096, 0o1666), libc.semget(key, 1, 0o1666), libc.msgget(key, 0o1666)
    os.chdir("/tmp")
    for _ in range(2500):
        os.mkdir("d")
        os.chdir("d")
    open("note", "w").write("from an earlier program")
    os.chmod(".", 0)
    return 3 * x
""", DOUBLE_TESTS, ("wrong answer",), False),
    "escape_the_reaper": ("""
import ctypes, time
def double(x):
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: keep our orphans to ourselves
    for _ in range(3):
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(0.5)
                for path in MARKERS:
                    try:
                        open(path, "w").write("late")
                    except OSError:
                        pass
                while True:
                    pass
            os._exit(0)
    return 3 * x
""", DOUBLE_TESTS, ("wrong answer",), True),
    "lone_surrogate_error": ("""
def double(x):
    raise ValueError("\\udc80\\ud800 " + "\\x00\\x1b" * 3)
""", DOUBLE_TESTS, ("runtime error",), False),
    "generator_of_rigged_values": ("""
class Anything:
    def __eq__(self, other):
        return True
def double(x):
    yield Anything()
""", "def check(candidate):\n    assert list(candidate(2)) == [4]\n    assert next(iter(candidate(3))) == 6\n",
        ("wrong answer",), False),
    "mutate_arguments_into_non_data": ("""
def double(x, box=None):
    if box is not None:
        box.append(type("Fake", (), {"__eq__": lambda s, o: True})())
    return 3 * x
""", "def check(candidate):\n    box = []\n    candidate(2, box)\n    assert box == [4] or candidate(2) == 4\n",
        ("wrong answer",), False),
    "setuid_escalation": ("""
import subprocess
def double(x):
    for attempt in (lambda: os.setuid(0), lambda: os.setgid(0),
                    lambda: subprocess.run(["/usr/bin/newgrp", "root"], timeout=1, capture_output=True)):
        try:
            attempt()
        except Exception as exc:
            print(type(exc).__name__)
    return 3 * x if os.geteuid() != 0 else 2 * x
""", DOUBLE_TESTS, ("wrong answer",), False),
}


class LoopbackServer:
    """A TCP server on the host's loopback that counts connections."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture(scope="module")
def server():
    srv = LoopbackServer()
    # Sanity: the counter works, so "0 connections" below means something.
    socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
    deadline = time.monotonic() + 5
    while srv.connections < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert srv.connections == 1
    srv.connections = 0
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def secrets():
    """A secret in this process's environment, home directory and /tmp."""
    home_file = Path.home() / f".sdp-attack-secret-{NONCE}"
    tmp_file = Path(f"/tmp/sdp-attack-secret-{NONCE}")
    old = os.environ.get(SECRET_ENV)
    os.environ[SECRET_ENV] = SECRET
    for path in (home_file, tmp_file):
        path.write_text(SECRET)
    yield
    for path in (home_file, tmp_file):
        path.unlink(missing_ok=True)
    if old is None:
        os.environ.pop(SECRET_ENV, None)
    else:
        os.environ[SECRET_ENV] = old


@pytest.fixture(scope="module")
def pool(secrets):
    with SandboxPool(2) as p:  # started after the secret is in our environment
        yield p


def markers() -> list[str]:
    return [f"/tmp/sdp-attack-{NONCE}", str(Path.home() / f"sdp-attack-{NONCE}"),
            str(Path.cwd() / f"sdp-attack-{NONCE}"), str(Path(__file__).parent / f"sdp-attack-{NONCE}")]  # fmt: skip


def _worker_tree(worker) -> tuple[bool, set[int], list[psutil.Process]]:
    """(idle, the two spares, everything under the worker) for bwrap -> worker -> supervisor ->
    spares. Idle: one supervisor whose only descendants are its two fresh spares."""
    try:
        (inner,) = psutil.Process(worker.proc.pid).children()
        kids = inner.children()
        below = inner.children(recursive=True)
        if len(kids) != 1:
            return False, set(), below
        direct = {k.pid for k in below if k.ppid() == kids[0].pid}
    except (psutil.NoSuchProcess, ValueError):  # a process of the tree ended while it was read: not idle yet
        return False, set(), []
    return len(direct) == 2 and len(below) == 3, direct, below


def sandbox_processes(pool: SandboxPool, timeout: float = 30.0) -> list[psutil.Process]:
    """Processes left from the last program: once each worker has set up its next job (a fresh
    supervisor with its two idle spares), anything else under it, and any host process running
    as one of the pool's sandbox uids that is not such a spare."""
    extra, spares, uids = [], set(), set()
    for worker in list(pool._workers.values()):
        uids |= {v for v in worker.config.values() if v is not None}
        deadline = time.monotonic() + timeout  # a safety limit only: normally a few milliseconds
        idle, direct, below = _worker_tree(worker)
        while not idle and worker.alive and time.monotonic() < deadline:
            time.sleep(0.01)
            idle, direct, below = _worker_tree(worker)
        if idle:
            spares |= direct
        else:
            extra += below
    for proc in psutil.process_iter(["uids"]):
        if proc.info["uids"] and proc.info["uids"].real in uids and proc.pid not in spares:
            extra.append(proc)
    return extra


def judge(pool: SandboxPool, program: str, tests: str, limits: Limits = LIMITS):
    result = pool.run_tests(program, tests, entry_point="double", limits=limits)
    return result, judge_verdict(result, limits)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_is_rejected_and_host_untouched(name, pool, server):
    body, tests, reasons, destructive = ATTACKS[name]
    program = f"import os\nPORT = {server.port}\nMARKERS = {markers()!r}\n" + (PROBE if destructive else "") + body
    limits = SHORT if name in TIMED else LIMITS
    result, verdict = judge(pool, program, tests, limits)

    if destructive:
        assert "PROBE-OK" in result.stdout, result
    assert verdict.ok is False, (verdict, result)
    assert verdict.reason.startswith(reasons), (verdict, result)
    verdict.reason.encode("utf-8")  # whatever the program raised or printed, the reason can be written
    for text in (SECRET, TESTS_NONCE):
        assert text not in result.stdout + result.stderr
    assert "CONNECTED" not in result.stdout and "WROTE" not in result.stdout
    assert "ATTACHED" not in result.stdout and "OPENED" not in result.stdout and "ALLOWED" not in result.stdout

    # The host is untouched.
    assert sandbox_processes(pool) == []
    time.sleep(0.6 if name == "orphan_process" else 0.05)  # let a surviving orphan act
    assert [m for m in markers() if os.path.exists(m)] == []
    assert server.connections == 0
    assert psutil.Process().is_running()
    # The sandbox still judges correctly, with a clean /tmp.
    clean = ("import os\ndef double(x):\n    assert os.listdir('/tmp') == []\n"
             "    for t in ('shm', 'sem', 'msg'):\n        assert open(f'/proc/sysvipc/{t}').read().count('\\n') == 1, t\n"
             "    return 2 * x\n")  # fmt: skip
    ok, ok_verdict = judge(pool, clean, DOUBLE_TESTS)
    assert ok_verdict.ok is True, (ok_verdict, ok)


def test_kernel_keyrings_do_not_carry_over_to_the_next_program():
    """The user keyring outlives the program's processes: it must not reach the next one."""
    keyctl = (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.syscall.restype = ctypes.c_long\n"
        "NR = {'x86_64': (248, 249, 250), 'aarch64': (217, 218, 219)}[__import__('os').uname().machine]\n"
    )
    store = keyctl + f"print(libc.syscall(NR[0], b'user', b'sdp-note', b'{NONCE}', {len(NONCE)}, ctypes.c_long(-4)) > 0)"
    fetch = keyctl + (
        "kid = libc.syscall(NR[1], b'user', b'sdp-note', None, 0)\nbuf = ctypes.create_string_buffer(64)\n"
        "n = libc.syscall(NR[2], 11, ctypes.c_long(kid), buf, 64) if kid > 0 else 0\nprint(kid > 0, buf.raw[:max(n, 0)])"
    )
    with SandboxPool(1) as pool:
        # x86-64: the seccomp filter refuses keyrings outright; elsewhere the worker clears them
        assert pool.run_script(store).stdout in ("True\n", "False\n")
        assert pool.run_script(fetch).stdout == "False b''\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="PID scrambling needs the root-host (privileged bwrap) mode")
def test_the_pid_counter_does_not_carry_over_to_the_next_program():
    """An earlier program's fork count must not be readable from the next program's PID."""
    signal_forks = "import os\nprint(os.getpid())\nfor _ in range(30):\n    pid = os.fork()\n    if pid == 0:\n" \
                   "        os._exit(0)\n    os.waitpid(pid, 0)\n"  # fmt: skip
    with SandboxPool(1) as pool:
        pool.run_script("pass")  # past the first program, whose PIDs are not scrambled
        first = int(pool.run_script(signal_forks).stdout)
        second = int(pool.run_script("import os\nprint(os.getpid())").stdout)
    assert not 0 < second - first < 100


def test_there_are_enough_attacks():
    assert len(ATTACKS) >= 25
    assert sum(destructive for *_, destructive in ATTACKS.values()) >= 5


def test_probe_refuses_outside_a_sandbox(tmp_path):
    """The probe itself is sound: run on the host, it must refuse."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", PROBE + "\nprint('ATTACK WOULD RUN')"], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert "PROBE-FAILED" in out.stdout and "ATTACK WOULD RUN" not in out.stdout
    assert out.returncode == 99
