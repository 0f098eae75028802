"""The process that lives inside one bubblewrap sandbox and runs jobs for the host.

This file is not imported by the host: its source is handed to ``python -I -S -c`` inside
the sandbox, so it may use the standard library only. It runs as PID 1 of the sandbox's
PID namespace and forks, per job:

* ``G`` (the candidate): drops to the candidate uid, applies rlimits, compiles the program
  (reporting the outcome on a status pipe *before* any candidate code runs), then either runs
  it as ``__main__`` (script jobs) or imports it and serves calls over two pipes (test jobs).
* ``T`` (the judge, test jobs only): forked *after* G, so G's memory never held the tests.
  It drops to a second uid, binds every candidate function as a stub that calls into G, runs
  the tests, and writes the verdict to a pipe that only the worker reads. Values cross from
  G to T as tagged JSON that decodes to exact builtin types only, so the candidate can
  neither forge the verdict nor smuggle an object with a rigged ``__eq__`` into the tests.

After each job every process but PID 1 is killed, and the writable /tmp is emptied.
Frames on stdin/stdout and on the G<->T pipes: 4-byte big-endian length + UTF-8 JSON.
"""

import builtins
import ctypes
import json
import math
import os
import resource
import select
import signal
import struct
import sys
import time
import traceback

MAX_FRAME = 64 << 20  # host -> worker and G -> T messages; larger means a hostile peer
MAX_VALUE_DEPTH = 200
CANDIDATE_FILE = "<candidate>"
TESTS_FILE = "<tests>"
WORK_DIR = "/tmp"
MEMORY_CHECK_S = 0.05
PAGE = os.sysconf("SC_PAGE_SIZE")

# ---------------------------------------------------------------------------- framing


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


# ------------------------------------------------------------------ value encoding
# Candidate -> judge values are JSON with tagged objects; decoding yields exact builtin types.


def encode_value(x, depth=0):
    if depth > MAX_VALUE_DEPTH:
        raise ValueError("value nested too deeply")
    t = type(x)
    if x is None or t is bool or t is str:
        return x
    if t is int:
        return x if x.bit_length() < 10000 else {"#i": hex(x)}
    if t is float:
        return x
    if t is list:
        return [encode_value(v, depth + 1) for v in x]
    if t is tuple:
        return {"#t": [encode_value(v, depth + 1) for v in x]}
    if t is dict:
        return {"#d": [[encode_value(k, depth + 1), encode_value(v, depth + 1)] for k, v in x.items()]}
    if t is set or t is frozenset:
        return {"#s" if t is set else "#f": [encode_value(v, depth + 1) for v in x]}
    if t is bytes:
        return {"#b": x.hex()}
    if t is complex:
        return {"#c": [x.real, x.imag]}
    # Common stand-ins that compare like their plain counterparts; converting them here
    # (in the untrusted process) is safe because the judge only ever decodes plain data.
    mod = getattr(t, "__module__", "")
    if mod == "collections" and t.__name__ in ("Counter", "OrderedDict", "defaultdict"):
        return encode_value(dict(x), depth)
    if mod == "numpy" and hasattr(x, "item") and getattr(x, "ndim", None) == 0:
        return encode_value(x.item(), depth)
    raise TypeError(f"value of type {t.__module__}.{t.__qualname__} is not plain data")


def decode_value(x, depth=0):
    if depth > MAX_VALUE_DEPTH:
        raise ValueError("value nested too deeply")
    t = type(x)
    if x is None or t in (bool, int, float, str):
        return x
    if t is list:
        return [decode_value(v, depth + 1) for v in x]
    if t is dict and len(x) == 1:
        ((tag, v),) = x.items()
        if tag == "#t":
            return tuple(decode_value(e, depth + 1) for e in _list(v))
        if tag == "#d":
            out = {}
            for pair in _list(v):
                if type(pair) is not list or len(pair) != 2:
                    raise ValueError("bad dict item")
                out[decode_value(pair[0], depth + 1)] = decode_value(pair[1], depth + 1)
            return out
        if tag == "#s":
            return {decode_value(e, depth + 1) for e in _list(v)}
        if tag == "#f":
            return frozenset(decode_value(e, depth + 1) for e in _list(v))
        if tag == "#b" and type(v) is str:
            return bytes.fromhex(v)
        if tag == "#c" and type(v) is list and len(v) == 2:
            return complex(float(v[0]), float(v[1]))
        if tag == "#i" and type(v) is str:
            return int(v, 16)
    raise ValueError("malformed value")


def _list(v):
    if type(v) is not list:
        raise ValueError("malformed value")
    return v


# ------------------------------------------------------------------------ process set-up

LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_DUMPABLE = 4


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
    cpu = max(1, math.ceil(limits["cpu_s"]) + math.ceil(resource.getrusage(resource.RUSAGE_SELF).ru_utime))
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


def become(uid):
    """Switch to ``uid`` (root hosts; None: keep the user namespace's only uid)."""
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def fresh_stdio():
    import io

    def text(fd, mode):
        raw = io.FileIO(fd, mode, closefd=False)
        buf = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
        return io.TextIOWrapper(buf, encoding="utf-8", errors="strict" if mode == "r" else "backslashreplace")

    sys.stdin, sys.stdout, sys.stderr = text(0, "r"), text(1, "w"), text(2, "w")
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr


# ------------------------------------------------------------------- G: the candidate


def candidate_main(cfg, status_fd, job_fd):
    """Runs in G, forked before its job exists. Never returns: every path ends in os._exit."""
    code = 70
    try:
        become(cfg["candidate_uid"])
        os.umask(0o077)
        os.chdir(WORK_DIR)
        fresh_stdio()
        job = recv_frame(job_fd)
        os.close(job_fd)
        if job is None:
            os._exit(0)
        set_limits(job["limits"], int(job["limits"]["processes"]))
        sys.argv = ["main.py"]
        try:
            program = compile(job["code"], CANDIDATE_FILE, "exec", dont_inherit=True)
        except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as exc:
            msg = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            os.write(status_fd, ("syntax:" + msg[-2000:]).encode("utf-8", "replace"))
            os._exit(1)
        # From here on candidate code runs: nothing it does can be trusted, so the status
        # pipe is closed first and everything below only affects the candidate's own result.
        os.write(status_fd, b"compiled")
        os.close(status_fd)
        if job["kind"] == "script":
            code = run_script(program)
        else:
            code = serve_calls(program)
    except BaseException:  # noqa: BLE001 - G must never return into the worker loop
        _print_exc()
    os._exit(code)


def run_script(program):
    """Run like ``python main.py``: SystemExit sets the status; threads and atexit run."""
    glb = {"__name__": "__main__", "__builtins__": builtins, "__file__": "main.py"}
    code = 0
    try:
        exec(program, glb)
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException:  # noqa: BLE001
        _print_exc()
        code = 1
    try:
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()  # join non-daemon threads, as at exit
        import atexit

        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001
        _print_exc()
        code = code or 1
    return code


def _print_exc():
    """Print the current traceback straight to fd 2: sys.stderr may be broken or rebound."""
    try:
        text = traceback.format_exc()
    except BaseException:  # noqa: BLE001
        text = "error while formatting the traceback\n"
    try:
        try:
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            pass
        os.write(2, text.encode("utf-8", "backslashreplace"))
    except OSError:
        pass


def _exit_code(value):
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    try:
        print(value, file=sys.stderr)
    except BaseException:  # noqa: BLE001
        pass
    return 1


def _describe(exc):
    try:
        text = str(exc)
    except BaseException:  # noqa: BLE001
        text = "<unprintable>"
    return [type(exc).__name__, text[:2000]]


def serve_calls(program):
    """Import the candidate, announce its names to T, then answer calls until T hangs up."""
    glb = {"__name__": "solution", "__builtins__": builtins}
    try:
        exec(program, glb)
    except BaseException as exc:  # noqa: BLE001 - reported to T, which decides
        send_frame(4, {"error": _describe(exc)})
        return 0
    names = {}
    for name, value in list(glb.items()):
        if name.startswith("__"):
            continue
        if type(value) is type(sys):
            names[name] = {"module": getattr(value, "__name__", "")}
        elif callable(value):
            names[name] = {"callable": True}
        else:
            try:
                names[name] = {"value": encode_value(value)}
            except (TypeError, ValueError):
                pass
    send_frame(4, {"names": names})
    while True:
        req = recv_frame(3)
        if req is None:
            return 0
        try:
            fn = glb[req["name"]]
            args = decode_value(req["args"])
            kwargs = decode_value(req["kwargs"])
            result = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - includes SystemExit from sys.exit()
            send_frame(4, {"raised": _describe(exc)})
            continue
        try:
            reply = {"value": encode_value(result)}
        except (TypeError, ValueError, RecursionError) as exc:
            reply = {"nondata": str(exc)[:500]}
        send_frame(4, reply)


# ------------------------------------------------------------------------ T: the judge


class CandidateFailure(BaseException):
    """Raised into the tests when the candidate died or returned a non-data object.

    A BaseException so that a test's ``except Exception`` cannot swallow it.
    """

    def __init__(self, kind, detail):
        super().__init__(detail)
        self.kind, self.detail = kind, detail


class UnsupportedTest(BaseException):
    """The tests passed something to the candidate that cannot cross a process boundary."""


class Remote:
    """Call channel to G, as seen from T."""

    def __init__(self):
        self.calls = 0

    def call(self, name, args, kwargs):
        try:
            payload = {"name": name, "args": encode_value(list(args)), "kwargs": encode_value(dict(kwargs))}
        except (TypeError, ValueError) as exc:
            raise UnsupportedTest(f"tests pass a non-data argument to {name}(): {exc}") from None
        try:
            send_frame(3, payload)
            reply = recv_frame(4)
        except (OSError, ValueError) as exc:
            raise CandidateFailure("died", f"candidate process failed: {exc}") from None
        if reply is None:
            raise CandidateFailure("died", f"candidate process exited during {name}()")
        self.calls += 1
        return reply_value(reply, name)


def reply_value(reply, name):
    if type(reply) is not dict:
        raise CandidateFailure("protocol", "malformed reply")
    if "value" in reply:
        try:
            return decode_value(reply["value"])
        except (ValueError, TypeError, RecursionError) as exc:
            raise CandidateFailure("protocol", f"malformed value from {name}(): {exc}") from None
    if "raised" in reply:
        kind, message = (list(reply["raised"]) + ["", ""])[:2]
        kind, message = str(kind), str(message)
        if kind == "MemoryError":
            raise CandidateFailure("memory", f"MemoryError in {name}()")
        if kind == "RecursionError":
            raise CandidateFailure("error", f"RecursionError in {name}(): {message}")
        cls = getattr(builtins, kind, None)
        if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == "builtins":
            try:
                exc = cls(message)
            except Exception:  # noqa: BLE001 - exotic constructor signatures
                exc = RuntimeError(f"{kind}: {message}")
        else:
            exc = RuntimeError(f"{kind}: {message}")
        exc.sdp_remote = f"{kind}: {message}"
        raise exc
    if "nondata" in reply:
        raise CandidateFailure("nondata", f"{name}() returned an object that is not plain data ({reply['nondata']})")
    raise CandidateFailure("protocol", "malformed reply")


def make_stub(remote, name):
    def stub(*args, **kwargs):
        return remote.call(name, args, kwargs)

    stub.__name__ = stub.__qualname__ = name
    return stub


def judge_main(cfg, result_fd, tests_fd):
    """Runs in T, forked before its job exists. Never returns."""
    verdict = {"passed": False, "kind": "error", "detail": "judge crashed"}
    try:
        become(cfg["judge_uid"])
        os.chdir("/")
        tests = recv_frame(tests_fd)
        os.close(tests_fd)
        if tests is None:
            os._exit(0)  # a script job: no judge needed
        set_limits(tests["limits"], 16)
        sys.set_int_max_str_digits(0)
        verdict = judge(tests)
    except BaseException as exc:  # noqa: BLE001
        verdict = {"passed": False, "kind": "error", "detail": "judge failed: " + " ".join(_describe(exc))}
    try:
        send_frame(result_fd, verdict)
    finally:
        os._exit(0)


def judge(tests):
    remote = Remote()
    try:
        hello = recv_frame(4)
    except (OSError, ValueError) as exc:
        hello = {"died": str(exc)}
    if type(hello) is not dict or "names" not in hello or type(hello["names"]) is not dict:
        if type(hello) is dict and "error" in hello:
            kind, message = (list(hello["error"]) + ["", ""])[:2]
            if kind == "MemoryError":
                return {"passed": False, "kind": "memory", "detail": "MemoryError while loading the program"}
            return {"passed": False, "kind": "error", "detail": f"{kind}: {message}"}
        return {"passed": False, "kind": "died", "detail": "program exited before the tests ran"}
    ns = {"__name__": "__tests__", "__builtins__": builtins}
    stubs = set()
    entry = tests.get("entry_point")
    for name, spec in hello["names"].items():
        # The candidate may not shadow builtins (a rigged abs() or len() would let any answer
        # through) nor dunders; whatever the tests define themselves replaces these names.
        if type(name) is not str or type(spec) is not dict or name.startswith("__") or (hasattr(builtins, name) and name != entry):
            continue
        if "callable" in spec:
            ns[name] = make_stub(remote, name)
            stubs.add(ns[name])
        elif "module" in spec:
            # Only `import x` as x: an alias could swap one module for another.
            if spec["module"] == name and name.isidentifier():
                try:
                    ns[name] = __import__(name)
                except BaseException:  # noqa: BLE001 - a module the judge cannot import is left out
                    pass
        elif "value" in spec:
            try:
                ns[name] = decode_value(spec["value"])
            except (ValueError, TypeError, RecursionError):
                pass
    source = tests["tests"]
    import linecache

    linecache.cache[TESTS_FILE] = (len(source), None, source.splitlines(True), TESTS_FILE)
    try:
        exec(compile(source, TESTS_FILE, "exec", dont_inherit=True), ns)
        check = ns.get("check")
        if entry and callable(check) and check not in stubs:
            if entry not in hello["names"] or "callable" not in hello["names"][entry]:
                return {"passed": False, "kind": "error", "detail": f"the program does not define {entry}()"}
            check(ns[entry])
    except CandidateFailure as exc:
        return {"passed": False, "kind": exc.kind, "detail": exc.detail}
    except UnsupportedTest as exc:
        return {"passed": False, "kind": "unsupported", "detail": str(exc)}
    except AssertionError as exc:
        return {"passed": False, "kind": "wrong", "detail": _where(exc) or "assertion failed"}
    except BaseException as exc:  # noqa: BLE001
        remote_text = getattr(exc, "sdp_remote", None)
        if remote_text:
            return {"passed": False, "kind": "error", "detail": remote_text}
        if isinstance(exc, NameError) and exc.name and exc.name not in ns:
            return {"passed": False, "kind": "error", "detail": f"NameError: {exc}"}
        return {"passed": False, "kind": "wrong", "detail": f"{type(exc).__name__} in tests: {_where(exc)}"}
    return {"passed": True, "kind": "passed", "detail": f"{remote.calls} calls"}


def _where(exc):
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == TESTS_FILE]
    text = " ".join(str(a) for a in exc.args)[:300]
    if frames:
        line = frames[-1]
        return f"tests line {line.lineno}: {(line.line or '').strip()[:300]}" + (f" ({text})" if text else "")
    return text


# ------------------------------------------------------------------------ the worker


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


FORWARD_BUF = bytearray(1 << 16)


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
    os.write(dst, head)
    view = memoryview(FORWARD_BUF)
    left = size
    try:
        while left:
            n = os.readv(src, [view[: min(left, len(FORWARD_BUF))]])
            if not n:
                raise EOFError("host closed the channel mid-job")
            left -= n
            chunk = view[:n]
            while chunk:
                chunk = chunk[os.write(dst, chunk) :]
    finally:
        FORWARD_BUF[:] = bytes(len(FORWARD_BUF))


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
        if calls:
            forward_tests(0, spares.tjob_w)
    except OSError:
        pass  # a spare that died is reported like any candidate that died
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
    pending = memoryview((stdin_data or "").encode("utf-8"))
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
    compiled = status_msg == b"compiled"
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
        "compiled": compiled,
        "syntax_error": syntax,
        "passed": passed,
        "judge": verdict,
        "truncated": state.truncated,
    }


def cleanup(cfg, max_fd):
    """Empty /tmp and drop System V IPC objects, with the candidate's own uid."""
    if not os.listdir(WORK_DIR) and not any(_sysv_rows(t) for t in ("shm", "sem", "msg")):
        return
    pid = os.fork()
    if pid == 0:
        try:
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
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


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
        # The next pair is forked before the result goes out, so that when the host has a
        # result the sandbox holds exactly this worker and two fresh, idle processes.
        spares = Spares(cfg, max_fd)
        send_frame(1, result)


if __name__ == "__main__":
    main()
