"""Comparison of two parsed answers for the ``math`` verifier (``math_verifier``): structure by structure.

Sets unordered, tuples ordered, interval ends, matrices; each scalar pair first by exact rational
arithmetic (``_math_eval``), then a float evaluation that can only reject, and what is left by
sympy in the verifier's killable child process, within the check's deadline.
"""

from __future__ import annotations

import functools
import random
import time
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from verifiers._math_eval import approx, decimal_places, exact, has_decimal, symbols
from verifiers._math_parse import Node
from verifiers._math_sympy import WorkerTimeout
from verifiers._math_units import clock_24, conversion, in_base

if TYPE_CHECKING:
    from verifiers.math_verifier import MathVerifier

_STRUCTURES = {
    "tuple", "set", "list", "interval", "union", "matrix", "eq", "rel", "rel2", "text", "choice", "pct",
}
_HUNDRED: Node = ("num", Fraction(100), False)
_FLIPPED = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "!=": "!="}
@functools.lru_cache(maxsize=4096)
def _sample_point(name: str) -> complex:
    # A fixed, irrational-looking positive value per symbol: equal expressions agree there.
    return complex(random.Random(name).uniform(0.3, 1.7))


class _Undecided(Exception):
    """The comparison hit a size guard (recorded as the reason)."""


def label_conflict(gold: tuple, pred: tuple, pred_raw: str, convert: bool = True) -> str | None:
    """Why two answers cannot be the same value whatever their numbers: units of different dimensions
    (or any different units, ``convert`` off), a time of day against something else. None when their
    labels agree, convert (5 m and 500 cm), or one side has none."""
    gf, pf = dict(gold[1]), dict(pred[1])
    if gf.get("unit") and pf.get("unit") and gf["unit"] != pf["unit"]:
        if not convert or conversion(pf["unit"], gf["unit"]) is None:
            return f"unit mismatch: {pf['unit']} for {gf['unit']}"
    if gf.get("clock") and not pf.get("clock") and clock_24(pred_raw) is None:
        return "expected a time of day (with AM/PM or as 24-hour hh:mm)"
    return None


def _apply_units(gold: tuple, pred: tuple, pred_raw: str = "", convert: bool = True) -> tuple[Node, Node]:
    (g, gflags), (p, pflags) = gold, pred
    gf, pf = dict(gflags), dict(pflags)
    if convert and gf.get("unit") and pf.get("unit") and gf["unit"] != pf["unit"]:
        factor = conversion(pf["unit"], gf["unit"])
        if factor is not None:  # 5 m for a gold in cm is 500: the value in the gold's unit, exactly
            p = ("*", p, ("num", factor, 0))
    if gf.get("clock") and not pf.get("clock") and clock_24(pred_raw) is not None:
        p = ("num", Fraction(clock_24(pred_raw)), 0)  # type: ignore[arg-type]
    base = gf.get("base")
    if base and base != 10 and not pf.get("base") and p[0] == "num" and not p[2] and p[1].denominator == 1:
        # the gold asks for base-2 digits: a bare "1011" is those digits, not one thousand and eleven
        value = in_base(str(p[1].numerator), base)
        p = ("num", Fraction(value), 0) if value is not None else ("text", str(p[1]))
    if pf.get("cents") and gf.get("dollars") and not pf.get("dollars"):
        p = ("/", p, _HUNDRED)
    elif gf.get("cents") and pf.get("dollars") and not gf.get("dollars"):
        g = ("/", g, _HUNDRED)
    return g, p


class _Check:
    """One comparison, with the deadline every sympy call must respect."""

    def __init__(self, verifier: MathVerifier, deadline: float):
        self.v = verifier
        self.deadline = deadline

    def match(self, g: Node, p: Node) -> bool:
        if g == p:
            return True
        gt, pt = g[0], p[0]
        if gt == "pct" or pt == "pct":
            gi = g[1] if gt == "pct" else g
            pi = p[1] if pt == "pct" else p
            if gt == pt:
                return self.match(gi, pi)
            # "25\%" is 0.25; a bare 25 for a percent answer dropped the unit, not the value.
            if gt == "pct":
                return self.match(gi, pi) or self.match(("/", gi, _HUNDRED), pi)
            return self.match(gi, pi) or self.match(gi, ("/", pi, _HUNDRED))
        if (_inequality(g) or _inequality(p)) and not gt == pt == "rel":
            # x > 3 is (3, \infty); 2 < x \le 5 is (2, 5]; "x < -1 or x > 1" is a union
            gi, pi = _as_interval(g), _as_interval(p)
            if gi is not None and pi is not None and (gi, pi) != (g, p):
                return self.match(gi, pi)
        if gt == "eq" or pt == "eq":
            return self.equation(g, p)
        if gt == "list" or pt == "list" or gt == "set" or pt == "set":
            return self.collection(g, p)
        if gt in ("tuple", "interval") or pt in ("tuple", "interval"):
            return self.ordered(g, p)
        if gt == "matrix" or pt == "matrix":
            return self.matrix(g, p)
        if gt == "union" and pt == "union":
            return self.unordered(g[1], p[1])
        if gt == "rel" and pt == "rel":
            if g[1] == p[1] and self.match(g[2], p[2]) and self.match(g[3], p[3]):
                return True
            return _FLIPPED[g[1]] == p[1] and self.match(g[2], p[3]) and self.match(g[3], p[2])
        if gt in _STRUCTURES or pt in _STRUCTURES:
            return False
        return self.scalar(g, p)

    def equation(self, g: Node, p: Node) -> bool:
        if g[0] == "eq" and p[0] == "eq":
            if self.match(g[1], p[1]) and self.match(g[2], p[2]):
                return True
            if self.match(g[1], p[2]) and self.match(g[2], p[1]):
                return True
            if any(n[0] in _STRUCTURES for n in (g[1], g[2], p[1], p[2])):
                return False
            if not _maybe_proportional(("-", g[1], g[2]), ("-", p[1], p[2])):
                return False
            return self.ask(("proportional", (g[1], g[2]), (p[1], p[2])))
        # "x = 3" against 3, either way round; "x + y = 5" is not the answer 5; "20 - 5 = 15"
        # (a worked chain) states its last value
        if p[0] == "eq":
            return (_is_name(p[1]) or _is_arithmetic(p[1])) and self.match(g, p[2])
        return _is_name(g[1]) and self.match(g[2], p)

    def collection(self, g: Node, p: Node) -> bool:
        gt, pt = g[0], p[0]
        if gt == "list" and pt in ("tuple", "interval") or gt == "tuple" and pt == "list":
            return self.ordered(g, p)
        if gt not in ("list", "set") or pt not in ("list", "set"):
            return False
        if "set" in (gt, pt):  # sets ignore repeats
            return self.covers(g[1], p[1]) and self.covers(p[1], g[1])
        return self.unordered(g[1], p[1])

    def covers(self, items: tuple, others: tuple) -> bool:
        return all(any(self.match(a, b) for b in others) for a in items)

    def unordered(self, gs: tuple, ps: tuple) -> bool:
        if len(gs) != len(ps):
            return False
        left = list(ps)
        for a in gs:
            # equivalence is transitive, so a greedy pairing is a perfect one when any is
            for k, b in enumerate(left):
                if self.match(a, b):
                    del left[k]
                    break
            else:
                return False
        return True

    def ordered(self, g: Node, p: Node) -> bool:
        if g[0] == "interval" and p[0] == "interval":
            if (g[1], g[4]) != (p[1], p[4]):
                return False  # open and closed ends differ: (1, 2] is not [1, 2]
            return self.match(g[2], p[2]) and self.match(g[3], p[3])
        gs, ps = _as_sequence(g), _as_sequence(p)
        if gs is None or ps is None or len(gs) != len(ps):
            return False
        return all(self.match(a, b) for a, b in zip(gs, ps))

    def matrix(self, g: Node, p: Node) -> bool:
        if g[0] == "matrix" and p[0] == "matrix":
            if len(g[1]) != len(p[1]) or len(g[1][0]) != len(p[1][0]):
                return False
            return all(self.match(a, b) for ra, rb in zip(g[1], p[1]) for a, b in zip(ra, rb))
        return self.ordered(g, p)  # a one-row/one-column matrix is a vector

    def scalar(self, g: Node, p: Node) -> bool:
        cfg = self.v.config
        decimal = has_decimal(g) or has_decimal(p)
        eg, ep = exact(g), exact(p)
        if eg is not None and ep is not None:
            if eg == ep:
                return True
            places = decimal_places(g) if cfg.round_decimal_answers and has_decimal(p) else None
            if places is not None and _places_written(p) > places:
                return abs(eg - ep) <= Fraction(1, 2 * 10**places)  # 3.1416 rounds to the gold 3.14
            if cfg.exact_rationals:
                return False  # 2000000.5 is not 2000000; 0.3333333333 is not 1/3
            return decimal and abs(eg - ep) <= cfg.rel_tol * max(abs(eg), abs(ep))
        # A tolerance only where exact equality is impossible: a decimal for an irrational gold.
        tol = cfg.rel_tol if decimal and (eg is None or not cfg.exact_rationals) else None
        env = {name: _sample_point(name) for name in symbols(g) | symbols(p)}
        fg, fp = approx(g, env), approx(p, env)
        places = decimal_places(g) if eg is not None and not env else None
        if places is not None and cfg.round_irrational and not has_decimal(p) and fp is not None:
            # a decimal gold against an exact irrational answer: equal when it rounds to the gold
            half = 0.5 * 10.0**-places
            if abs(fp[0].imag) < 1e-12 and abs(fp[0].real - float(eg)) <= half * (1 - 1e-9):
                return True
        if fg is not None and fp is not None:
            (ag, peak_g), (ap, peak_p) = fg, fp
            diff, scale = abs(ag - ap), max(abs(ag), abs(ap))
            noise = 1e-12 * max(peak_g, peak_p, 1.0)  # float error, cancellation included
            if noise < 1e-3 * (tol or 1e-6) * scale:  # floats are trustworthy here
                if tol is not None:
                    return diff <= tol * scale
                if diff > 1e-6 * scale:
                    return False  # a float can refute equality; only sympy may confirm it
            elif diff > 1e3 * noise + (tol or 1e-6) * scale:
                return False  # different beyond any rounding the floats could have done
        return self.ask(("equal", g, p, tol))

    def ask(self, request: tuple) -> bool:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise WorkerTimeout()
        try:
            reply, startup_wait = self.v._sympy().call(request, remaining)
        except RuntimeError:  # the child died under us (killed, out of memory): one retry
            try:
                reply, startup_wait = self.v._sympy().call(request, remaining)
            except RuntimeError as exc:
                raise _Undecided(f"symbolic worker failed: {exc}") from exc
        self.deadline += startup_wait  # a fresh child's start-up is not this check's time
        if isinstance(reply, tuple):
            if reply[0] == "too_large":
                raise _Undecided(f"answer too large to compare ({reply[1]})")
            return False  # ("error", ...): sympy could not build or compare it
        return bool(reply)


def _is_name(node: Node) -> bool:
    """A variable or a name made of letters: x, a_1, AB, f(x) (read as f*x)."""
    if node[0] == "sym":
        return True
    return node[0] == "*" and _is_name(node[1]) and _is_name(node[2])


def _places_written(node: Any) -> int:
    """The most digits after a decimal point in any literal of ``node``."""
    if not isinstance(node, tuple):
        return 0
    if node and node[0] == "num":
        return int(node[2])
    return max((_places_written(c) for c in node), default=0)


def _is_arithmetic(node: Node) -> bool:
    """A symbol-free computation such as ``20 - 5`` (not a structure)."""
    return node[0] not in _STRUCTURES and not symbols(node)


def _maybe_proportional(e1: Node, e2: Node) -> bool:
    """False when two sample points show ``e1/e2`` is not constant (floats only refute)."""
    names = symbols(e1) | symbols(e2)
    ratios = []
    for salt in ("", "'"):
        env = {name: _sample_point(name + salt) for name in names}
        fa, fb = approx(e1, env), approx(e2, env)
        if fa is None or fb is None or abs(fb[0]) < 1e-9 * max(fb[1], 1.0):
            return True
        if abs(fa[0]) < 1e-9 * max(fa[1], 1.0):
            return True  # cancelled to (nearly) nothing: let sympy decide
        ratios.append(fa[0] / fb[0])
    return abs(ratios[0] - ratios[1]) <= 1e-6 * max(abs(ratios[0]), abs(ratios[1]), 1e-12)


def _inequality(node: Node) -> bool:
    """An inequality, or a list of them ("x < -1 or x > 1")."""
    if node[0] == "list":
        return bool(node[1]) and all(item[0] in ("rel", "rel2") for item in node[1])
    return node[0] in ("rel", "rel2")


_OO: Node = ("const", "oo")
_LOWER = {"<": False, "<=": True}


def _as_interval(node: Node) -> Node | None:
    """An inequality in one variable as the interval (or union) it denotes; other nodes unchanged."""
    tag = node[0]
    if tag in ("interval", "union"):
        return node
    if tag == "tuple" and len(node[1]) == 2:
        return ("interval", False, node[1][0], node[1][1], False)  # "(3, \infty)" against an inequality
    if tag == "list":
        items = [_as_interval(item) for item in node[1]]
        if all(item is not None and item[0] == "interval" for item in items):
            return ("union", tuple(items))  # type: ignore[arg-type]
        return None
    if tag == "rel" and node[1] != "!=":
        op, a, b = node[1], node[2], node[3]
        if a[0] != "sym" and b[0] == "sym":
            op, a, b = _FLIPPED[op], b, a
        if a[0] != "sym" or symbols(b):
            return None
        if op in ("<", "<="):
            return ("interval", False, ("neg", _OO), b, op == "<=")
        return ("interval", op == ">=", b, _OO, False)
    if tag == "rel2" and node[3][0] == "sym" and not symbols(node[2]) and not symbols(node[5]):
        op1, low, op2, high = node[1], node[2], node[4], node[5]
        if op1 in (">", ">=") and op2 in (">", ">="):
            op1, low, op2, high = _FLIPPED[op2], high, _FLIPPED[op1], low
        if op1 in _LOWER and op2 in _LOWER:
            return ("interval", _LOWER[op1], low, high, _LOWER[op2])
    return None


def _as_sequence(node: Node) -> tuple | None:
    """The items of a tuple, a bare list, an open interval (same notation) or a vector."""
    tag = node[0]
    if tag in ("tuple", "list"):
        return node[1]
    if tag == "interval" and not node[1] and not node[4]:
        return (node[2], node[3])
    if tag == "matrix" and (len(node[1]) == 1 or len(node[1][0]) == 1):
        return tuple(x for row in node[1] for x in row)
    return None
