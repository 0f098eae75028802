"""S, the supervisor of one job: forks G and T, runs the job, measures it, cleans up, reports.

The worker (PID 1) never reads a job: for each one it forks a fresh S from its own clean
image, and S forks the candidate G and the judge T *before* it reads the job from the host
channel. So no process that runs a program was ever forked from a process that held another
job's code, tests, output or verdict. S is a child subreaper: every orphan of the job is
reparented to it, so it can kill and reap the whole tree and account for all of its CPU.

CPU time counts the candidate's whole tree: live processes and unreaped zombies through
``/proc/<pid>/stat`` (their own time plus that of children they reaped), and processes S
reaped through their rusage. The limit is the job's ``cpu_s`` exactly, checked every
``SCAN_S`` and again on the final, exact figure, so a verdict does not depend on how
rlimits round or on how many processes the work was spread over. RLIMIT_CPU stays as a
per-process backstop one second above.
"""

import json
import os
import resource
import select
import signal
import struct
import time

from sandbox.inside.candidate import candidate_main
from sandbox.inside.cleanup import cleanup
from sandbox.inside.common import LIBC, MAX_FRAME, place_fds, read_exact, recv_frame, send_frame
from sandbox.inside.isolate import fresh_namespaces
from sandbox.inside.judge import judge_main

SCAN_S = 0.02
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")
PR_SET_CHILD_SUBREAPER = 36
EXIT_DONE, EXIT_EOF, EXIT_RETIRE = 0, 3, 4


class Run:
    """What one job produced, collected by :func:`run_job` and summarised by :func:`finish`."""

    def __init__(self):
        self.out, self.err = bytearray(), bytearray()
        self.status_msg, self.result_msg = bytearray(), bytearray()
        self.truncated, self.killed_for = False, None
        self.gstatus, self.judge_cpu, self.duration = None, 0.0, 0.0
        self.stopped_by_us = False  # G was still running at the end: its status says nothing
        self.open_reads, self.open_fds = {}, []


class Spares:
    """The candidate process G and the judge process T of the next job, forked before it exists."""

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


def supervise(cfg, max_fd, keys_baseline):
    """The whole life of S; returns its exit status for the worker."""
    LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    fresh_namespaces(cfg)
    spares = Spares(cfg, max_fd)
    job = recv_frame(0)
    if job is None:
        return EXIT_EOF
    run = run_job(job, spares)
    cpu = max(0.0, kill_tree() - run.judge_cpu)
    result = finish(job, run, cpu)
    clean = cleanup(cfg, max_fd, keys_baseline)
    if not clean:
        result["retire"] = True
    send_frame(1, result)
    return EXIT_DONE if clean else EXIT_RETIRE


def forward_tests(src, dst):
    """Copy the tests frame from the host channel to T."""
    head = read_exact(src, 4)
    if head is None:
        raise EOFError("host closed the channel mid-job")
    (size,) = struct.unpack(">I", head)
    if size > MAX_FRAME:
        raise ValueError(f"tests frame of {size} bytes exceeds {MAX_FRAME}")
    body = read_exact(src, size)
    if body is None:
        raise EOFError("host closed the channel mid-job")
    _write_all(dst, head + body)  # a judge that died still had its frame read off the channel


def _write_all(fd, data):
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        return False
    return True


def tree_usage(skip):
    """(CPU seconds, resident bytes) of every process in the sandbox but those in ``skip``."""
    cpu_ticks = rss = 0
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in skip:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
            with open(f"/proc/{name}/statm", "rb") as fh:
                rss += int(fh.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        cpu_ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return cpu_ticks / TICK, rss + shm_bytes()


def shm_bytes():
    """Resident and swapped bytes of every System V shared memory segment of the job (its own
    IPC namespace). A segment holds memory with no process attached, so no process's RSS shows
    it; pages that are attached count here and in the RSS of each process that maps them."""
    try:
        with open("/proc/sysvipc/shm") as fh:
            head, *rows = fh.read().splitlines()
    except OSError:
        return 0
    names = head.split()
    cols = [names.index(c) for c in ("rss", "swap") if c in names] or [names.index("size")]
    total = 0
    for row in rows:
        fields = row.split()
        total += sum(int(fields[c]) for c in cols if c < len(fields))
    return total


def kill_tree():
    """Kill every process of the job and reap it; return the CPU seconds of all of them."""
    # One kill(-1) reaches every process: a fork racing with it fails (the parent has SIGKILL
    # pending), and the kernel links no new process while kill(-1) walks the list.
    try:
        os.kill(-1, signal.SIGKILL)  # everything in the namespace but PID 1 and us
    except ProcessLookupError:
        pass
    while True:  # orphans come to us (subreaper) as their parents die
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_job(job, spares):
    """Hand the job to G (and its tests to T), then watch the tree until it ends or a limit is hit."""
    run = Run()
    start = time.monotonic()
    limits = job["limits"]
    deadline = start + float(limits["wall_s"])
    cpu_limit = float(limits["cpu_s"])
    memory_budget = int(limits["memory_mb"]) << 20
    cap = int(limits["output_bytes"])
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
    statuses = {}
    reaped_cpu = 0.0  # G's, once reaped (its children's included); T's is the judge's, not the program's
    pidfds = {os.pidfd_open(gpid): gpid}
    if calls:
        pidfds[os.pidfd_open(tpid)] = tpid
    poller = select.poll()
    for fd in (out_r, err_r, st_r) + ((res_r,) if res_r else ()):
        poller.register(fd, select.POLLIN)
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    os.set_blocking(in_w, False)
    pending = memoryview(((job.get("stdin") if not calls else None) or "").encode("utf-8", "replace"))
    if pending:
        poller.register(in_w, select.POLLOUT)
    else:
        os.close(in_w)
        in_w = None
    open_reads = run.open_reads = {out_r: run.out, err_r: run.err}
    g_exit_at = None
    skip = {1, os.getpid(), tpid}
    next_scan = start + SCAN_S
    while not run.killed_for:
        now = time.monotonic()
        if now >= deadline:
            run.killed_for = "wall"
            break
        if gpid in statuses and (not open_reads or (g_exit_at and now - g_exit_at > 0.2)):
            # Script done (output drained, or a leftover child still holds the pipes); a
            # test job also ends when G is gone, once the judge has reported.
            if not calls or tpid in statuses:
                break
        if calls and ((tpid in statuses and res_r is None) or _complete(run.result_msg)):
            break
        if now >= next_scan:
            next_scan = now + SCAN_S
            cpu, rss = tree_usage(skip)
            # A second scan confirms: one scan may count a child its parent just reaped twice.
            if cpu + reaped_cpu > cpu_limit and tree_usage(skip)[0] + reaped_cpu > cpu_limit:
                run.killed_for = "cpu"
            elif rss > memory_budget:
                run.killed_for = "memory"
            continue
        timeout_ms = max(1, int((min(deadline, next_scan) - now) * 1000))
        for fd, _ in poller.poll(timeout_ms):
            if fd in pidfds:
                pid = pidfds.pop(fd)
                poller.unregister(fd)
                os.close(fd)
                _, statuses[pid], usage = os.wait4(pid, 0)
                if pid == gpid:
                    g_exit_at = time.monotonic()
                    reaped_cpu = usage.ru_utime + usage.ru_stime
                else:
                    run.judge_cpu = usage.ru_utime + usage.ru_stime
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
                target = run.status_msg if fd == st_r else run.result_msg
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
                room = cap - len(run.out) - len(run.err)
                buf += chunk[: max(0, room)]
                if len(chunk) > room:
                    run.truncated, run.killed_for = True, "output"
    run.duration = time.monotonic() - start
    run.stopped_by_us = gpid not in statuses
    # T first, on its own: its usage tells the judge's CPU from the program's.
    for pid in (tpid, gpid) if calls else (gpid,):
        if pid not in statuses:
            os.kill(pid, signal.SIGKILL)
            _, statuses[pid], usage = os.wait4(pid, 0)
            if pid == tpid:
                run.judge_cpu = usage.ru_utime + usage.ru_stime
    run.gstatus = statuses[gpid]
    run.open_fds = [x for x in (st_r, res_r, in_w) if x is not None] + list(pidfds)
    return run


def _complete(msg):
    return len(msg) >= 4 and len(msg) >= 4 + struct.unpack(">I", msg[:4])[0]


def finish(job, run, cpu):
    """Drain the pipes (every writer is dead now) and turn the run into the reply."""
    cap = int(job["limits"]["output_bytes"])
    for fd, buf in run.open_reads.items():
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            room = cap - len(run.out) - len(run.err)
            buf += chunk[: max(0, room)]
            run.truncated = run.truncated or len(chunk) > room
    for fd in list(run.open_reads) + run.open_fds:
        os.close(fd)
    return summarize(job, run, cpu)


def summarize(job, run, cpu):
    """Status and the limit that was hit, from measurements (never guessed from a signal)."""
    exit_code = None if run.stopped_by_us else os.waitstatus_to_exitcode(run.gstatus)
    sig = -exit_code if exit_code is not None and exit_code < 0 else None
    stderr_text = run.err.decode("utf-8", "replace")
    msg = run.status_msg
    syntax = msg.decode("utf-8", "replace")[7:] if msg.startswith(b"syntax:") else None
    verdict = None
    if run.result_msg:
        try:
            verdict = json.loads(bytes(run.result_msg[4:]))
        except ValueError:
            verdict = {"passed": False, "kind": "error", "detail": "unreadable judge verdict"}
    over_cpu = cpu > float(job["limits"]["cpu_s"]) or sig == signal.SIGXCPU
    if run.killed_for == "wall":
        outcome, limit = "timeout", "wall"
    elif run.killed_for == "cpu" or (over_cpu and run.killed_for is None):
        outcome, limit = "timeout", "cpu"
    elif run.killed_for in ("output", "memory"):
        outcome, limit = ("output_limit" if run.killed_for == "output" else "memory"), run.killed_for
    elif syntax is not None:
        outcome, limit = "syntax_error", None
    elif verdict is not None and verdict.get("kind") == "memory":
        outcome, limit = "memory", "memory"
    elif job["kind"] == "call":
        outcome = "ok" if verdict is not None and verdict.get("passed") is True else "error"
        limit = None
    elif exit_code == 0:
        outcome, limit = "ok", None
    elif "MemoryError" in stderr_text[-2000:]:
        outcome, limit = "memory", "memory"
    else:
        outcome, limit = "error", None
    passed = None
    if job["kind"] == "call":
        passed = outcome == "ok" and verdict is not None and verdict.get("passed") is True
    return {
        "status": outcome,
        "limit": limit,
        "exit_code": exit_code,
        "signal": sig,
        "stdout": run.out.decode("utf-8", "replace"),
        "stderr": stderr_text,
        "duration": run.duration,
        "cpu_s": cpu,
        "syntax_error": syntax,
        "passed": passed,
        "judge": verdict,
        "truncated": run.truncated,
    }
