"""Evaluate a parsed answer: exactly (rationals, for the fast path) or as a float.

``exact`` decides most numeric answers in-process with ``fractions.Fraction``; sizes are
capped so that ``9^{9^{9^9}}`` or ``10^6!`` return None at once instead of computing.
``approx`` gives a complex float that can only *refute* equality, never confirm it.
"""

from __future__ import annotations

import cmath
import math
from fractions import Fraction
from typing import Any

from verifiers._math_parse import Node

MAX_BITS = 200_000  # exact integers beyond this are left to the guarded sympy path
MAX_FACTORIAL = 5_000


def exact(node: Node) -> Fraction | None:
    """The node's exact rational value, or None (symbols, irrationals, or too large)."""
    try:
        return _exact(node)
    except (ZeroDivisionError, OverflowError, ValueError):
        return None


def _exact(node: Node) -> Fraction | None:
    tag = node[0]
    if tag == "num":
        return node[1]
    if tag == "neg":
        v = _exact(node[1])
        return None if v is None else -v
    if tag in ("+", "-", "*", "/"):
        a = _exact(node[1])
        if a is None:
            return None
        b = _exact(node[2])
        if b is None:
            return None
        if tag == "+":
            r = a + b
        elif tag == "-":
            r = a - b
        elif tag == "*":
            r = a * b
        else:
            r = a / b
        if r.numerator.bit_length() + r.denominator.bit_length() > MAX_BITS:
            return None
        return r
    if tag == "^":
        base = _exact(node[1])
        exp = _exact(node[2])
        if base is None or exp is None:
            return None
        if exp.denominator == 1:
            size = max(base.numerator.bit_length(), base.denominator.bit_length())
            if size * abs(exp.numerator) > MAX_BITS:
                return None
            return base ** exp.numerator
        root = _exact_root(base, exp.denominator)
        if root is None:
            return None
        return _exact(("^", ("num", root, False), ("num", Fraction(exp.numerator), False)))
    if tag == "sqrt":
        value = _exact(node[1])
        index = _exact(node[2]) if node[2] is not None else Fraction(2)
        if value is None or index is None or index.denominator != 1 or index < 2:
            return None
        return _exact_root(value, int(index))
    if tag == "!":
        v = _exact(node[1])
        if v is None or v.denominator != 1 or not 0 <= v <= MAX_FACTORIAL:
            return None
        return Fraction(math.factorial(int(v)))
    if tag == "!!":
        v = _exact(node[1])
        if v is None or v.denominator != 1 or not 0 <= v <= MAX_FACTORIAL:
            return None
        return Fraction(math.prod(range(int(v), 0, -2)))
    if tag == "binom":
        n, k = _exact(node[1]), _exact(node[2])
        if n is None or k is None or n.denominator != 1 or k.denominator != 1:
            return None
        if not 0 <= n <= MAX_FACTORIAL or k < 0:
            return None
        return Fraction(math.comb(int(n), int(k)))
    if tag == "abs":
        v = _exact(node[1])
        return None if v is None else abs(v)
    if tag in ("floor", "ceil"):
        v = _exact(node[1])
        if v is None:
            return None
        return Fraction(math.floor(v) if tag == "floor" else math.ceil(v))
    return None


def _exact_root(value: Fraction, n: int) -> Fraction | None:
    if n > 64 or value < 0:
        return None
    num, den = _iroot(value.numerator, n), _iroot(value.denominator, n)
    if num is None or den is None:
        return None
    return Fraction(num, den)


def _iroot(x: int, n: int) -> int | None:
    if x.bit_length() > MAX_BITS:
        return None
    r = round(x ** (1.0 / n)) if x.bit_length() < 1000 else None
    if r is None:
        return None
    for cand in (r - 1, r, r + 1):
        if cand >= 0 and cand**n == x:
            return cand
    return None


def has_decimal(node: Any) -> bool:
    """Whether a decimal literal (an approximation) occurs in the node."""
    if isinstance(node, tuple):
        if node and node[0] == "num":
            return bool(node[2])
        return any(has_decimal(child) for child in node)
    return False


def decimal_places(node: Node) -> int | None:
    """The digits after the point of a decimal literal (``-18.90`` -> 2), else None.

    ``x / 100`` adds two (a percent gold ``33.3\\%`` is 0.333 to three places).
    """
    tag = node[0]
    if tag == "num":
        return node[2] or None
    if tag == "neg":
        return decimal_places(node[1])
    if tag == "/" and node[2][0] == "num" and node[2][1] == 100:
        inner = decimal_places(node[1])
        return None if inner is None else inner + 2
    return None


def symbols(node: Any) -> set[str]:
    """Free symbol names in the node."""
    if isinstance(node, tuple):
        if node and node[0] == "sym":
            return {node[1]}
        found: set[str] = set()
        for child in node:
            found |= symbols(child)
        return found
    return set()


def approx(node: Node, env: dict[str, complex]) -> tuple[complex, float] | None:
    """A float value for quick rejection (symbols take the values in ``env``), or None.

    Also returns the largest magnitude met on the way: a result far smaller than that
    (``(x + 10^{20}) - 10^{20}``) lost its digits to cancellation and must not be trusted.
    """
    peak = [0.0]
    try:
        value = _approx(node, env, peak)
    except (OverflowError, ZeroDivisionError, ValueError, TypeError, KeyError):
        return None
    if value is None or not cmath.isfinite(value) or not math.isfinite(peak[0]):
        return None
    return value, peak[0]


_CFUNCS = {
    "sin": cmath.sin, "cos": cmath.cos, "tan": cmath.tan, "arcsin": cmath.asin,
    "arccos": cmath.acos, "arctan": cmath.atan, "sinh": cmath.sinh, "cosh": cmath.cosh,
    "tanh": cmath.tanh, "exp": cmath.exp,
    "sec": lambda z: 1 / cmath.cos(z), "csc": lambda z: 1 / cmath.sin(z),
    "cot": lambda z: 1 / cmath.tan(z),
}


def _approx(node: Node, env: dict[str, complex], peak: list[float]) -> complex | None:
    value = _approx_node(node, env, peak)
    if value is not None:
        peak[0] = max(peak[0], abs(value))
    return value


def _approx_node(node: Node, env: dict[str, complex], peak: list[float]) -> complex | None:
    tag = node[0]
    if tag == "num":
        return complex(float(node[1]))
    if tag == "sym":
        return env[node[1]]
    if tag == "const":
        return {"pi": complex(math.pi), "E": complex(math.e), "I": 1j}.get(node[1])
    if tag == "neg":
        v = _approx(node[1], env, peak)
        return None if v is None else -v + 0j  # +0j: no -0.0 imaginary part across branch cuts
    if tag in ("+", "-", "*", "/", "^"):
        a = _approx(node[1], env, peak)
        b = _approx(node[2], env, peak) if a is not None else None
        if a is None or b is None:
            return None
        if tag == "+":
            return a + b
        if tag == "-":
            return a - b
        if tag == "*":
            return a * b
        if tag == "/":
            return a / b
        if abs(b) > 1e4 and abs(a) > 1.001:
            return None
        if a.imag == 0 and b.imag == 0 and a.real > 0:
            return complex(a.real**b.real)
        return a**b
    if tag == "sqrt":
        a = _approx(node[1], env, peak)
        n = _approx(node[2], env, peak) if node[2] is not None else 2
        if a is None or n is None:
            return None
        if a.imag == 0 and a.real >= 0:
            return complex(a.real ** (1 / n.real if isinstance(n, complex) else 1 / n))
        return a ** (1 / n)
    if tag == "!":
        v = _approx(node[1], env, peak)
        if v is None or v.imag or not -1 < v.real < 170:
            return None
        return complex(math.gamma(v.real + 1))
    if tag == "abs":
        v = _approx(node[1], env, peak)
        return None if v is None else complex(abs(v))
    if tag == "fn":
        args = [_approx(a, env, peak) for a in node[2]]
        if any(a is None for a in args):
            return None
        if node[1] == "log":
            value = cmath.log(args[0])
            return value / cmath.log(args[1]) if len(args) > 1 else value
        return _CFUNCS[node[1]](*args)
    return None
