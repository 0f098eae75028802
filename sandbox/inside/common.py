"""Shared by every process inside the sandbox: framing and process set-up.

Everything under ``sandbox/inside`` runs inside the sandbox, under ``python -I -S``: the host
joins the four modules into one ``-c`` script (``sandbox.execution.worker_source``), dropping
their ``from sandbox.inside...`` imports, so they may use the standard library only.

Frames (host <-> worker, worker -> G/T, G <-> T): 4-byte big-endian length + UTF-8 JSON.
Values that cross between the candidate and the judge: ``sandbox.inside.values``.
"""

import ctypes
import json
import math
import os
import resource
import signal
import struct

MAX_FRAME = 64 << 20  # any message bigger than this comes from a hostile peer
LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_DUMPABLE = 4


def read_exact(fd, n):
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv_frame(fd):
    """One JSON frame; None on EOF. Reads exactly the frame's bytes and nothing after it."""
    head = read_exact(fd, 4)
    if head is None:
        return None
    (size,) = struct.unpack(">I", head)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes exceeds {MAX_FRAME}")
    body = read_exact(fd, size)
    if body is None:
        return None
    return json.loads(body)


def send_frame(fd, obj):
    body = json.dumps(obj, allow_nan=True).encode("utf-8", "surrogatepass")
    data = struct.pack(">I", len(body)) + body
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def place_fds(mapping, max_fd):
    """Make each target fd a copy of its source fd, and close every other fd above 2."""
    import fcntl

    top = max(list(mapping) + [2])
    high = {tgt: fcntl.fcntl(src, fcntl.F_DUPFD, top + 1) for tgt, src in mapping.items()}
    for tgt, src in high.items():
        os.dup2(src, tgt, inheritable=True)
    for fd in range(3, top + 1):
        if fd not in mapping:
            try:
                os.close(fd)
            except OSError:
                pass
    os.closerange(top + 1, max_fd)


def set_limits(limits, nproc):
    """Lower this process's rlimits to the job's (allowed after dropping the uid)."""
    # The supervisor enforces cpu_s exactly on the whole tree; this is a per-process backstop.
    cpu = math.ceil(float(limits["cpu_s"])) + 1
    mem = int(limits["memory_mb"]) << 20
    for res, value in (
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_AS, (mem, mem)),
        (resource.RLIMIT_FSIZE, (int(limits["file_size_mb"]) << 20,) * 2),
        (resource.RLIMIT_NPROC, (nproc, nproc)),
        (resource.RLIMIT_NOFILE, (int(limits["open_files"]),) * 2),
        (resource.RLIMIT_CORE, (0, 0)),
        (resource.RLIMIT_MSGQUEUE, (0, 0)),
        (resource.RLIMIT_MEMLOCK, (0, 0)),
    ):
        resource.setrlimit(res, value)


def drop_capabilities():
    """Clear every capability of this process: the supervisor's (kept by the worker for the
    per-job namespaces) must not reach candidate or judge. Fails closed."""
    header = struct.pack("=Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = ctypes.create_string_buffer(24)  # two zeroed __user_cap_data_struct
    if LIBC.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
    # No exec can bring them back: no_new_privs (bwrap) ignores setuid bits and file caps.


def become(uid):
    """Switch to ``uid`` (root hosts; None: keep the user namespace's only uid)."""
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    drop_capabilities()
    LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _describe(exc):
    try:
        text = str(exc)
    except BaseException:  # noqa: BLE001
        text = "<unprintable>"
    return [type(exc).__name__, text[:2000]]
