"""Issue 25: the judge sees values and programs as CPython does.

Legitimate patterns that must pass (``PASS``), programs that must fail although a lossy carry
would let them through (``FAIL``), and CPython parity of the program's module and of
``exit``/``quit`` in stdin/stdout jobs.
"""

from __future__ import annotations

import pytest

from sandbox import Limits, SandboxPool
from verifiers.code_verifier import CodeVerifier

FAST = Limits(wall_s=10.0, cpu_s=3.0)


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(1) as p:
        yield p


# (name, program, tests): fine in CPython, so each must pass.
PASS = [
    ("dataclass under future annotations",
     "from __future__ import annotations\nfrom dataclasses import dataclass\n"
     "@dataclass\nclass P:\n    x: int\n    y: int = 0\n"
     "def f(a):\n    return P(a).x + P(a, 2).y\n",
     "assert f(3) == 5"),
    ("typing.get_type_hints on the program's own class",
     "from __future__ import annotations\nimport typing\n"
     "class A:\n    v: list[int]\n"
     "def f():\n    return str(typing.get_type_hints(A)['v'])\n",
     "assert f() == 'list[int]'"),
    ("pickling the program's own class",
     "import pickle\nclass C:\n    def __init__(self, v):\n        self.v = v\n"
     "def f(v):\n    return pickle.loads(pickle.dumps(C(v))).v\n",
     "assert f(7) == 7"),
    ("__name__ is the module's and is in sys.modules",
     "import sys\ndef f():\n    return sys.modules[__name__].f is f\n",
     "assert f() is True"),
    ("exit() and quit() exist, as with site", "def f():\n    return callable(exit) and callable(quit)\n",
     "assert f() is True"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "program", "tests"), PASS, ids=[p[0] for p in PASS])
def test_legitimate_programs_pass(pool, name, program, tests):
    result = pool.run_tests(program, tests, limits=FAST)
    assert result.passed is True, (name, result.judge, result.stderr)


# (program, stdin, exit code, stdout): competitive-programming endings, as under CPython.
SCRIPTS = [
    ("n = int(input())\nprint(n * 2)\nexit()", "21\n", 0, "42\n"),
    ("print('a')\nquit(0)\nprint('b')", None, 0, "a\n"),
    ("import sys\nprint(1)\nexit(3)", None, 3, "1\n"),
    ("from __future__ import annotations\nfrom dataclasses import dataclass\n"
     "@dataclass\nclass E:\n    u: int\n    v: int\nprint(E(1, 2))", None, 0, "E(u=1, v=2)\n"),
    ("import sys\nprint(__name__, sys.modules['__main__'].__dict__ is globals())", None, 0, "__main__ True\n"),
]  # fmt: skip


@pytest.mark.parametrize(("program", "stdin", "code", "stdout"), SCRIPTS)
def test_scripts_behave_as_under_cpython(pool, program, stdin, code, stdout):
    result = pool.run_script(program, stdin=stdin, limits=FAST)
    assert (result.exit_code, result.stdout) == (code, stdout), result


def test_io_problem_ending_in_exit_passes_the_verifier():
    problem = {"io": [{"input": "3 4\n", "output": "7\n"}]}
    completion = "```python\na, b = map(int, input().split())\nprint(a + b)\nexit()\n```"
    verdict = CodeVerifier(timeout=3).verify(problem, completion)
    assert verdict.ok is True, verdict
