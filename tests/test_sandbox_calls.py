"""Calls across the judge/candidate boundary: returned iterators, in-place changes to arguments."""

from __future__ import annotations

import pytest

from sandbox import SandboxPool


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(1) as p:
        yield p


# (name, program, tests): each must pass
PASSING = [
    ("generator consumed by list", "def f(n):\n    for i in range(n):\n        yield i * i\n",
     "assert list(f(4)) == [0, 1, 4, 9]\n"),
    ("generator stepped with next", "def f():\n    yield 'a'\n    yield 'b'\n",
     "g = f()\nassert next(g) == 'a' and next(g) == 'b'\nassert next(g, 'end') == 'end'\n"),
    ("infinite generator sliced", "import itertools\ndef f():\n    return itertools.count(5)\n",
     "import itertools\nassert list(itertools.islice(f(), 3)) == [5, 6, 7]\n"),
    ("map, zip and filter objects", "def f(xs):\n    return map(str, xs)\ndef g(a, b):\n    return zip(a, b)\n"
     "def h(xs):\n    return filter(None, xs)\n",
     "assert list(f([1, 2])) == ['1', '2'] and dict(g('ab', [1, 2])) == {'a': 1, 'b': 2}\n"
     "assert sorted(h([0, 3, 0, 1])) == [1, 3]\n"),
    ("iterable that is not an iterator", "def f(n):\n    return range(n)\n",
     "assert list(f(3)) == [0, 1, 2] and 2 in f(3) and sum(f(5)) == 10\n"),
    ("for loop over a generator of tuples", "def f(d):\n    yield from sorted(d.items())\n",
     "seen = []\nfor k, v in f({'b': 2, 'a': 1}):\n    seen.append((k, v))\nassert seen == [('a', 1), ('b', 2)]\n"),
    ("a generator's own exception", "def f():\n    yield 1\n    raise ValueError('bad')\n",
     "g = f()\nassert next(g) == 1\ntry:\n    next(g)\n    raise AssertionError('no error')\n"
     "except ValueError as e:\n    assert 'bad' in str(e)\n"),
    ("list sorted in place", "def f(xs):\n    xs.sort()\n", "a = [3, 1, 2]\nassert f(a) is None\nassert a == [1, 2, 3]\n"),
    ("matrix rotated in place, rows keep identity",
     "def rotate(m):\n    n = len(m)\n    m[:] = [list(r) for r in zip(*m[::-1])]\n",
     "m = [[1, 2], [3, 4]]\nrotate(m)\nassert m == [[3, 1], [4, 2]]\n"),
    ("nested rows changed in place", "def f(m):\n    for row in m:\n        row.append(0)\n",
     "m = [[1], [2]]\nfirst = m[0]\nf(m)\nassert m == [[1, 0], [2, 0]] and first is m[0] and first == [1, 0]\n"),
    ("dict and set updated", "def f(d, s):\n    d['k'] = 1\n    del d['x']\n    s.add(9)\n",
     "d, s = {'x': 0}, {1}\nf(d, s)\nassert d == {'k': 1} and s == {1, 9}\n"),
    ("keyword argument mutated", "def f(*, out):\n    out.extend([1, 2])\n", "o = []\nf(out=o)\nassert o == [1, 2]\n"),
    ("list inside a tuple mutated", "def f(t):\n    t[0].append('x')\n", "t = ([],)\nf(t)\nassert t == (['x'],)\n"),
    ("mutated before raising", "def f(xs):\n    xs.append(1)\n    raise KeyError('k')\n",
     "a = []\ntry:\n    f(a)\nexcept KeyError:\n    pass\nassert a == [1]\n"),
    ("method of a handle mutates its argument",
     "class Solution:\n    def rotate(self, nums, k):\n        k %= len(nums)\n        nums[:] = nums[-k:] + nums[:-k]\n",
     "nums = [1, 2, 3, 4, 5]\nSolution().rotate(nums, 2)\nassert nums == [4, 5, 1, 2, 3]\n"),
    ("arguments the call leaves alone stay the same objects", "def f(xs):\n    return len(xs)\n",
     "a = [[1], 2]\ninner = a[0]\nassert f(a) == 2 and a[0] is inner\n"),
]

# (name, program, tests): each must fail (the tests see only plain data)
FAILING = [
    ("generator of rigged objects",
     "class Any:\n    def __eq__(self, other):\n        return True\ndef f():\n    yield Any()\n",
     "assert list(f()) == [1]\n"),
    ("generator compared to a list", "def f():\n    yield 1\n", "assert f() == [1]\n"),
    ("non-data put into an argument", "def f(xs):\n    xs.append(object())\n", "a = []\nf(a)\nassert len(a) == 1\n"),
    ("mutation only pretended", "def f(xs):\n    xs = sorted(xs)\n", "a = [2, 1]\nf(a)\nassert a == [1, 2]\n"),
]


@pytest.mark.parametrize(("name", "program", "tests"), PASSING, ids=[c[0] for c in PASSING])
def test_calls_that_must_pass(pool, name, program, tests):
    result = pool.run_tests(program, tests)
    assert result.passed is True, result.judge


@pytest.mark.parametrize(("name", "program", "tests"), FAILING, ids=[c[0] for c in FAILING])
def test_calls_that_must_fail(pool, name, program, tests):
    result = pool.run_tests(program, tests)
    assert result.passed is False and result.judge["kind"] in ("wrong", "error"), result.judge
