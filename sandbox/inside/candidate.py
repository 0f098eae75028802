"""G, the candidate process: runs the untrusted program, as a script or as a call server.

G is forked (and switched to the candidate uid) before its job exists, so it never holds
the job's tests. It compiles the program and reports the outcome on the status pipe
*before* any candidate code runs; after that nothing it says is trusted: in test jobs it
only answers the judge's calls, with plain data, over two pipes.
"""

import builtins
import os
import sys
import traceback

from sandbox.inside.common import _describe, become, recv_frame, send_frame, set_limits
from sandbox.inside.values import TooDeep, decode_value, deep_call, encode_value, exception_data

CANDIDATE_FILE = "<candidate>"
WORK_DIR = "/tmp"


def fresh_stdio():
    import io

    def text(fd, mode):
        raw = io.FileIO(fd, mode, closefd=False)
        buf = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
        return io.TextIOWrapper(buf, encoding="utf-8", errors="strict" if mode == "r" else "backslashreplace")

    sys.stdin, sys.stdout, sys.stderr = text(0, "r"), text(1, "w"), text(2, "w")
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr


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


class Quitter:
    """``exit``/``quit`` as ``site`` defines them (the sandbox runs Python with ``-S``)."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"Use {self.name}() or Ctrl-D (i.e. EOF) to exit"

    def __call__(self, code=None):
        try:
            sys.stdin.close()
        except BaseException:  # noqa: BLE001 - as site.Quitter
            pass
        raise SystemExit(code)


def program_module(name):
    """A fresh module for the program, registered in ``sys.modules`` as CPython does for
    ``__main__`` (dataclasses, ``typing.get_type_hints`` and pickle look the module up there)."""
    import types

    module = types.ModuleType(name)
    module.__builtins__ = builtins
    if name == "__main__":
        module.__file__ = "main.py"
    sys.modules[name] = module
    builtins.exit, builtins.quit = Quitter("exit"), Quitter("quit")
    return module.__dict__


def run_script(program):
    """Run like ``python main.py``: SystemExit sets the status; threads and atexit run."""
    glb = program_module("__main__")
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


def serve_calls(program):
    """Import the candidate, announce its names to T, then answer calls until T hangs up."""
    glb = program_module("solution")
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
                names[name] = {"value": deep_call(encode_value, value)}
            except (TypeError, ValueError, RecursionError):
                pass
    _flush()
    deep_call(send_frame, 4, {"names": names})
    handles = []  # objects that are not plain data stay here; the judge gets their index
    while True:
        req = deep_call(recv_frame, 3)
        if req is None:
            return 0
        args = kwargs = None
        try:
            if "handle" in req:
                target = handles[req["handle"]]
                op = req.get("op")
                if "attr" in req:
                    result = getattr(target, req["attr"])
                elif op == "iter":
                    result = iter(target)
                elif op == "next":
                    try:
                        result = next(target)
                    except StopIteration:
                        send_frame(4, {"stop": True})
                        continue
                else:
                    args, kwargs = deep_call(decode_value, req["args"]), deep_call(decode_value, req["kwargs"])
                    result = target(*args, **kwargs)
            else:
                args, kwargs = deep_call(decode_value, req["args"]), deep_call(decode_value, req["kwargs"])
                result = glb[req["name"]](*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - includes SystemExit from sys.exit()
            _flush()
            reply = {"raised": _describe(exc), "exc": _exception_data(exc), **_mutated(req, args, kwargs)}
            deep_call(send_frame, 4, reply)
            continue
        try:
            reply = {"value": deep_call(encode_value, result)}
        except TooDeep as exc:
            reply = {"unsupported": str(exc)}  # a reason for the verdict, not an opaque handle
        except (TypeError, ValueError, RecursionError):
            handles.append(result)
            reply = {"handle": len(handles) - 1, "type": type(result).__name__[:100]}
            if callable(getattr(type(result), "__next__", None)):
                reply["iterator"] = True  # a generator or iterator: the tests may consume it
        _flush()
        deep_call(send_frame, 4, {**reply, **_mutated(req, args, kwargs)})


def _exception_data(exc):
    try:
        return deep_call(exception_data, exc)
    except BaseException:  # noqa: BLE001 - the judge falls back to the name and text
        return None


def _flush():
    """What the program printed so far reaches the worker before the judge hears back (a test
    job's call server is killed, not exited, when the tests are done)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001 - a stream the program broke is its own business
            pass


def _mutated(req, args, kwargs):
    """The arguments' state after the call, if the call changed them (in-place tasks)."""
    if args is None:
        return {}
    try:
        after = deep_call(encode_value, args), deep_call(encode_value, kwargs)
    except (TypeError, ValueError, RecursionError):
        return {}  # the program put non-data into an argument: nothing the tests could compare
    if deep_call(after.__eq__, (req["args"], req["kwargs"])):
        return {}
    return {"args": after[0], "kwargs": after[1]}
