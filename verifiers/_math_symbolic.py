"""AST -> sympy conversion and the symbolic equivalence tests (runs in the worker child).

Conversion refuses numbers whose exact size would stall sympy (``9^{9^{9^9}}``, ``10^6!``)
before sympy sees them; what is left is bounded by the parent's per-check time limit.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import sympy as sp

from verifiers._math_eval import MAX_BITS, MAX_FACTORIAL
from verifiers._math_parse import Node


class TooLarge(ValueError):
    """An exact value too large to build."""


_CONSTS = {"pi": sp.pi, "E": sp.E, "I": sp.I, "oo": sp.oo}
_FUNCS = {
    "sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "sec": sp.sec, "csc": sp.csc, "cot": sp.cot,
    "arcsin": sp.asin, "arccos": sp.acos, "arctan": sp.atan, "sinh": sp.sinh,
    "cosh": sp.cosh, "tanh": sp.tanh, "exp": sp.exp, "log": sp.log,
}


def _bits(x: sp.Expr) -> float:
    """Rough size in bits of an exact number (0 for anything else)."""
    if isinstance(x, sp.Rational):
        return max(int(x.p).bit_length(), int(x.q).bit_length())
    return 0.0


def to_sympy(node: Node) -> Any:
    """Build the sympy object for a scalar node (structures are matched by the parent)."""
    tag = node[0]
    if tag == "num":
        value: Fraction = node[1]
        return sp.Rational(value.numerator, value.denominator)
    if tag == "sym":
        return sp.Symbol(node[1])
    if tag == "const":
        return _CONSTS[node[1]]
    if tag == "neg":
        return -to_sympy(node[1])
    if tag in ("+", "-", "*", "/"):
        a, b = to_sympy(node[1]), to_sympy(node[2])
        if tag == "+":
            return a + b
        if tag == "-":
            return a - b
        return a * b if tag == "*" else a / b
    if tag == "^":
        base, exp = to_sympy(node[1]), to_sympy(node[2])
        if isinstance(exp, sp.Rational) and abs(exp.p) > 1:
            size = _bits(base) if isinstance(base, sp.Rational) else 64
            if size * abs(int(exp.p)) > MAX_BITS * 4:
                raise TooLarge("power too large")
        return sp.Pow(base, exp)
    if tag == "sqrt":
        index = to_sympy(node[2]) if node[2] is not None else sp.Integer(2)
        return sp.root(to_sympy(node[1]), index)
    if tag == "!":
        arg = to_sympy(node[1])
        if isinstance(arg, sp.Integer) and arg > MAX_FACTORIAL * 4:
            raise TooLarge("factorial too large")
        return sp.factorial(arg)
    if tag == "!!":
        arg = to_sympy(node[1])
        if not isinstance(arg, sp.Integer) or arg > MAX_FACTORIAL * 4:
            raise TooLarge("double factorial too large")
        return sp.factorial2(arg)
    if tag == "binom":
        n = to_sympy(node[1])
        if isinstance(n, sp.Integer) and n > MAX_FACTORIAL * 4:
            raise TooLarge("binomial too large")
        return sp.binomial(n, to_sympy(node[2]))
    if tag == "abs":
        return sp.Abs(to_sympy(node[1]))
    if tag == "floor":
        return sp.floor(to_sympy(node[1]))
    if tag == "ceil":
        return sp.ceiling(to_sympy(node[1]))
    if tag == "fn":
        args = [to_sympy(a) for a in node[2]]
        return _FUNCS[node[1]](*args)
    raise ValueError(f"no scalar meaning for {tag!r}")


def _zero(expr: Any) -> bool:
    """Whether ``expr`` is provably zero: cheap rewrites first, ``simplify`` last."""
    if expr == 0:
        return True
    if expr.has(sp.oo, -sp.oo, sp.zoo, sp.nan):
        return False
    steps = [sp.expand, sp.cancel]
    if not expr.free_symbols and expr.has(sp.exp, sp.I):
        # polar and exponential forms: e^{i pi/4} -> cos + i sin, evaluated exactly at rational multiples of pi
        steps.insert(0, lambda e: sp.expand(sp.expand_complex(e)))
    if expr.has(sp.sin, sp.cos, sp.tan, sp.sec, sp.csc, sp.cot):
        steps.append(lambda e: sp.expand_trig(e).rewrite(sp.cos).expand())
    if any(isinstance(p, sp.Pow) and isinstance(p.exp, sp.Rational) and p.exp.q > 1
           for p in expr.atoms(sp.Pow)):
        steps.append(lambda e: sp.radsimp(sp.sqrtdenest(e)))
    for step in steps:
        expr = step(expr)
        if expr == 0:
            return True
    if sp.simplify(expr) == 0:
        return True
    return expr.equals(0) is True


def equal(gold: Node, pred: Node, rel_tol: float | None) -> bool:
    """Provable equality; ``rel_tol`` set when a decimal approximation is involved."""
    a, b = to_sympy(gold), to_sympy(pred)
    if a == b:
        return True
    if rel_tol is not None and a.is_number and b.is_number:
        va, vb = sp.N(a, 30), sp.N(b, 30)
        if va.is_finite and vb.is_finite:
            return bool(abs(va - vb) <= rel_tol * max(abs(va), abs(vb)))
    return _zero(a - b) if not (a.has(sp.oo) or b.has(sp.oo)) else False


def proportional(gold: tuple[Node, Node], pred: tuple[Node, Node]) -> bool:
    """Whether equations ``l1 = r1`` and ``l2 = r2`` differ by a nonzero constant factor."""
    e1 = to_sympy(gold[0]) - to_sympy(gold[1])
    e2 = to_sympy(pred[0]) - to_sympy(pred[1])
    if e1 == 0 or e2 == 0:
        return bool(e1 == e2)
    ratio = sp.simplify(e1 / e2)
    return bool(ratio.free_symbols == set() and ratio != 0 and ratio.is_finite)


def warmup() -> None:
    """Run each kind of proof once: sympy imports much of itself lazily on first use, and
    that one-off cost belongs to the worker's start-up, not to somebody's timed check."""
    x, two, three = ("sym", "x"), ("num", Fraction(2), False), ("num", Fraction(3), False)
    sqrt2 = ("sqrt", two, None)
    equal(("/", sqrt2, two), ("/", ("num", Fraction(1), False), sqrt2), None)
    equal(("^", ("+", x, two), two), ("+", ("^", x, two), ("*", ("num", Fraction(4), False), x)), None)
    equal(("fn", "sin", (("*", two, x),)), ("*", two, ("*", ("fn", "sin", (x,)), ("fn", "cos", (x,)))), None)
    equal(("/", ("+", x, three), ("-", ("^", x, two), ("num", Fraction(9), False))), ("/", two, x), 1e-6)
    proportional((("sym", "y"), ("+", x, two)), (("-", ("sym", "y"), x), two))
    i, pi = ("const", "I"), ("const", "pi")
    equal(("+", ("num", Fraction(1), False), i), ("*", sqrt2, ("^", ("const", "E"), ("/", ("*", i, pi), two))), None)


def handle(request: tuple) -> Any:
    """Answer one request from the parent: ("equal", g, p, tol) or ("proportional", g, p)."""
    kind = request[0]
    try:
        if kind == "equal":
            return equal(request[1], request[2], request[3])
        if kind == "proportional":
            return proportional(request[1], request[2])
    except TooLarge as exc:
        return ("too_large", str(exc))
    raise ValueError(f"unknown request {kind!r}")
