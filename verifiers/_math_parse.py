"""Tokenise a normalised answer and parse it into a small tuple AST.

The AST is plain tuples (hashable, picklable, no sympy), so parsing and the exact fast path
run in-process in microseconds and only the hard cases are shipped to the sympy worker.
Nothing here calls ``eval``; every construct the parser accepts is listed below, and
token counts and nesting are capped so that a hostile answer cannot stall it.

Nodes: ("num", Fraction, places) with places the digits written after a decimal point (0 for an
integer, so it doubles as "is a decimal") ("sym", name) ("const", "pi"|"E"|"I"|"oo")
("+"|"-"|"*"|"/"|"^", a, b) ("neg", a) ("!"|"!!", a) ("sqrt", a, index|None) ("fn", name, args)
("abs"|"floor"|"ceil", a) ("binom", n, k); structures: ("tuple"|"set"|"list", items)
("interval", left_closed, a, b, right_closed) ("union", items) ("matrix", rows)
("eq", lhs, rhs) ("rel", op, lhs, rhs) ("rel2", op, a, x, op, b) ("text", words) ("pct", a).
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

from verifiers._math_normalize import FUNCS, GREEK, ParseError, clean, mixed_numbers
from verifiers._math_tokenize import tokenize
from verifiers._math_units import in_base

Node = tuple[Any, ...]
MAX_DEPTH = 60


def parse_answer(answer: str) -> tuple[Node, dict[str, bool]]:
    """Parse an answer into an AST node plus its unit flags; raises ParseError."""
    s, flags = clean(answer)
    if not s:
        raise ParseError("empty answer")
    if re.fullmatch(r"[A-Za-z][A-Za-z\s'\-]*", s) and (
        flags["text"] or re.search(r"[A-Za-z]{2,}", s)
    ):
        return ("text", " ".join(s.lower().split())), flags
    mixed = re.fullmatch(r"(-?)(\d+)\s*(?:\\frac\{(\d+)\}\{(\d+)\}|\s(\d+)/(\d+))", s)
    if mixed:
        sign, whole = mixed.group(1), int(mixed.group(2))
        num = int(mixed.group(3) or mixed.group(5))
        den = int(mixed.group(4) or mixed.group(6))
        if den and num < den:
            value = whole + Fraction(num, den)
            return ("num", -value if sign else value, False), flags
    parser = _Parser(tokenize(mixed_numbers(s)))
    node = parser.parse_top()
    flags["base"] = parser.bases[-1] if parser.bases else None
    if flags["percent"]:
        node = ("pct", node)
    return node, flags


_ATOM_START_CMDS = FUNCS | GREEK | {
    "frac", "sqrt", "binom", "pi", "infty", "lfloor", "lceil", "e", "emptyset", "varnothing",
}
_RELATIONS = {"=", "<", ">", "<=", ">=", "!="}
_CLOSERS = {"(": ")", "[": "]"}


class _Parser:
    """Recursive descent over the token list; see the module docstring for the nodes."""

    def __init__(self, tokens: list[tuple[str, str]]):
        self.toks = tokens
        self.i = 0
        self.depth = 0
        self.abs_depth = 0
        self.bases: list[int] = []

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise ParseError("unexpected end of answer")
        self.i += 1
        return tok

    def accept(self, *values: str) -> str | None:
        tok = self.peek()
        if tok is not None and tok[0] in ("op", "cmd") and tok[1] in values:
            self.i += 1
            return tok[1]
        return None

    def expect(self, value: str) -> None:
        if not self.accept(value):
            raise ParseError(f"expected {value!r}")

    def parse_top(self) -> Node:
        items = [self.parse_relation()]
        while self.accept(","):
            if self.peek() is None:
                break  # trailing comma
            items.append(self.parse_relation())
        if self.peek() is not None:
            raise ParseError(f"unexpected {self.peek()[1]!r}")
        return items[0] if len(items) == 1 else ("list", tuple(items))

    def parse_relation(self) -> Node:
        left = self.parse_union()
        if self.accept(":"):  # a ratio "4:3" is the number 4/3
            return ("/", left, self.parse_union())
        if self.accept("in"):
            return self.parse_union()  # "x \in [1, 2]" states the set
        op = self.peek()
        if op is not None and op[0] == "op" and op[1] in _RELATIONS:
            self.i += 1
            right = self.parse_union()
            if op[1] == "=":
                while self.accept("="):  # "x = 2 + 1 = 3" states x = 3
                    right = self.parse_union()
                return ("eq", left, right)
            nxt = self.peek()
            if nxt is not None and nxt[0] == "op" and nxt[1] in _RELATIONS - {"=", "!="}:
                self.i += 1  # "2 < x \le 5": a chained inequality
                return ("rel2", op[1], left, right, nxt[1], self.parse_union())
            return ("rel", op[1], left, right)
        return left

    def parse_union(self) -> Node:
        items = [self.parse_pm()]
        while self.accept("cup"):
            items.append(self.parse_pm())
        return items[0] if len(items) == 1 else ("union", tuple(items))

    def parse_pm(self) -> Node:
        start = self.i
        left = self.parse_expr()
        if self.accept("pm", "mp"):
            right = self.parse_expr()
            return ("list", (("+", left, right), ("-", left, right)))
        if self.i == start:
            raise ParseError("empty expression")
        return left

    def parse_expr(self) -> Node:
        tok = self.peek()
        if tok in (("cmd", "pm"), ("cmd", "mp")):
            self.i += 1
            value = self.parse_term()
            return ("list", (value, ("neg", value)))
        node = self.parse_term()
        while True:
            op = self.accept("+", "-")
            if not op:
                return node
            node = (op, node, self.parse_term())

    def parse_term(self) -> Node:
        node = self.parse_unary()
        while True:
            op = self.accept("*", "/")
            if op:
                node = (op, node, self.parse_unary())
            elif self._starts_atom():
                if self.toks[self.i - 1][0] == "num" and self.peek()[0] == "num":
                    raise ParseError("two numbers side by side")  # "2 3" is not 6
                node = ("*", node, self.parse_power())
            else:
                return node

    def _starts_atom(self) -> bool:
        tok = self.peek()
        if tok is None:
            return False
        kind, value = tok
        if kind in ("num", "ch"):
            return True
        if kind == "cmd":
            return value in _ATOM_START_CMDS or value == "{" or value == "langle"
        return value in ("(", "{") or (value == "|" and self.abs_depth == 0)

    def parse_unary(self) -> Node:
        if self.accept("-"):
            return ("neg", self.parse_unary())
        if self.accept("+"):
            return self.parse_unary()
        return self.parse_power()

    def parse_power(self) -> Node:
        base = self.parse_postfix()
        if self.accept("^"):
            return ("^", base, self.parse_exponent())
        return base

    def parse_exponent(self) -> Node:
        if self.accept("-"):
            return ("neg", self.parse_exponent())
        tok = self.peek()
        if tok == ("op", "{"):
            node = self.group("{", "}")
        else:
            node = self.parse_postfix()
        if self.accept("^"):
            return ("^", node, self.parse_exponent())
        return node

    def group(self, opener: str, closer: str) -> Node:
        self.expect(opener)
        node = self.parse_relation()
        self.expect(closer)
        return node

    def parse_postfix(self) -> Node:
        node = self.parse_atom()
        while True:
            if self.accept("!"):
                node = ("!!", node) if self.accept("!") else ("!", node)  # 5!! is 5*3*1, not (5!)!
            elif self.accept("_"):
                sub = self.raw_arg()
                if node[0] == "sym":
                    node = ("sym", f"{node[1]}_{sub}")
                elif node[0] == "num" and not node[2]:
                    node = self.based(node, sub)
            else:
                return node

    def based(self, node: Node, sub: str) -> Node:
        """``1011_2``: the digits read in the subscript's base (2-36); the base is kept in ``self.bases``."""
        base = sub.strip("()")
        if not base.isdigit():
            raise ParseError(f"unsupported subscript {sub!r}")
        value = in_base(str(node[1].numerator), int(base))
        if value is None:
            raise ParseError(f"{node[1]} is not a numeral in base {base}")
        self.bases.append(int(base))
        return ("num", Fraction(value), 0)

    def raw_arg(self) -> str:
        """A subscript's text: "{10}" -> "10", "n" -> "n"."""
        if self.accept("{"):
            parts = []
            while not self.accept("}"):
                parts.append(self.take()[1])
            return "".join(parts)
        return self.take()[1]

    def arg(self) -> Node:
        """A command argument: a brace group or one token (``\\frac12`` takes one digit)."""
        tok = self.peek()
        if tok == ("op", "{"):
            return self.group("{", "}")
        if tok is not None and tok[0] == "num" and len(tok[1]) > 1:
            self.toks[self.i] = ("num", tok[1][1:])  # the rest is the next token
            return _number(tok[1][0])
        return self.parse_atom()

    def parse_atom(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError("answer nested too deeply")
        try:
            return self._atom()
        finally:
            self.depth -= 1

    def _atom(self) -> Node:
        kind, value = self.take()
        if kind == "num":
            return _number(value)
        if kind == "ch":
            return {"e": ("const", "E"), "i": ("const", "I")}.get(value, ("sym", value))
        if kind == "op":
            if value == "(" or value == "[":
                return self.bracketed(value)
            if value == "{":
                # "{5}" is a group; a bare-brace list "{1, 2}" is a set, as in \\{1, 2\\}
                found = self.items("}")
                if not found:
                    raise ParseError("empty group")
                return found[0] if len(found) == 1 else ("set", found)
            if value == "|":
                self.abs_depth += 1
                node = self.parse_expr()
                self.abs_depth -= 1
                self.expect("|")
                return ("abs", node)
            raise ParseError(f"unexpected {value!r}")
        if value == "frac":
            return ("/", self.arg(), self.arg())
        if value == "binom":
            return ("binom", self.arg(), self.arg())
        if value == "sqrt":
            index = None
            if self.accept("["):
                index = self.parse_expr()
                self.expect("]")
            return ("sqrt", self.arg(), index)
        if value == "pi":
            return ("const", "pi")
        if value == "infty":
            return ("const", "oo")
        if value in GREEK:
            return ("sym", value)
        if value in FUNCS:
            return self.function(value)
        if value in ("lfloor", "lceil"):
            node = self.parse_expr()
            self.expect("rfloor" if value == "lfloor" else "rceil")
            return ("floor" if value == "lfloor" else "ceil", node)
        if value == "{":
            return ("set", self.items("}"))
        if value == "langle":
            return ("tuple", self.items("rangle"))
        if value in ("emptyset", "varnothing"):
            return ("set", ())
        if value == "begin":
            return self.matrix()
        raise ParseError(f"unsupported command \\{value}")

    def items(self, closer: str) -> tuple[Node, ...]:
        found: list[Node] = []
        if self.accept(closer):
            return ()
        while True:
            found.append(self.parse_relation())
            if self.accept(closer):
                return tuple(found)
            self.expect(",")

    def bracketed(self, opener: str) -> Node:
        found = [self.parse_relation()]
        while self.accept(","):
            found.append(self.parse_relation())
        closer = self.accept(")", "]")
        if not closer:
            raise ParseError(f"unclosed {opener!r}")
        if len(found) == 1:
            if closer != _CLOSERS[opener]:
                raise ParseError("mismatched brackets")
            return found[0]
        if len(found) == 2 and (opener, closer) != ("(", ")"):
            return ("interval", opener == "[", found[0], found[1], closer == "]")
        return ("tuple", tuple(found))

    def function(self, name: str) -> Node:
        base = None
        if name == "log" and self.accept("_"):
            base = self.arg()
        power = None
        if self.accept("^"):
            power = self.parse_exponent()
        if self.peek() == ("op", "("):
            arg = self.group("(", ")")
        else:
            arg = self.parse_power()
            while self.peek() is not None and self.peek()[0] in ("num", "ch"):
                arg = ("*", arg, self.parse_power())
        if name in ("ln",):
            node: Node = ("fn", "log", (arg,))
        elif name == "lg":
            node = ("fn", "log", (arg, _number("10")))
        elif base is not None:
            node = ("fn", "log", (arg, base))
        else:
            node = ("fn", name, (arg,))
        if power == ("neg", ("num", Fraction(1), False)) and name in ("sin", "cos", "tan"):
            return ("fn", "arc" + name, (arg,))
        return ("^", node, power) if power is not None else node

    def matrix(self) -> Node:
        env = self.raw_arg()
        if not env.endswith("matrix"):
            raise ParseError(f"unsupported environment {env!r}")
        rows: list[list[Node]] = [[]]
        while True:
            if self.accept("end"):
                self.raw_arg()
                break
            rows[-1].append(self.parse_expr())
            if self.accept("&"):
                continue
            if self.accept("\\"):
                if self.peek() == ("cmd", "end"):
                    continue
                rows.append([])
        widths = {len(r) for r in rows}
        if len(widths) != 1:
            raise ParseError("ragged matrix")
        return ("matrix", tuple(tuple(r) for r in rows))


def _number(text: str) -> Node:
    if not any(ch.isdigit() for ch in text):
        raise ParseError(f"not a number: {text!r}")
    places = len(text) - text.index(".") - 1 if "." in text else 0
    return ("num", Fraction(text), places)
