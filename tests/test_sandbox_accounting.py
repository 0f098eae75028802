"""Issue 25: every CPU second and byte of a job is charged to it.

Children the kernel would reap itself (SIGCHLD ignored, SA_NOCLDWAIT) take their CPU time
with them, so the disposition of SIGCHLD cannot be changed; memfds (memory that no process's
RSS shows) cannot be created; System V shared memory counts against the memory budget.
Each hole has an attack and a legitimate program beside it.
"""

from __future__ import annotations

import pytest

from sandbox import Limits, SandboxPool, Status

# 200 children of 5 ms of CPU each, 1 s in all, against 0.5 s, while the parent sleeps: the
# same work in one process times out, so it must here too, however the children are reaped.
_BURN = """
import os, signal, time
{hide}
for _ in range(200):
    if os.fork() == 0:
        t = time.process_time()
        while time.process_time() - t < 0.005:
            pass
        os._exit(0)
    time.sleep(0.008)  # never waits for a child: the kernel reaps them, or they stay zombies
print("done")
"""
_IGNORE = "try:\n    signal.signal(signal.SIGCHLD, signal.SIG_IGN)\nexcept OSError as e:\n    print(e)"
_NOCLDWAIT = """
import ctypes
class Act(ctypes.Structure):
    _fields_ = [("handler", ctypes.c_void_p), ("mask", ctypes.c_ulong * 16), ("flags", ctypes.c_int),
                ("restorer", ctypes.c_void_p)]
libc = ctypes.CDLL(None, use_errno=True)
act = Act(handler=0, flags=2)  # SIG_DFL with SA_NOCLDWAIT
print(libc.sigaction(signal.SIGCHLD, ctypes.byref(act), None), ctypes.get_errno())
"""


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(1) as p:
        yield p


@pytest.mark.parametrize("hide", [_IGNORE, _NOCLDWAIT, ""], ids=["sig-ign", "sa-nocldwait", "plain"])
def test_auto_reaped_children_are_charged(pool, hide):
    result = pool.run_script(_BURN.format(hide=hide), limits=Limits(wall_s=60.0, cpu_s=0.5, processes=256))
    assert (result.status, result.limit) == (Status.TIMEOUT, "cpu"), result


# Legitimate signal and child-process patterns that must keep working.
LEGIT = [
    ("import signal\nsignal.signal(signal.SIGALRM, lambda *a: None)\nprint(signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL)",
     "True\n"),
    ("import subprocess\nprint(subprocess.run(['bash', '-c', 'echo a; (echo b)'], capture_output=True, text=True).stdout,"
     " end='')", "a\nb\n"),
    ("import subprocess\nprint(subprocess.check_output('echo c | cat', shell=True, text=True), end='')", "c\n"),
    ("import os\nr, w = os.pipe()\nif os.fork() == 0:\n    os.write(w, b'3')\n    os._exit(0)\nos.wait()\nprint(os.read(r, 1).decode())",
     "3\n"),
    ("import os\npid = os.fork()\nif pid == 0:\n    os._exit(7)\nprint(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))",
     "7\n"),
]  # fmt: skip


@pytest.mark.parametrize(("code", "stdout"), LEGIT)
def test_signal_and_child_patterns_still_work(pool, code, stdout):
    result = pool.run_script(code, limits=Limits(wall_s=20.0))
    assert (result.status, result.stdout) == (Status.OK, stdout), result


_SHM = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
for _ in range({segments}):
    sid = libc.shmget(0, {size}, 0o1600)  # IPC_PRIVATE | IPC_CREAT
    assert sid >= 0, ctypes.get_errno()
    addr = libc.shmat(sid, None, 0)
    ctypes.memset(addr, 1, {size})
    libc.shmdt(ctypes.c_void_p(addr))  # detached: the pages stay, in no process's RSS
print("held")
"""


def test_two_gib_of_shared_memory_fail_a_one_gib_budget(pool):
    code = _SHM.format(segments=8, size=256 << 20)
    result = pool.run_script(code, limits=Limits(wall_s=60.0, memory_mb=1024))
    assert (result.status, result.limit) == (Status.MEMORY, "memory"), result
    assert "held" not in result.stdout


def test_small_shared_memory_works_and_memfd_is_refused(pool):
    result = pool.run_script(_SHM.format(segments=4, size=4 << 20), limits=Limits(wall_s=20.0))
    assert (result.status, result.stdout) == (Status.OK, "held\n"), result
    code = "import os\ntry:\n    os.memfd_create('x')\nexcept PermissionError:\n    print('refused')"
    assert pool.run_script(code).stdout == "refused\n"


def test_two_gib_in_memfds_cannot_be_held(pool):
    code = "import os\nfor _ in range(8):\n    fd = os.memfd_create('x')\n    os.ftruncate(fd, 256 << 20)\n" \
           "    os.write(fd, b'1' * (256 << 20))\nprint('held')"  # fmt: skip
    result = pool.run_script(code, limits=Limits(wall_s=60.0, memory_mb=1024))
    assert result.status is not Status.OK and "held" not in result.stdout, result
