"""The worker: PID 1 of one sandbox, running jobs for the host one at a time.

For each job it hands the code to a pre-forked candidate process G and the tests to a
pre-forked judge process T, then watches both: output (capped), a wall-clock deadline,
the sandbox's total resident memory, and the judge's verdict. Afterwards every process but
PID 1 is killed, /tmp and System V IPC objects are cleared, and a fresh G/T pair is forked
before the result goes back to the host.
"""

import ctypes
import json
import math
import os
import select
import signal
import struct
import sys
import time

from sandbox.inside.candidate import WORK_DIR, candidate_main
from sandbox.inside.common import LIBC, MAX_FRAME, PR_SET_DUMPABLE, place_fds, read_exact, recv_frame, send_frame
from sandbox.inside.judge import judge_main

MEMORY_CHECK_S = 0.05
PAGE = os.sysconf("SC_PAGE_SIZE")
FORWARD_BUF = bytearray(1 << 16)
KEYCTL_SYSCALL = {"x86_64": 250, "aarch64": 219}
KEYS_BASELINE = None  # the candidate uid's key usage right after the last clean-up


class Job:
    """Bookkeeping for one job's processes and pipes in the worker."""

    def __init__(self):
        self.out = bytearray()
        self.err = bytearray()
        self.truncated = False
        self.killed_for = None


class Spares:
    """A candidate process G and a judge process T, forked ahead of the next job.

    Forking, dropping the uid and setting up stdio happen while the host is busy elsewhere;
    a job then only has to hand over its code (to G) and its tests (to T). G is forked
    before the job's tests ever reach this worker.
    """

    def __init__(self, cfg, max_fd):
        in_r, self.in_w = os.pipe()
        self.out_r, out_w = os.pipe()
        self.err_r, err_w = os.pipe()
        self.st_r, st_w = os.pipe()
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        self.res_r, res_w = os.pipe()
        gjob_r, self.gjob_w = os.pipe()
        tjob_r, self.tjob_w = os.pipe()
        self.gpid = os.fork()
        if self.gpid == 0:
            try:
                place_fds({0: in_r, 1: out_w, 2: err_w, 3: req_r, 4: resp_w, 5: st_w, 6: gjob_r}, max_fd)
                candidate_main(cfg, 5, 6)
            finally:
                os._exit(71)
        self.tpid = os.fork()
        if self.tpid == 0:
            try:
                null = os.open("/dev/null", os.O_RDWR)
                place_fds({0: null, 1: null, 2: null, 3: req_w, 4: resp_r, 5: res_w, 6: tjob_r}, max_fd)
                judge_main(cfg, 5, 6)
            finally:
                os._exit(71)
        for fd in (in_r, out_w, err_w, st_w, req_r, req_w, resp_r, resp_w, res_w, gjob_r, tjob_r):
            os.close(fd)


def forward_tests(src, dst):
    """Copy the tests frame from the host to T without ever holding it as a Python object.

    The bytes pass through one reused buffer that is zeroed afterwards, so the next
    candidate (forked from this process) cannot dig the expected answers out of freed memory.
    """
    head = read_exact(src, 4)
    if head is None:
        raise EOFError("host closed the channel mid-job")
    (size,) = struct.unpack(">I", head)
    if size > MAX_FRAME:
        raise ValueError(f"tests frame of {size} bytes exceeds {MAX_FRAME}")
    view = memoryview(FORWARD_BUF)
    left = size
    writable = _write_all(dst, head)
    try:
        while left:
            n = os.readv(src, [view[: min(left, len(FORWARD_BUF))]])
            if not n:
                raise EOFError("host closed the channel mid-job")
            left -= n
            # A judge that died still gets its whole frame read off the host's channel.
            writable = writable and _write_all(dst, view[:n])
    finally:
        FORWARD_BUF[:] = bytes(len(FORWARD_BUF))


def _write_all(fd, data):
    """False if the reader is gone."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        return False
    return True


def run_job(job, spares, cfg, max_fd):
    start = time.monotonic()
    limits = job["limits"]
    deadline = start + float(limits["wall_s"])
    cap = int(limits["output_bytes"])
    state = Job()
    calls = job["kind"] == "call"
    gpid, tpid = spares.gpid, spares.tpid
    out_r, err_r, st_r, in_w = spares.out_r, spares.err_r, spares.st_r, spares.in_w
    res_r = spares.res_r if calls else None
    try:
        send_frame(spares.gjob_w, job)
    except OSError:
        pass  # a candidate process that died is reported like any that died
    if calls:
        forward_tests(0, spares.tjob_w)
    os.close(spares.gjob_w)
    os.close(spares.tjob_w)
    if not calls:
        os.close(spares.res_r)
    stdin_data = job.get("stdin") if not calls else None
    statuses = {}
    pidfds = {os.pidfd_open(gpid): gpid}
    if calls:
        pidfds[os.pidfd_open(tpid)] = tpid
    poller = select.poll()
    for fd in (out_r, err_r, st_r) + ((res_r,) if res_r else ()):
        poller.register(fd, select.POLLIN)
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    os.set_blocking(in_w, False)
    pending = memoryview((stdin_data or "").encode("utf-8", "replace"))
    if pending:
        poller.register(in_w, select.POLLOUT)
    else:
        os.close(in_w)
        in_w = None
    open_reads = {out_r: state.out, err_r: state.err}
    status_msg = bytearray()
    result_msg = bytearray()
    g_exit_at = None
    memory_budget = int(limits["memory_mb"]) << 20
    next_memory_check = start + MEMORY_CHECK_S
    while True:
        now = time.monotonic()
        if now >= deadline:
            state.killed_for = "timeout"
            break
        if gpid in statuses and (not open_reads or (g_exit_at and now - g_exit_at > 0.2)):
            # Script done (output drained, or a leftover child still holds the pipes); a
            # test job also ends when G is gone, once the judge has reported.
            if not calls or tpid in statuses:
                break
        if calls and ((tpid in statuses and res_r is None) or _complete(result_msg)):
            break
        if now >= next_memory_check:
            next_memory_check = now + MEMORY_CHECK_S
            if sandbox_rss() > memory_budget:
                state.killed_for = "memory"
                break
        timeout_ms = max(1, int((min(deadline, next_memory_check) - now) * 1000))
        if gpid in statuses:
            timeout_ms = min(timeout_ms, 50)
        for fd, ev in poller.poll(timeout_ms):
            if fd in pidfds:
                pid = pidfds.pop(fd)
                poller.unregister(fd)
                os.close(fd)
                _, status, usage = os.wait4(pid, 0)
                statuses[pid] = (status, usage.ru_utime + usage.ru_stime)
                if pid == gpid:
                    g_exit_at = time.monotonic()
            elif fd == in_w:
                try:
                    n = os.write(in_w, pending[:65536])
                    pending = pending[n:]
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    pending = pending[:0]
                if not pending:
                    poller.unregister(in_w)
                    os.close(in_w)
                    in_w = None
            elif fd in (st_r, res_r):
                chunk = os.read(fd, 65536)
                target = status_msg if fd == st_r else result_msg
                if chunk and len(target) < MAX_FRAME:
                    target += chunk
                else:
                    poller.unregister(fd)
                    os.close(fd)
                    if fd == st_r:
                        st_r = None
                    else:
                        res_r = None
            else:
                chunk = os.read(fd, 65536)
                if not chunk:
                    poller.unregister(fd)
                    os.close(fd)
                    del open_reads[fd]
                    continue
                buf = open_reads[fd]
                room = cap - len(state.out) - len(state.err)
                buf += chunk[: max(0, room)]
                if len(chunk) > room:
                    state.truncated = True
                    state.killed_for = "output"
        if state.killed_for:
            break
    duration = time.monotonic() - start
    # Everything in this PID namespace except ourselves (PID 1) goes.
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass
    while True:
        try:
            pid, status, usage = os.wait4(-1, 0)
        except ChildProcessError:
            break
        if pid in (gpid, tpid) and pid not in statuses:
            statuses[pid] = (status, usage.ru_utime + usage.ru_stime)
    # Every writer is dead now: collect what is still in the pipes (up to the cap) and close.
    for fd, buf in open_reads.items():
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            room = cap - len(state.out) - len(state.err)
            buf += chunk[: max(0, room)]
            state.truncated = state.truncated or len(chunk) > room
    for fd in list(open_reads) + list(pidfds) + [x for x in (st_r, res_r, in_w) if x is not None]:
        os.close(fd)
    cleanup(cfg, max_fd)
    return summarize(job, state, statuses, gpid, status_msg, result_msg, duration)


def _complete(msg):
    return len(msg) >= 4 and len(msg) >= 4 + struct.unpack(">I", msg[:4])[0]


def sandbox_rss():
    """Resident bytes of every process in the sandbox but ourselves.

    RLIMIT_AS caps each process; this caps their sum, so a fork bomb of processes that
    each stay under the limit cannot exhaust the host.
    """
    total = 0
    for name in os.listdir("/proc"):
        if name.isdigit() and name != "1":
            try:
                with open(f"/proc/{name}/statm", "rb") as fh:
                    total += int(fh.read().split()[1]) * PAGE
            except (OSError, IndexError, ValueError):
                pass
    return total


def summarize(job, state, statuses, gpid, status_msg, result_msg, duration):
    limits = job["limits"]
    status, cpu = statuses.get(gpid, (None, 0.0))
    exit_code = os.waitstatus_to_exitcode(status) if status is not None else None
    sig = -exit_code if exit_code is not None and exit_code < 0 else None
    stderr_text = state.err.decode("utf-8", "replace")
    syntax = status_msg.decode("utf-8", "replace")[7:] if status_msg.startswith(b"syntax:") else None
    verdict = None
    if result_msg:
        try:
            verdict = json.loads(bytes(result_msg[4:]))
        except ValueError:
            verdict = {"passed": False, "kind": "error", "detail": "unreadable judge verdict"}
    if state.killed_for == "timeout":
        outcome = "timeout"
    elif state.killed_for == "output":
        outcome = "output_limit"
    elif state.killed_for == "memory":
        outcome = "memory"
    elif syntax is not None:
        outcome = "syntax_error"
    elif sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= 0.8 * math.ceil(float(limits["cpu_s"]))):
        outcome = "timeout"
    elif verdict is not None and verdict.get("kind") == "memory":
        outcome = "memory"
    elif job["kind"] == "call":
        outcome = "ok" if verdict is not None and verdict.get("passed") is True else "error"
    elif exit_code == 0:
        outcome = "ok"
    elif "MemoryError" in stderr_text[-2000:]:
        outcome = "memory"
    else:
        outcome = "error"
    passed = None
    if job["kind"] == "call":
        passed = outcome == "ok" and verdict is not None and verdict.get("passed") is True
    return {
        "status": outcome,
        "exit_code": exit_code,
        "signal": sig,
        "stdout": state.out.decode("utf-8", "replace"),
        "stderr": stderr_text,
        "duration": duration,
        "cpu_s": cpu,
        "syntax_error": syntax,
        "passed": passed,
        "judge": verdict,
        "truncated": state.truncated,
    }


def cleanup(cfg, max_fd):
    """Empty /tmp, drop System V IPC objects and clear the kernel keyrings of the candidate's
    uid (which outlive its processes: a channel to the next program), with that uid."""
    global KEYS_BASELINE
    uid = cfg["candidate_uid"] if cfg["candidate_uid"] is not None else os.getuid()
    keys_dirty = _key_usage(uid) != KEYS_BASELINE
    if not keys_dirty and not os.listdir(WORK_DIR) and not any(_sysv_rows(t) for t in ("shm", "sem", "msg")):
        return
    pid = os.fork()
    if pid == 0:
        try:
            os.closerange(0, max_fd)  # the host's channel stays with the worker
            if cfg["candidate_uid"] is not None:
                os.setgroups([])
                os.setresgid(cfg["candidate_uid"], cfg["candidate_uid"], cfg["candidate_uid"])
                os.setresuid(cfg["candidate_uid"], cfg["candidate_uid"], cfg["candidate_uid"])
            import shutil

            for name in os.listdir(WORK_DIR):
                path = os.path.join(WORK_DIR, name)
                _make_removable(path)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
            remove_sysv_ipc()
            if keys_dirty:
                clear_keyrings()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    KEYS_BASELINE = _key_usage(uid)


def _key_usage(uid):
    """This uid's line of /proc/key-users (key and byte counts), or None."""
    try:
        with open("/proc/key-users") as fh:
            for line in fh:
                head, _, rest = line.partition(":")
                if head.strip() == str(uid):
                    return rest.split(None, 1)[1].strip()
    except (OSError, IndexError):
        pass
    return None


def clear_keyrings():
    """Unlink every key from the user, user-session and persistent keyrings of our uid."""
    sys_keyctl = KEYCTL_SYSCALL.get(os.uname().machine)
    if sys_keyctl is None:
        return
    keyctl = LIBC.syscall
    keyctl.restype = ctypes.c_long
    clear, get_persistent = 7, 22  # KEYCTL_CLEAR, KEYCTL_GET_PERSISTENT
    for ring in (-4, -5):  # KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING
        keyctl(sys_keyctl, clear, ctypes.c_long(ring))
    persistent = keyctl(sys_keyctl, get_persistent, ctypes.c_long(-1), ctypes.c_long(-1))
    if persistent > 0:
        keyctl(sys_keyctl, clear, ctypes.c_long(persistent))


def _make_removable(top):
    try:
        if not os.path.islink(top):
            os.chmod(top, 0o700)
    except OSError:
        pass
    for root, dirs, _ in os.walk(top, topdown=True):
        for d in dirs:
            path = os.path.join(root, d)
            try:
                if not os.path.islink(path):
                    os.chmod(path, 0o700)
            except OSError:
                pass


def _sysv_rows(table):
    try:
        with open(f"/proc/sysvipc/{table}") as fh:
            return fh.read().splitlines()[1:]
    except OSError:
        return []


def remove_sysv_ipc():
    IPC_RMID = 0
    for table, fn in (("shm", LIBC.shmctl), ("sem", LIBC.semctl), ("msg", LIBC.msgctl)):
        for row in _sysv_rows(table):
            parts = row.split()
            if len(parts) > 1:
                if table == "sem":
                    fn(int(parts[1]), 0, IPC_RMID)
                else:
                    fn(int(parts[1]), IPC_RMID, None)


def scramble_pids():
    """Start the next program's PIDs at a random point, so that how many processes earlier
    programs forked cannot be read off the next one's PID (needs CAP_CHECKPOINT_RESTORE,
    which root hosts grant the worker; elsewhere PIDs stay sequential)."""
    try:
        with open("/proc/sys/kernel/pid_max") as fh:
            pid_max = int(fh.read())
        start = 1000 + int.from_bytes(os.urandom(4), "big") % max(1, min(pid_max, 1 << 22) - 100_000)
        with open("/proc/sys/kernel/ns_last_pid", "w") as fh:
            fh.write(str(start))
    except (OSError, ValueError):
        pass


def main():
    max_fd = os.sysconf("SC_OPEN_MAX")
    os.closerange(3, max_fd)  # nothing from bwrap's setup may reach a candidate
    LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    cfg = json.loads(sys.argv[1])
    # Import once here what the forked children need, instead of once per child, and move
    # everything to the permanent GC generation so children do not copy it on collection.
    import atexit, fcntl, io, linecache, shutil  # noqa: E401, F401
    import gc

    gc.freeze()
    spares = Spares(cfg, max_fd)
    send_frame(1, {"hello": {"pid": os.getpid(), "uid": os.getuid(), "python": sys.version.split()[0]}})
    while True:
        job = recv_frame(0)
        if job is None:
            return
        result = run_job(job, spares, cfg, max_fd)
        del job
        scramble_pids()
        # The next pair is forked before the result goes out, so that when the host has a
        # result the sandbox holds exactly this worker and two fresh, idle processes.
        spares = Spares(cfg, max_fd)
        send_frame(1, result)


if __name__ == "__main__":
    main()
