"""Issue 25: nothing one job changes is there for the next.

Counters a job can move and a later job could read (tmpfs inode numbers, System V IPC ids,
the loopback device's socket counters and TIME_WAIT sockets, free space on /tmp) would let
samples of one problem learn from each other which guess the judge accepted. Each job gets
its own /tmp, network and IPC namespaces, so a job reads the same values whatever ran before.
"""

from __future__ import annotations

import pytest

from sandbox import Limits, SandboxPool, Status

LIMITS = Limits(wall_s=20.0)

# What a job can observe of the state that earlier jobs could have changed.
OBSERVE = r"""
import ctypes, os, socket
libc = ctypes.CDLL(None)
fd = os.open("/tmp/probe", os.O_CREAT | os.O_WRONLY)
st = os.statvfs("/tmp")
state = {
    "tmp inode": os.fstat(fd).st_ino,
    "tmp free": (st.f_bfree, st.f_ffree),
    "shm id": libc.shmget(0, 4096, 0o1600), "sem id": libc.semget(0, 1, 0o1600), "msg id": libc.msgget(0, 0o1600),
    "udp": [l for l in open("/proc/net/snmp") if l.startswith("Udp:")][1],
    "tcp": [l for l in open("/proc/net/snmp") if l.startswith("Tcp:")][1],
    "tcp sockets": len(open("/proc/net/tcp").readlines()),
    "sockstat": open("/proc/net/sockstat").read(),
}
print(repr(state))
"""

# Moves every counter above, leaving TIME_WAIT sockets and IPC objects behind.
DISTURB = r"""
import ctypes, os, socket
libc = ctypes.CDLL(None)
for i in range(50):
    open(f"/tmp/f{i}", "w").write("x" * 5000)
for _ in range(20):
    libc.shmget(0, 4096, 0o1600), libc.semget(0, 1, 0o1600), libc.msgget(0, 0o1600)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(30):
    u.sendto(b"1", ("127.0.0.1", 9))
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen()
for _ in range(5):
    c = socket.create_connection(srv.getsockname())
    a, _ = srv.accept()
    c.close()  # the client closes first: its side stays in TIME_WAIT
    a.close()
print("disturbed")
"""


def test_a_job_sees_the_same_state_whatever_ran_before():
    with SandboxPool(1) as pool:
        first = pool.run_script(OBSERVE, limits=LIMITS)
        assert first.status is Status.OK, first
        disturbed = pool.run_script(DISTURB, limits=LIMITS)
        assert disturbed.stdout == "disturbed\n", disturbed
        for _ in range(2):
            again = pool.run_script(OBSERVE, limits=LIMITS)
            assert again.stdout == first.stdout


@pytest.mark.parametrize(
    ("code", "stdout"),
    [
        ("import socket, threading\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\ns.listen()\n"
         "threading.Thread(target=lambda: s.accept()[0].sendall(b'hi'), daemon=True).start()\n"
         "print(socket.create_connection(s.getsockname()).recv(2).decode())", "hi\n"),
        ("import tempfile, os\nwith tempfile.TemporaryDirectory() as d:\n"
         "    open(os.path.join(d, 'a'), 'w').write('1')\n    print(os.listdir(d))", "['a']\n"),
        ("import ctypes\nl = ctypes.CDLL(None)\nprint(l.semget(0, 1, 0o1600) >= 0)", "True\n"),
    ],
)  # fmt: skip
def test_legitimate_use_of_loopback_tmp_and_ipc(code, stdout):
    with SandboxPool(1) as pool:
        result = pool.run_script(code, limits=LIMITS)
    assert (result.status, result.stdout) == (Status.OK, stdout), result


def test_candidate_and_judge_hold_no_capability_and_cannot_unshare():
    code = ("import ctypes\nl = ctypes.CDLL(None, use_errno=True)\n"
            "cap = [x for x in open('/proc/self/status') if x.startswith('CapEff')][0].split()[1]\n"
            "print(cap, l.unshare(0x40000000), ctypes.get_errno())")  # fmt: skip
    with SandboxPool(1) as pool:
        result = pool.run_script(code, limits=LIMITS)
        tests = pool.run_tests("def f():\n    return 1\n", "import os\nassert 'CapEff:\\t0000000000000000' in open('/proc/self/status').read()")
    assert result.stdout == "0000000000000000 -1 1\n", result
    assert tests.passed is True, tests.judge
