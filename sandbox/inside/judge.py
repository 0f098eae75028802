"""T, the judge process: runs the tests against stubs that call the candidate in G.

T runs as its own uid (root hosts), is not dumpable, and holds the only write end of the
verdict pipe; the candidate cannot reach it. Every candidate function becomes a stub that
sends its arguments to G and decodes the reply into exact builtin types, so neither exit
codes, printed markers, exit hooks nor rigged ``__eq__`` can make a test pass.
"""

import builtins
import linecache
import os
import sys
import traceback

from sandbox.inside.common import _describe, become, recv_frame, send_frame, set_limits
from sandbox.inside.values import MAX_VALUE_DEPTH, build_exception, decode_value, deep_call, encode_value, exception_class  # noqa: E501

TESTS_FILE = "<tests>"


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
        return self.request({"name": name}, name, args, kwargs)

    def request(self, target, label, args=(), kwargs=None, attr=None, op=None):
        if attr is not None:
            payload = {**target, "attr": attr}
        elif op is not None:
            payload = {**target, "op": op}
        else:
            try:
                payload = {**target, "args": deep_call(encode_value, list(args)),
                           "kwargs": deep_call(encode_value, dict(kwargs or {}))}  # fmt: skip
            except (TypeError, ValueError, RecursionError) as exc:
                raise UnsupportedTest(f"tests pass a non-data argument to {label}(): {exc}") from None
        try:
            deep_call(send_frame, 3, payload)
            reply = deep_call(recv_frame, 4)
        except (OSError, ValueError, RecursionError) as exc:
            raise CandidateFailure("died", f"candidate process failed: {exc}") from None
        if reply is None:
            raise CandidateFailure("died", f"candidate process exited during {label}")
        self.calls += 1
        if type(reply) is dict and "args" in reply and attr is None and op is None:
            copy_back_arguments(args, kwargs or {}, reply, label)
        if op == "next" and reply == {"stop": True}:
            raise StopIteration
        return reply_value(reply, label, self)


def copy_back_arguments(args, kwargs, reply, label):
    """Apply the program's in-place changes to the tests' own argument objects."""
    try:
        new_args = deep_call(decode_value, reply["args"])
        new_kwargs = deep_call(decode_value, reply.get("kwargs", {"#d": []}))
    except Exception as exc:  # noqa: BLE001 - whatever the candidate sent, never a crash of the judge
        raise CandidateFailure("protocol", f"malformed arguments from {label}(): {exc}") from None
    if type(new_args) is not list or len(new_args) != len(args) or type(new_kwargs) is not dict:
        raise CandidateFailure("protocol", f"malformed arguments from {label}()")
    for old, new in zip(args, new_args):
        copy_back(old, new)
    for key, old in kwargs.items():
        if key in new_kwargs:
            copy_back(old, new_kwargs[key])


def copy_back(old, new, depth=0):
    """Make ``old`` (the tests' object) equal ``new`` (plain data) in place, keeping the identity
    of nested containers where the shapes agree. Returns the object to store at ``old``'s place."""
    if depth > MAX_VALUE_DEPTH:
        return new
    if isinstance(old, list) and type(new) is list:
        merged = [copy_back(o, n, depth + 1) for o, n in zip(old, new)] + new[len(old) :]
        old[:] = merged
        return old
    if isinstance(old, dict) and type(new) is dict:
        merged = {k: copy_back(old[k], v, depth + 1) if k in old else v for k, v in new.items()}
        old.clear()
        old.update(merged)
        return old
    if isinstance(old, set) and type(new) is set:
        old.clear()
        old.update(new)
        return old
    if type(old) is tuple and type(new) is tuple and len(old) == len(new):
        for o, n in zip(old, new):
            copy_back(o, n, depth + 1)
        return old
    return new


class RemoteObject:
    """A candidate object that is not plain data (a class instance, a bound method).

    Tests may call it and read its attributes; each access is a call into G. It equals
    nothing but itself and has no truth value, length or items, so it can never stand in
    for an expected value.
    """

    __slots__ = ("_remote", "_handle", "_label")

    def __init__(self, remote, handle, label):
        object.__setattr__(self, "_remote", remote)
        object.__setattr__(self, "_handle", handle)
        object.__setattr__(self, "_label", label)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._remote.request({"handle": self._handle}, f"{self._label}.{name}", attr=name)

    def __call__(self, *args, **kwargs):
        return self._remote.request({"handle": self._handle}, f"{self._label}()", args, kwargs)

    def __iter__(self):
        # Each item crosses as plain data; an iterator object comes back as a RemoteIterator.
        return self._remote.request({"handle": self._handle}, f"iter({self._label})", op="iter")

    def __bool__(self):
        raise TypeError(f"{self._label} is a candidate object, not a value")

    def __repr__(self):
        return f"<candidate object {self._label}>"


class RemoteIterator(RemoteObject):
    """A generator or other iterator of the candidate, consumed one item per call into G."""

    __slots__ = ()

    def __iter__(self):
        return self

    def __next__(self):
        return self._remote.request({"handle": self._handle}, f"next({self._label})", op="next")


def reply_value(reply, name, remote):
    if type(reply) is not dict:
        raise CandidateFailure("protocol", "malformed reply")
    if "value" in reply:
        try:
            return deep_call(decode_value, reply["value"])
        except Exception as exc:  # noqa: BLE001 - whatever the candidate sent, never a crash of the judge
            raise CandidateFailure("protocol", f"malformed value from {name}(): {exc}") from None
    if "unsupported" in reply:
        raise CandidateFailure("error", f"unsupported value from {name}(): {str(reply['unsupported'])[:200]}")
    if "raised" in reply:
        raise remote_exception(reply, name)
    if "handle" in reply and type(reply["handle"]) is int:
        cls = RemoteIterator if reply.get("iterator") is True else RemoteObject
        return cls(remote, reply["handle"], f"{name}: {str(reply.get('type'))[:100]}")
    raise CandidateFailure("protocol", "malformed reply")


def remote_exception(reply, name):
    """The exception the tests see for one the candidate raised: its own class where the judge
    has it, else a stand-in of the same name under every known class of its chain, built from
    plain data (``sandbox.inside.values``). Failures of the program itself (MemoryError,
    RecursionError) end the tests; StopIteration becomes a RuntimeError, as under PEP 479,
    so that it cannot silently end a loop over results."""
    kind, message = (list(reply["raised"]) + ["", ""])[:2] if type(reply["raised"]) is list else ("", "")
    kind, message = str(kind)[:200], str(message)[:2000]
    data = reply.get("exc")
    chain = [str(e[1]) for e in data["mro"] if type(e) is list and len(e) == 2] if type(data) is dict and type(
        data.get("mro")) is list else [kind]  # fmt: skip
    if "MemoryError" in chain:
        return CandidateFailure("memory", f"MemoryError in {name}()")
    if "RecursionError" in chain:
        return CandidateFailure("error", f"RecursionError in {name}(): {message}")
    if type(data) is dict and "Exception" not in chain:
        # SystemExit, KeyboardInterrupt, GeneratorExit: under CPython they end the tests, and
        # no `except Exception` in a test may catch them.
        return CandidateFailure("error", f"{kind} in {name}(): {message}")
    exc = None
    if "StopIteration" not in chain and "StopAsyncIteration" not in chain:
        try:
            cls = exception_class(data)
            exc = build_exception(cls, data, message) or build_exception(cls, {"args": None}, message)
        except Exception:  # noqa: BLE001 - malformed: the generic stand-in below
            exc = None
    if exc is None:
        exc = RuntimeError(f"{kind}: {message}")
    exc.sdp_remote = f"{kind}: {message}"
    return exc


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
        hello = deep_call(recv_frame, 4)
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
        if type(name) is not str or type(spec) is not dict:
            continue
        if name.startswith("__") or (hasattr(builtins, name) and name != entry):
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
                ns[name] = deep_call(decode_value, spec["value"])
            except Exception:  # noqa: BLE001 - a malformed value is left out
                pass
    source = tests["tests"]
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
