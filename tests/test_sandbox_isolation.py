"""The holes of issue 14, each closed by a test: nothing of one job reaches the next, clean-up
cannot be defeated (and retires the worker when it fails), the CPU limit covers the whole
process tree and is the same every run, and reasons name the limit that was measured.

Every test here uses a one-worker pool, so that consecutive programs run in the same sandbox.
"""

from __future__ import annotations

import uuid

import pytest

import sandbox.execution
from sandbox import Limits, SandboxPool, Status
from verifiers.code_verifier import judge_verdict

# Scans everything a program can reach of its own process for MARK + 32 hex digits: live
# objects (gc), every frame's locals and globals, and all of its readable memory.
SCAN = r'''
import gc, re, sys
MARK = "SDP" + "LEAK-"
pattern = re.compile(MARK.encode() + b"[0-9a-f]{32}")
found = set()
def look(value):
    if isinstance(value, (str, bytes)):
        data = value.encode("utf-8", "replace") if isinstance(value, str) else value
        found.update(m.decode() for m in pattern.findall(data))
for obj in gc.get_objects():
    if isinstance(obj, dict):
        for v in list(obj.values()):
            look(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            look(v)
frame = sys._getframe()
while frame is not None:
    for v in list(frame.f_locals.values()) + list(frame.f_globals.values()):
        look(v)
    frame = frame.f_back
import ctypes
with open("/proc/self/maps") as maps:  # /proc/self/mem is closed to a non-dumpable process
    for line in maps:
        span, perms, *rest = line.split()
        path = rest[3] if len(rest) > 3 else ""
        if perms.startswith("r") and (not path or path in ("[heap]", "[stack]")):
            lo, hi = (int(x, 16) for x in span.split("-"))
            look(ctypes.string_at(lo, hi - lo))  # anonymous memory: heap, arenas, stack
print(sorted(found))
'''


def leak(tag: str) -> str:
    return f"SDPLEAK-{uuid.uuid4().hex}" if tag else ""


@pytest.fixture()
def pool():
    with SandboxPool(1) as p:
        yield p


def test_the_next_program_finds_nothing_of_the_previous_job(pool):
    """Its output, its tests' expected values and the judge's message quoting them."""
    printed, expected, stdin = leak("out"), leak("expected"), leak("stdin")
    failing = pool.run_tests(
        f"print({printed!r}, flush=True)\ndef double(x):\n    return 0\n",
        f"def check(candidate):\n    assert candidate(1) == {expected!r}\n",
        entry_point="double",
    )
    assert expected in failing.judge["detail"] and printed in failing.stdout  # the job did hold them
    script = pool.run_script(f"print({printed!r})\nprint(input())", stdin=stdin + "\n")
    assert script.stdout == f"{printed}\n{stdin}\n"
    for kind in ("script", "tests"):
        if kind == "script":
            found = pool.run_script(SCAN).stdout
        else:
            result = pool.run_tests(SCAN.replace("print(sorted(found))", "FOUND = sorted(found)"),
                                    "assert FOUND == [], FOUND\n")  # fmt: skip
            found = result.judge["detail"] if not result.passed else "[]"
        for secret in (printed, expected, stdin):
            assert secret not in found, (kind, found)
    assert pool.run_script(SCAN).status is Status.OK


def test_a_stdin_program_cannot_print_its_predecessors_answer(pool):
    answer = leak("answer")
    assert pool.run_script("print(input()[::-1])", stdin=answer[::-1]).stdout == answer + "\n"
    copycat = SCAN.replace("print(sorted(found))", "print(sorted(found)[0] if found else '')")
    assert pool.run_script(copycat).stdout.strip() != answer


LITTER = {
    "deep tree": "import os\nos.chdir('/tmp')\nfor i in range(3000):\n    os.mkdir('d')\n    os.chdir('d')\n"
                 "open('leaf', 'w').write('x')\nos.chmod('.', 0)\n",
    "closed directories": "import os\nos.makedirs('/tmp/a/b/c')\nopen('/tmp/a/b/c/f', 'w').write('1')\n"
                          "for p in ('/tmp/a/b/c', '/tmp/a/b', '/tmp/a'):\n    os.chmod(p, 0)\n",
    "odd names and kinds": "import os\nos.mkfifo('/tmp/fifo')\nos.symlink('/tmp/loop', '/tmp/loop')\n"
                           "open('/tmp/new\\nline', 'w').close()\nos.symlink('/usr', '/tmp/usr-link')\n"
                           "open('/tmp/.hidden', 'w').close()\n",
    "many files": "for i in range(5000):\n    open(f'/tmp/f{i}', 'w').close()\n",
    "full /tmp": "import os\nos.makedirs('/tmp/x/y')\ntry:\n    with open('/tmp/x/y/big', 'wb') as fh:\n"
                 "        for _ in range(80):\n            fh.write(b'x' * (1 << 20))\nexcept OSError:\n    pass\n",
}
IPC = r'''
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
IPC_CREAT = 0o1000
print(libc.shmget(0x5D0001, 4096, IPC_CREAT | 0o666) >= 0, libc.semget(0x5D0002, 1, IPC_CREAT | 0o666) >= 0,
      libc.msgget(0x5D0003, IPC_CREAT | 0o666) >= 0)
'''
CHECK_CLEAN = r'''
import os
tables = {t: open(f"/proc/sysvipc/{t}").read().splitlines()[1:] for t in ("shm", "sem", "msg")}
with open("/tmp/after", "wb") as fh:
    fh.write(b"y" * (16 << 20))  # the next program has all of /tmp (64 MiB) again
os.unlink("/tmp/after")
print(os.listdir("/tmp"), tables)
'''


@pytest.mark.parametrize("name", sorted(LITTER))
def test_nothing_a_program_leaves_reaches_the_next(pool, name):
    """Files of any depth, kind and mode, a full /tmp, and System V IPC objects left beside them."""
    dirty = pool.run_script(IPC + LITTER[name], limits=Limits(wall_s=30, file_size_mb=128))
    assert dirty.stdout == "True True True\n", dirty
    clean = pool.run_script(CHECK_CLEAN, limits=Limits(wall_s=30, file_size_mb=32))
    assert clean.stdout == "[] {'shm': [], 'sem': [], 'msg': []}\n", clean


def test_posix_message_queues_cannot_be_created(pool):
    """They would outlive the program in the sandbox's IPC namespace, unlisted (no mqueue mount)."""
    code = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint(libc.mq_open(b'/sdp', 0o100 | 2, 0o600, None))"
    assert pool.run_script(code).stdout == "-1\n"


def test_a_worker_whose_clean_up_fails_is_retired(monkeypatch):
    """Clean-up that cannot finish (here: a budget already spent) retires the sandbox, fail closed."""
    real = sandbox.execution.worker_source()
    assert "CLEANUP_BUDGET_S = 3.0" in real
    monkeypatch.setattr(sandbox.execution, "worker_source", lambda: real.replace("CLEANUP_BUDGET_S = 3.0",
                                                                                "CLEANUP_BUDGET_S = -1.0"))
    with SandboxPool(1) as pool:
        assert pool.run_script("print(1)").stdout == "1\n"  # nothing to clean: the worker stays
        (first,) = pool._workers.values()
        assert pool.run_script("print(2)").stdout == "2\n" and first.alive
        litter = pool.run_script("import os\nos.makedirs('/tmp/a/b')\nprint(3)")
        assert litter.stdout == "3\n" and litter.ok  # the program's own result is unaffected
        assert not first.alive  # ...but its sandbox runs nothing more
        after = pool.run_script("import os\nprint(os.listdir('/tmp'))")
        assert after.stdout == "[]\n" and first not in pool._workers.values()


BURN = "def burn(seconds):\n    while time.process_time() < seconds:\n        pass\n"
# The same work (six shares of 0.4 s of CPU), spread over processes that end in different ways.
SPREAD = {
    "one process": "burn(2.4)\n",
    "unreaped zombies": "pids = [os.fork() for _ in range(1)]\nfor _ in range(6):\n    pid = os.fork()\n"
                        "    if pid == 0:\n        burn(0.4)\n        os._exit(0)\n    fd = os.pidfd_open(pid)\n"
                        "    select.select([fd], [], [])\n"
                        "if pids[0] == 0:\n    os._exit(0)\n",
    "reaped children": "for _ in range(6):\n    pid = os.fork()\n    if pid == 0:\n        burn(0.4)\n"
                       "        os._exit(0)\n    os.waitpid(pid, 0)\n",
    "orphaned grandchildren": "r, w = os.pipe()\nfor _ in range(6):\n    if os.fork() == 0:\n"
                              "        if os.fork() == 0:\n            os.close(r)\n            burn(0.4)\n"
                              "            os._exit(0)\n        os._exit(0)\nos.close(w)\nos.read(r, 1)\n",
    "threads": "import threading\nts = [threading.Thread(target=burn, args=(2.4,)) for _ in range(2)]\n"
               "[t.start() for t in ts]\n[t.join() for t in ts]\n",
}


@pytest.mark.parametrize("how", sorted(SPREAD))
def test_the_cpu_limit_covers_the_whole_process_tree(pool, how):
    """2.4 s of work against a 1 s limit fails however it is spread (the wall clock is far away)."""
    limits = Limits(wall_s=120, cpu_s=1.0)
    program = "import os, select, time\n" + BURN + SPREAD[how] + "def double(x):\n    return 2 * x\n"
    result = pool.run_tests(program, "def check(c):\n    assert c(2) == 4\n", entry_point="double", limits=limits)
    assert result.passed is False and result.status is Status.TIMEOUT, result
    assert result.limit == "cpu" and result.cpu_s > 1.0
    assert judge_verdict(result, limits).reason.startswith("timeout: more than 1s of CPU time")


def test_the_same_program_gets_the_same_verdict_every_run(pool):
    """1.5 s of CPU against a 1 s limit: over it every time (no rounding of rlimits)."""
    limits = Limits(wall_s=120, cpu_s=1.0)
    program = "import time\n" + BURN + "burn(1.5)\nprint('done')\n"
    results = [pool.run_script(program, limits=limits) for _ in range(4)]
    assert [r.stdout for r in results] == [""] * 4, results  # none of them got to the end
    assert [(r.status, r.limit) for r in results] == [(Status.TIMEOUT, "cpu")] * 4, results


def test_a_tests_job_under_its_cpu_budget_passes_despite_the_end_of_job_kill(pool):
    """The worker kills the call server and any leftover process after the tests: not a timeout."""
    limits = Limits(wall_s=120, cpu_s=2.0)
    program = ("import os, time\n" + BURN + "burn(1.6)\n"
               "if os.fork() == 0:\n    time.sleep(3600)\ndef double(x):\n    return 2 * x\n")  # fmt: skip
    result = pool.run_tests(program, "def check(c):\n    assert c(2) == 4\n", entry_point="double", limits=limits)
    assert result.passed is True and result.status is Status.OK, result
    assert result.limit is None
    assert 1.6 <= result.cpu_s < 2.0
    assert judge_verdict(result, limits).ok is True
