"""Fresh namespaces per job: nothing one job changes is there for the next.

Each job's supervisor S, before it forks the candidate and the judge, makes a mount, network
and IPC namespace of its own: a new tmpfs on /tmp (inode numbers, free space and directory
state start over), a new loopback device (socket counters, ports, TIME_WAIT sockets) and
empty System V IPC tables (ids start over). They die with the job's last process. Then S
stacks the strict seccomp filter (``sandbox.seccomp``) on the outer one bwrap installed, so
that no process of the job can unshare or mount anything itself.
"""

import ctypes
import fcntl
import socket
import struct

from sandbox.inside.common import LIBC

CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWIPC = 0x00020000, 0x40000000, 0x08000000
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 2, 4, 1 << 14, 1 << 18
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
SIOCSIFFLAGS, IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x8914, 0x1, 0x8, 0x40


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _check(ret, what):
    if ret != 0:
        raise OSError(ctypes.get_errno(), f"{what} failed")


def fresh_namespaces(cfg):
    """Give this process (and what it forks next) its own /tmp, network and IPC; then filter."""
    _check(LIBC.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC), "unshare")
    _check(LIBC.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making / private")
    options = f"size={int(cfg['tmp_size_mb']) << 20},mode=1777".encode()
    _check(LIBC.mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, options), "mounting /tmp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", IFF_UP | IFF_LOOPBACK | IFF_RUNNING))
    install_filter(bytes.fromhex(cfg["seccomp"]))


def install_filter(program):
    """Stack ``program`` (``struct sock_filter[]``) on this process; bwrap set no_new_privs."""
    buf = ctypes.create_string_buffer(program, len(program))
    prog = SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    _check(LIBC.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "installing the job's filter")
