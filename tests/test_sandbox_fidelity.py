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
    # Values keep their type, order and behaviour on the way to the tests.
    ("OrderedDict order", "from collections import OrderedDict\ndef f():\n    return OrderedDict([(2, 'b'), (1, 'a')])\n",
     "from collections import OrderedDict\nassert f() == OrderedDict([(2, 'b'), (1, 'a')])\n"
     "assert f() != OrderedDict([(1, 'a'), (2, 'b')]) and type(f()) is OrderedDict"),
    ("namedtuple", "from collections import namedtuple\nP = namedtuple('P', 'x y')\ndef f():\n    return P(1, 2)\n",
     "r = f()\nassert r == (1, 2) and r.x == 1 and r._asdict() == {'x': 1, 'y': 2} and repr(r) == 'P(x=1, y=2)'"),
    ("typing.NamedTuple", "from typing import NamedTuple\nclass E(NamedTuple):\n    u: int\n    v: int\n"
     "def f():\n    return [E(1, 2), E(3, 4)]\n", "assert [e.v for e in f()] == [2, 4] and f()[0] == (1, 2)"),
    ("Fraction", "from fractions import Fraction\ndef f(n):\n    return sum(Fraction(1, k) for k in range(1, n + 1))\n",
     "from fractions import Fraction\nassert f(3) == Fraction(11, 6) and f(3).denominator == 6 and str(f(2)) == '3/2'"),
    ("Counter", "from collections import Counter\ndef f(s):\n    return Counter(s)\n",
     "from collections import Counter\nassert f('aab').most_common(1) == [('a', 2)] and f('ab') + Counter('b') == Counter('abb')"),
    ("defaultdict keeps its factory", "from collections import defaultdict\ndef f():\n    d = defaultdict(list)\n"
     "    d[1].append(2)\n    return d\n", "d = f()\nassert d == {1: [2]} and d['new'] == []"),
    ("deque, Decimal, range, bytearray",
     "from collections import deque\nfrom decimal import Decimal\n"
     "def f():\n    return deque([1, 2], maxlen=3), Decimal('0.10'), range(0, 9, 3), bytearray(b'ab')\n",
     "from collections import deque\nfrom decimal import Decimal\nq, d, r, b = f()\n"
     "assert q == deque([1, 2]) and q.maxlen == 3 and str(d) == '0.10' and list(r) == [0, 3, 6] and b == b'ab'"),
    ("datetime values", "import datetime as dt\ndef f():\n    return dt.date(2020, 2, 29), dt.timedelta(days=1, seconds=5), "
     "dt.datetime(2020, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))\n",
     "import datetime as dt\nd, t, w = f()\nassert d + t == dt.date(2020, 3, 1) and w.utcoffset() == dt.timedelta(hours=2)"),
    ("a ValueError subclass is caught by except ValueError",
     "class Bad(ValueError):\n    pass\ndef f():\n    raise Bad('no')\n",
     "try:\n    f()\nexcept ValueError as e:\n    assert type(e).__name__ == 'Bad' and str(e) == 'no'\nelse:\n    assert False"),
    ("json.JSONDecodeError, as itself and as ValueError", "import json\ndef f(s):\n    return json.loads(s)\n",
     "import json\ntry:\n    f('{')\nexcept json.JSONDecodeError as e:\n    assert e.pos == 1 and e.lineno == 1\nelse:\n    assert False\n"
     "try:\n    f('[')\nexcept ValueError:\n    pass\nelse:\n    assert False"),
    ("builtin exceptions keep args and attributes",
     "def f(d):\n    return d['k']\ndef g():\n    open('/nonexistent/x')\n",
     "try:\n    f({})\nexcept KeyError as e:\n    assert e.args == ('k',)\nelse:\n    assert False\n"
     "try:\n    g()\nexcept FileNotFoundError as e:\n    assert e.errno == 2\nelse:\n    assert False"),
    ("an exception with its own __init__ signature",
     "class E(LookupError):\n    def __init__(self, a, b):\n        super().__init__(f'{a}-{b}')\n        self.a = a\n"
     "def f():\n    raise E(1, 2)\n",
     "try:\n    f()\nexcept LookupError as e:\n    assert str(e) == '1-2' and e.a == 1\nelse:\n    assert False"),
    ("a value 201 deep", "def f(n):\n    x = []\n    for _ in range(n):\n        x = [x]\n    return x\n",
     "e = []\nfor _ in range(201):\n    e = [e]\nassert f(201) == e"),
    ("a value 900 deep as argument and result", "def f(x):\n    return [x, {1: x}]\n",
     "e = ()\nfor i in range(900):\n    e = (e,) if i % 2 else [e]\nassert f(e) == [e, {1: e}]"),
]  # fmt: skip


# (name, program, tests, reason): each must fail, as in CPython, with a verdict (never None).
FAIL = [
    ("OrderedDict in the wrong order", "from collections import OrderedDict\ndef f():\n    return OrderedDict([(1, 'a'), (2, 'b')])\n",
     "from collections import OrderedDict\nassert f() == OrderedDict([(2, 'b'), (1, 'a')])", "wrong answer"),
    ("the program's own class named ValueError is not builtins.ValueError",
     "class ValueError(Exception):\n    pass\ndef f():\n    raise ValueError('x')\n",
     "try:\n    f()\nexcept ValueError:\n    pass", "runtime error"),
    ("a namedtuple with the wrong field", "from collections import namedtuple\nP = namedtuple('P', 'x y')\n"
     "def f():\n    return P(2, 1)\n", "assert f().x == 1", "wrong answer"),
    ("a Counter where a list is expected", "from collections import Counter\ndef f(s):\n    return Counter(s)\n",
     "assert f('ab') == [('a', 1), ('b', 1)]", "wrong answer"),
    ("sys.exit() in the function is not an Exception the tests may swallow",
     "import sys\ndef f():\n    sys.exit(0)\n", "try:\n    f()\nexcept Exception:\n    pass", "runtime error: SystemExit"),
    ("a value nested deeper than the codec carries",
     "def f(n):\n    x = []\n    for _ in range(n):\n        x = [x]\n    return x\n", "assert f(1200) is not None",
     "runtime error: unsupported value"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "program", "tests", "reason"), FAIL, ids=[f[0] for f in FAIL])
def test_lossy_carry_lets_nothing_through(name, program, tests, reason):
    verdict = CodeVerifier(timeout=3).verify({"tests": tests}, f"```python\n{program}```")
    assert verdict.ok is False and verdict.reason.startswith(reason), (name, verdict)


@pytest.mark.parametrize(
    "wire",
    [{"#nt": ["m", "import os", ["a"], [1]]}, {"#nt": ["m", "P", ["_x"], [1]]}, {"#nt": ["m", "P", ["a"], []]},
     {"#dd": ["eval", []]}, {"#fr": [1, 0]}, {"#fr": [1.5, 2]}, {"#dq": ["x", []]}, {"#dtm": [1, 0]},
     {"#rg": [0, "9", 1]}, {"#od": [[1]]}],
)  # fmt: skip
def test_the_codec_rejects_malformed_standard_types(wire):
    from sandbox.inside.values import decode_value

    with pytest.raises(Exception):  # noqa: B017 - any error; the judge turns each into a failed run
        decode_value(wire)


def test_the_codec_round_trips_standard_types():
    import collections
    import datetime
    import decimal
    import fractions
    import json

    from sandbox.inside.values import decode_value, encode_value

    values = [collections.OrderedDict([(2, 1), (1, 2)]), collections.Counter("abca"), collections.deque([1], 4),
              collections.defaultdict(int, {1: 2}), fractions.Fraction(-3, 9), decimal.Decimal("-0.00"),
              datetime.datetime(2021, 3, 4, 5, 6, 7, 8), datetime.time(1, 2, fold=1), datetime.timedelta(-1, 3, 4),
              range(3, -9, -2), bytearray(b"\x00")]  # fmt: skip
    for value in values:
        back = decode_value(json.loads(json.dumps(encode_value(value))))
        assert type(back) is type(value) and back == value and repr(back) == repr(value)



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
