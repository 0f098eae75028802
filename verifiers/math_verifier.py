"""The ``math`` verifier: final-answer equivalence, proved exactly or not accepted.

Pipeline per check: extract the final answer (``_math_extract``: the last final-answer
statement wins), normalise and parse both answers into a small AST (``_math_normalize``,
``_math_parse``; cached), then compare: structure by structure (sets unordered, tuples
ordered, interval ends, matrices), each scalar pair first by exact rational arithmetic
in-process (``_math_eval``), then a float evaluation that can only *reject*, and only what is
left (surds, symbolic identities) by sympy in a killable child process (``_math_sympy``).
Policy choices (the last-sentence rule, exactness) are a frozen ``MathVerifyConfig``.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import re
import time
from fractions import Fraction
from typing import Any, Mapping

from verifiers._math_config import MathVerifyConfig
from verifiers._math_extract import extract_answer, last_sentence_answer
from verifiers._math_eval import approx, decimal_places, exact, has_decimal, symbols
from verifiers._math_normalize import ParseError, choice_letters, clean, hedge_signal
from verifiers._math_parse import Node, parse_answer
from verifiers._math_sympy import SympyWorker, WorkerTimeout
from verifiers.base import Verdict

_STRUCTURES = {
    "tuple", "set", "list", "interval", "union", "matrix", "eq", "rel", "text", "choice", "pct",
}
_HUNDRED: Node = ("num", Fraction(100), False)
_FLIPPED = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "!=": "!="}
HEDGE = "several answers given where one is expected"
TIMEOUT = "timeout: cannot verify within the time limit"
MAX_TREE_DEPTH = 120  # far beyond any real answer; keeps every recursive walk of the tree shallow
_SENTENCE = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}\s+[a-zA-Z]{2,}")  # two words, not \commands

__all__ = ["HEDGE", "TIMEOUT", "MathVerifier", "MathVerifyConfig"]


def _depth(node: Node) -> int:
    """The tree's depth, walked without recursion."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        item, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((c, d + 1) for c in item if isinstance(c, tuple))
    return deepest


@functools.lru_cache(maxsize=65536)
def _parse(answer: str) -> tuple[Node, tuple[tuple[str, bool], ...]] | ParseError:
    try:
        node, flags = parse_answer(answer)
    except RecursionError:
        error = "answer nested too deeply"
    except ParseError as exc:
        error = str(exc)
    except (ValueError, ArithmeticError) as exc:  # a literal the grammar let through
        error = f"{type(exc).__name__}: {exc}"
    else:
        if _depth(node) <= MAX_TREE_DEPTH:
            return node, tuple(sorted(flags.items()))
        # "x x x ... x" (400 factors) parses flat but nests as deep as it is long; the
        # comparison recurses over the tree, so such a tree is refused here
        error = "answer nested too deeply"
    # A fresh exception: a cached one would pin its traceback's frames for the cache's life.
    return ParseError(error)


@functools.lru_cache(maxsize=4096)
def _sample_point(name: str) -> complex:
    # A fixed, irrational-looking positive value per symbol: equal expressions agree there.
    return complex(random.Random(name).uniform(0.3, 1.7))


class _Undecided(Exception):
    """The comparison hit a size guard (recorded as the reason)."""


class MathVerifier:
    """Checks the completion's final answer against ``problem["answer"]``.

    Args:
        timeout: seconds allowed per check (the symbolic part is killed past it; the verdict
            is then ``ok=None``, cannot verify).
        rel_tol: shorthand for ``config.rel_tol`` (decimal answers against irrational golds).
        config: the policy options (:class:`MathVerifyConfig`); default: the strict ones.
    """

    name = "math"

    def __init__(
        self, *, timeout: float = 1.0, rel_tol: float | None = None, config: MathVerifyConfig | None = None
    ) -> None:
        config = config if config is not None else MathVerifyConfig()
        if not isinstance(config, MathVerifyConfig):
            raise TypeError(f"config must be a MathVerifyConfig, got {type(config).__name__}")
        if rel_tol is not None:
            config = dataclasses.replace(config, rel_tol=rel_tol)
        self.timeout = float(timeout)
        self.config = config
        self._worker: SympyWorker | None = None

    @property
    def rel_tol(self) -> float:
        return self.config.rel_tol

    def __getstate__(self) -> dict[str, Any]:
        return {"timeout": self.timeout, "config": self.config, "_worker": None}

    def warmup(self) -> None:
        """Start the sympy child now rather than at the first hard comparison."""
        self._sympy().call(("equal", ("num", Fraction(1), False), ("sym", "x"), None), 60.0)

    def close(self) -> None:
        """Stop the sympy child process (it restarts on demand)."""
        if self._worker is not None:
            self._worker.close()

    def _sympy(self) -> SympyWorker:
        if self._worker is None:
            self._worker = SympyWorker()
        return self._worker

    def verify(self, problem: Mapping[str, Any], completion: str) -> Verdict:
        """Judge ``completion``; never raises for bad model output."""
        gold_raw = problem.get("answer")
        if isinstance(gold_raw, (int, float)) and not isinstance(gold_raw, bool):
            gold_raw = str(gold_raw)
        if not isinstance(gold_raw, str) or not gold_raw.strip():
            return Verdict(None, "problem has no gold answer")
        if not isinstance(completion, str):
            return Verdict(False, "completion is not a string")
        self._sympy().start()  # warms up in the background; most checks never need it
        try:
            gold_letter = _gold_choice(gold_raw)
        except ParseError as exc:
            return Verdict(None, f"cannot parse gold answer: {exc}")
        if gold_letter is not None:
            return self._verify_choice(gold_letter, completion)
        gold = _parse(gold_raw)
        if isinstance(gold, ParseError):
            return Verdict(None, f"cannot parse gold answer: {gold}")
        # A completion cut off at the token limit ends mid-thought: its last sentence concludes nothing.
        cut_off = problem.get("finish_reason") == "length"
        plain = self.config.last_sentence and not cut_off and _numeric(gold[0])
        pred_raw = extract_answer(completion, plain=plain)
        if pred_raw is None:
            return Verdict(False, "no final answer found")
        if hedge_signal(pred_raw):
            return Verdict(False, HEDGE, pred_raw)
        pred = _parse(pred_raw)
        if plain and _SENTENCE.search(pred_raw) and (isinstance(pred, ParseError) or symbols(pred[0])):
            # "**Answer:** Janet makes $18 a day.": a sentence after the marker states the number
            stated = last_sentence_answer(pred_raw)
            if stated is not None:
                pred_raw, pred = stated, _parse(stated)
        if isinstance(pred, ParseError):
            return Verdict(False, f"unparsable answer: {pred}", pred_raw)
        if dict(pred[1]).get("tentative"):
            return Verdict(False, HEDGE, pred_raw)
        check = _Check(self, time.monotonic() + self.timeout)
        g, p = _apply_units(gold, pred)
        try:
            if p[0] == "list" and g[0] not in ("list", "set", "tuple", "interval", "matrix"):
                return Verdict(False, HEDGE, pred_raw)
            ok = check.match(g, p)
        except WorkerTimeout:
            return Verdict(None, TIMEOUT, pred_raw)
        except _Undecided as exc:
            return Verdict(False, str(exc), pred_raw)
        if time.monotonic() > check.deadline:
            return Verdict(None, TIMEOUT, pred_raw)
        return Verdict(ok, "equivalent" if ok else "not equivalent", pred_raw)

    def _verify_choice(self, gold_letter: str, completion: str) -> Verdict:
        pred_raw = extract_answer(completion)
        if pred_raw is None:
            return Verdict(False, "no final answer found")
        try:
            letters = choice_letters(pred_raw)
        except ParseError as exc:
            return Verdict(False, f"unparsable answer: {exc}", pred_raw)
        if len(letters) > 1 or (letters and hedge_signal(pred_raw)):
            return Verdict(False, HEDGE, pred_raw)
        if not letters:
            return Verdict(False, "expected a choice letter", pred_raw)
        ok = letters[0] == gold_letter
        return Verdict(ok, "equivalent" if ok else "not equivalent", pred_raw)


def _numeric(node: Node) -> bool:
    """Whether a gold is one number (so a plain-number ending can state it)."""
    if node[0] == "pct":
        node = node[1]
    return node[0] not in _STRUCTURES and exact(node) is not None


def _gold_choice(gold: str) -> str | None:
    s, _ = clean(gold)
    m = re.fullmatch(r"\(?([A-E])\)?", s.strip())
    return m.group(1) if m else None


def _apply_units(gold: tuple, pred: tuple) -> tuple[Node, Node]:
    (g, gflags), (p, pflags) = gold, pred
    gf, pf = dict(gflags), dict(pflags)
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
