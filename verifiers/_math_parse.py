"""Normalise a LaTeX/plain answer and parse it into a small tuple AST.

The AST is plain tuples (hashable, picklable, no sympy), so parsing and the exact fast path
run in-process in microseconds and only the hard cases are shipped to the sympy worker.
Nothing here calls ``eval``; every construct the parser accepts is listed below, and
input size, nesting and token counts are capped so that a hostile answer cannot stall it.

Nodes: ("num", Fraction, is_decimal) ("sym", name) ("const", "pi"|"E"|"I"|"oo")
("+"|"-"|"*"|"/"|"^", a, b) ("neg", a) ("!", a) ("sqrt", a, index|None) ("fn", name, args)
("abs"|"floor"|"ceil", a) ("binom", n, k); structures: ("tuple"|"set"|"list", items)
("interval", left_closed, a, b, right_closed) ("union", items) ("matrix", rows)
("eq", lhs, rhs) ("rel", op, lhs, rhs) ("text", words) ("choice", letter) ("pct", a).
"""

from __future__ import annotations

import cmath
import math
import re
from fractions import Fraction
from typing import Any

Node = tuple[Any, ...]
MAX_ANSWER_CHARS = 1000
MAX_TOKENS = 400
MAX_DEPTH = 60


class ParseError(ValueError):
    """The answer is not in the supported notation."""


FUNCS = {
    "sin", "cos", "tan", "sec", "csc", "cot", "arcsin", "arccos", "arctan", "sinh", "cosh",
    "tanh", "log", "ln", "exp", "lg",
}
GREEK = {
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta",
    "vartheta", "iota", "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon",
    "phi", "varphi", "chi", "psi", "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma",
    "Phi", "Psi", "Omega",
}
_CMD_ALIASES = {
    "cdot": "*", "times": "*", "ast": "*", "div": "/", "le": "<=", "leq": "<=",
    "leqslant": "<=", "ge": ">=", "geq": ">=", "geqslant": ">=", "lt": "<", "gt": ">",
    "ne": "!=", "neq": "!=", "vert": "|", "lvert": "|", "rvert": "|", "mid": "|",
    "cfrac": "frac", "infin": "infty", "infinity": "infty", "to": "=",
}
_UNICODE = {
    "π": "\\pi ", "∞": "\\infty ", "√": "\\sqrt ", "×": "\\times ", "·": "\\cdot ",
    "−": "-", "–": "-", "≤": "\\le ", "≥": "\\ge ", "≠": "\\ne ", "∪": "\\cup ", "÷": "\\div ",
    "°": "", "∅": "\\emptyset ",
}
_DROP = (
    "\\left", "\\right", "\\bigl", "\\bigr", "\\Bigl", "\\Bigr", "\\big", "\\Big",
    "\\displaystyle", "\\!", "\\limits", "\\nolimits",
)
# Spacing commands, but not the second half of a "\\\\" row break followed by a space.
_SPACES = re.compile(r"(?<!\\)\\(?:[,;: ]|quad|qquad|enspace)|~")
_MATH_DELIMS = re.compile(r"(?<!\\)\\[()\[\]]")
_WRAPPERS = re.compile(
    r"\\(?:mathbf|mathrm|textbf|mathit|boldsymbol|operatorname|mathsf|textit|bm|mathnormal"
    r"|textrm|mathbb)\s*\{([^{}]*)\}"
)
_TEXT = re.compile(r"\\(?:text|mbox|textnormal|hbox)\s*\{([^{}]*)\}(\s*\^\s*\{?\d\}?)?")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree|\^\s*\{\s*\}")
_UNIT_WORDS = re.compile(r"(?:\s+[a-zA-Z]{2,}\.?(?:\s*\^\s*\{?\d\}?)?)+\s*$")
_CHOICE = re.compile(r"\(?([A-E])\)?(?:[\s.:)].*)?")
_TOKEN = re.compile(
    r"(?P<num>\d+(?:\.\d*)?|\.\d+)|(?P<cmd>\\[a-zA-Z]+|\\[{}|\\])|(?P<ch>[a-zA-Z])"
    r"|(?P<op><=|>=|!=|[-+*/^_!=<>()\[\]{},|&])|(?P<ws>\s+)"
)


def clean(answer: str) -> tuple[str, dict[str, bool]]:
    """String-level normalisation; returns the cleaned string and unit flags."""
    s = answer.strip()
    if len(s) > MAX_ANSWER_CHARS:
        raise ParseError(f"answer longer than {MAX_ANSWER_CHARS} characters")
    flags = {"percent": False, "degrees": False, "dollars": False, "text": False}
    for old, new in _UNICODE.items():
        s = s.replace(old, new)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("{,}", ",")
    for token in _DROP:
        s = s.replace(token, "")
    s = _SPACES.sub(" ", s)
    s = _MATH_DELIMS.sub(" ", s)
    if "\\$" in s or "$" in s or re.search(r"\bdollars?\b", s):
        flags["dollars"] = "\\$" in s or bool(re.search(r"\bdollars?\b", s))
        s = s.replace("\\$", "").replace("$", "")
    for _ in range(4):
        s, n = _WRAPPERS.subn(r"\1", s)
        if not n:
            break
    whole_text = _TEXT.fullmatch(s.strip())
    if whole_text:
        s, flags["text"] = whole_text.group(1).strip(), True
    else:
        s = _TEXT.sub(_text_repl, s)
    s, n = _DEGREES.subn("", s)
    flags["degrees"] = n > 0
    if re.search(r"\\?%\s*$", s):
        flags["percent"] = True
        s = re.sub(r"\\?%\s*$", "", s)
    s = re.sub(r"\s+(?:or|and)\s+", ", ", s).strip().rstrip(".").strip()
    unit = _UNIT_WORDS.search(s)
    if unit and unit.start() > 0 and re.search(r"[\d}\\)]", s[: unit.start()]):
        if re.search(r"\bcents?\b", s[unit.start() :]):
            flags["cents"] = True
        s = s[: unit.start()].strip()
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s) or re.fullmatch(
        r"-?\d{1,3}(?: \d{3})+(?:\.\d+)?", s
    ):
        s = s.replace(",", "").replace(" ", "")
    return s, flags


def _text_repl(m: re.Match) -> str:
    inner = m.group(1).strip()
    if inner in ("or", "and", ",", "or,", "and,"):
        return ", "
    if re.fullmatch(r"\(?[A-E]\)?", inner):
        return inner
    return " "  # a unit such as \text{ cm}: meaningless for the value


def choice_letter(answer: str) -> str | None:
    """The multiple-choice letter an answer names ("C", "(C)", "\\text{(C) } 12"), if any."""
    s, _ = clean(answer)
    m = _CHOICE.fullmatch(s.strip())
    return m.group(1) if m else None


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
    node = _Parser(_tokenize(s)).parse_top()
    if flags["percent"]:
        node = ("pct", node)
    return node, flags


def _tokenize(s: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m:
            raise ParseError(f"unexpected character {s[pos]!r}")
        pos = m.end()
        kind = m.lastgroup
        value = m.group()
        if kind == "ws":
            continue
        if kind == "cmd":
            name = value[1:]
            name = _CMD_ALIASES.get(name, name)
            if name in ("*", "/", "<=", ">=", "<", ">", "!=", "|", "="):
                kind, value = "op", name
            else:
                value = name
        tokens.append((kind, value))
        if len(tokens) > MAX_TOKENS:
            raise ParseError("answer has too many tokens")
    return tokens


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
        if self.accept("in"):
            return self.parse_union()  # "x \in [1, 2]" states the set
        op = self.peek()
        if op is not None and op[0] == "op" and op[1] in _RELATIONS:
            self.i += 1
            right = self.parse_union()
            if op[1] == "=":
                while self.accept("="):  # "x = 2 + 1 = 3": the last member is the answer
                    left, right = right, self.parse_union()
                return ("eq", left, right)
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
                node = ("!", node)
            elif self.accept("_"):
                sub = self.raw_arg()
                if node[0] == "sym":
                    node = ("sym", f"{node[1]}_{sub}")
            else:
                return node

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
                self.i -= 1
                return self.group("{", "}")
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
    return ("num", Fraction(text), "." in text)


# ---- evaluation -------------------------------------------------------------------------

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
            return node[2]
        return any(has_decimal(child) for child in node)
    return False


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


def approx(node: Node, env: dict[str, complex]) -> complex | None:
    """A float value for quick rejection (symbols take the values in ``env``), or None."""
    try:
        value = _approx(node, env)
    except (OverflowError, ZeroDivisionError, ValueError, TypeError, KeyError):
        return None
    if value is None or not cmath.isfinite(value):
        return None
    return value


_CFUNCS = {
    "sin": cmath.sin, "cos": cmath.cos, "tan": cmath.tan, "arcsin": cmath.asin,
    "arccos": cmath.acos, "arctan": cmath.atan, "sinh": cmath.sinh, "cosh": cmath.cosh,
    "tanh": cmath.tanh, "exp": cmath.exp,
    "sec": lambda z: 1 / cmath.cos(z), "csc": lambda z: 1 / cmath.sin(z),
    "cot": lambda z: 1 / cmath.tan(z),
}


def _approx(node: Node, env: dict[str, complex]) -> complex | None:
    tag = node[0]
    if tag == "num":
        return complex(float(node[1]))
    if tag == "sym":
        return env[node[1]]
    if tag == "const":
        return {"pi": complex(math.pi), "E": complex(math.e), "I": 1j}.get(node[1])
    if tag == "neg":
        v = _approx(node[1], env)
        return None if v is None else -v + 0j  # +0j: no -0.0 imaginary part across branch cuts
    if tag in ("+", "-", "*", "/", "^"):
        a = _approx(node[1], env)
        b = _approx(node[2], env) if a is not None else None
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
        a = _approx(node[1], env)
        n = _approx(node[2], env) if node[2] is not None else 2
        if a is None or n is None:
            return None
        if a.imag == 0 and a.real >= 0:
            return complex(a.real ** (1 / n.real if isinstance(n, complex) else 1 / n))
        return a ** (1 / n)
    if tag == "!":
        v = _approx(node[1], env)
        if v is None or v.imag or not -1 < v.real < 170:
            return None
        return complex(math.gamma(v.real + 1))
    if tag == "abs":
        v = _approx(node[1], env)
        return None if v is None else complex(abs(v))
    if tag == "fn":
        args = [_approx(a, env) for a in node[2]]
        if any(a is None for a in args):
            return None
        if node[1] == "log":
            value = cmath.log(args[0])
            return value / cmath.log(args[1]) if len(args) > 1 else value
        return _CFUNCS[node[1]](*args)
    return None
