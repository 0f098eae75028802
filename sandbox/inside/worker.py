"""The worker: PID 1 of one sandbox; a zygote that never holds a job.

For each job it forks a fresh supervisor S (``sandbox.inside.job``), which forks the
candidate G and the judge T, reads the job, runs it, cleans up and sends the result; the
worker only waits for S. Its own memory never holds any job's code, tests, output or
verdict, so nothing of one job can be found in the image of the processes of the next.
When S reports that clean-up left something behind (or S itself failed), the worker exits
and the host starts a new sandbox: fail closed.
"""

import json
import os
import signal
import sys
import traceback

from sandbox.inside.cleanup import key_usage
from sandbox.inside.common import LIBC, PR_SET_DUMPABLE, send_frame
from sandbox.inside.isolate import fresh_namespaces
from sandbox.inside.job import EXIT_DONE, supervise


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


def probe(cfg):
    """None if a job's supervisor can make its fresh namespaces here, else why not."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            fresh_namespaces(cfg)
            os._exit(0)
        except BaseException as exc:  # noqa: BLE001 - reported in the greeting
            os.write(write_end, f"per-job namespaces unavailable: {exc}".encode()[:2000])
        finally:
            os._exit(1)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    message = os.read(read_end, 4096).decode("utf-8", "replace")
    os.close(read_end)
    return None if status == 0 else message or "per-job namespaces unavailable"


def reap_everything():
    """Kill and reap whatever a failed supervisor may have left (orphans come to PID 1)."""
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            os.sched_yield()


def main():
    max_fd = os.sysconf("SC_OPEN_MAX")
    os.closerange(3, max_fd)  # nothing from bwrap's setup may reach a candidate
    LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    cfg = json.loads(sys.argv[1])
    # Import once here what the forked children need, instead of once per child, and move
    # everything to the permanent GC generation so children do not copy it on collection.
    import atexit, fcntl, io, linecache, resource, select, struct  # noqa: E401, F401
    import gc

    gc.freeze()
    uid = cfg["candidate_uid"] if cfg["candidate_uid"] is not None else os.getuid()
    keys_baseline = key_usage(uid)
    hello = {"pid": os.getpid(), "uid": os.getuid(), "python": sys.version.split()[0], "error": probe(cfg)}
    send_frame(1, {"hello": hello})
    while True:
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                code = supervise(cfg, max_fd, keys_baseline)
            except BaseException:  # noqa: BLE001 - reported on bwrap's stderr; the host sees no result
                traceback.print_exc()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        reap_everything()
        if os.waitstatus_to_exitcode(status) != EXIT_DONE:
            return  # end of input, a job that could not be cleaned up, or a failed supervisor
        scramble_pids()


if __name__ == "__main__":
    main()
