"""The step check: every equality between plain numbers in a completion must hold, exactly.

``first_false_step(text)`` finds each explicit equality whose sides are plain numeric
expressions (``a op b = c``, chains ``a = b = c``, GSM8K's ``<<a*b=c>>``; units, currency and
thousands separators stripped; LaTeX ``\\frac``, ``\\times``, ``\\cdot`` read) and evaluates both
sides with ``fractions.Fraction`` (no floats). The first equality that does not hold is returned,
quoted. Left alone: any side with a letter that is not a unit (``2x + 3 = 7``), a LaTeX command
we do not read (``\\sqrt``, ``\\pi``), a bare number after a word ("half of 10 = 5", "Day 3 = 15"),
bare numbers with different units ("2 hours = 120 minutes"), and values too large to compute
(exponents and factorials are capped before evaluating, so ``9^9^9`` is skipped, not computed).
A stated rounding (``≈``, "about", "approximately", "rounded", a trailing "...") holds when the
two sides differ by at most one unit in the last written digit of the rounded side, or 1% of it.
Everything is one linear pass over the text (no backtracking regex), bounded by ``MAX_CHARS``.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

FALSE_STEP = "false step"
MAX_CHARS = 20_000  # the committed text is scanned this far back
MAX_BITS = 4096  # an intermediate value past this size is not computed (the step is skipped)
MAX_EXPONENT = 1024
MAX_FACTORIAL = 300
ROUND_REL = Fraction(1, 100)

_CODE = re.compile(r"```.*?(?:```|$)", re.S)
# Where a text cut at a window may resume: a line end, or a sentence end (a decimal point has no space after it).
BOUNDARY = re.compile(r"\n|[.;!?]\s")
_ANNOTATION = re.compile(r"<<([^<>\n]{1,200})>>")
_FRAC = re.compile(r"\\[dtc]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_EXPONENT = re.compile(r"\^\s*\{([^{}]*)\}")
_WRAP = re.compile(r"\\(?:text|mathrm|textbf|mathbf|mbox|operatorname|boxed|fbox)\s*\{([^{}]*)\}")
_REPLACE = (
    ("\\left", ""), ("\\right", ""), ("\\times", "*"), ("\\cdot", "*"), ("\\ast", "*"), ("\\div", "/"),
    ("\\approx", "≈"), ("\\simeq", "≈"), ("\\sim", "≈"), ("\\$", "$"), ("\\%", "%"), ("{,}", ","),
    ("\\,", ""), ("\\!", ""), ("\\;", " "), ("\\quad", " "), ("\\(", " "), ("\\)", " "), ("\\[", " "),
    ("\\]", " "), ("×", "*"), ("·", "*"), ("∗", "*"), ("÷", "/"), ("−", "-"), ("–", "-"), ("**", " "),
    ("\\neq", "≠"), ("\\ne", "≠"), ("\\leq", "≤"), ("\\geq", "≥"), ("\\le", "≤"), ("\\ge", "≥"),
)
_TOKEN = re.compile(
    r"(?P<num>\d+(?:,\d{3})+(?![\d,])(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"|(?P<eq>(?<![<>!=])=(?![=>]))|(?P<approx>≈)|(?P<op>[-+*/^()!%])|(?P<word>[A-Za-z]+)"
    r"|(?P<cmd>\\[A-Za-z]+)|(?P<space>[ \t$€£{}]+)|(?P<brk>.|\n)",
)
_WORD_OPS = {"times": "*", "plus": "+", "minus": "-", "x": "*", "X": "*"}
# Words that change a value ("3 dozen", "2 million"): a side holding one is not plain.
_MAGNITUDES = {"dozen", "hundred", "thousand", "million", "billion", "trillion", "half", "quarter", "third"}
_PROSE = {
    "and", "or", "but", "so", "then", "thus", "hence", "the", "of", "in", "on", "at", "to", "for", "with", "from",
    "by", "is", "are", "was", "were", "be", "it", "he", "she", "they", "we", "you", "this", "that", "which", "each",
    "per", "than", "more", "less", "left", "total", "plus", "minus", "times", "if", "when", "as", "into", "over",
    "an", "has", "have", "had", "gives", "makes", "means", "equals", "not", "now", "after", "before", "because",
}
_ROUNDING = re.compile(r"\b(?:about|approx\w*|roughly|nearly|around|almost|round\w*|estimat\w*)\b|\.\.\.|…|~", re.I)


class _Skip(Exception):
    """The step is not a plain numeric equality we can evaluate (left alone)."""


def _normalise(text: str) -> str:
    for old, new in _REPLACE:
        if old in text:
            text = text.replace(old, new)
    if "\\" not in text and "^{" not in text:
        return text
    for _ in range(3):  # nested \frac / ^{...} / \text, at most three deep
        before = text
        text = _FRAC.sub(r"((\1)/(\2))", text) if "frac" in text else text
        text = _EXPONENT.sub(r"^(\1)", text) if "^" in text else text
        text = _WRAP.sub(r" \1 ", text) if "\\" in text else text
        if text == before:
            break
    return text


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, value, end) tokens; words become units, operators, or poison ("sym")."""
    raw = [(m.lastgroup or "brk", m.group(), m.end()) for m in _TOKEN.finditer(text) if m.lastgroup != "space"]
    end_token = ("brk", "", len(text))
    out: list[tuple[str, str, int]] = []
    skip = 0
    for i, (kind, value, end) in enumerate(raw):
        if skip:
            skip -= 1
            continue
        nxt = raw[i + 1] if i + 1 < len(raw) else end_token
        if kind == "op" and value == "!":
            if nxt[0] in ("brk", "word") or nxt[:2] == ("op", "("):
                kind = "brk"  # "... = 7!" ends a sentence; "5! = 120" is a factorial
        if kind == "word":
            prev = out[-1] if out else ("brk", "", 0)
            after_number = prev[0] == "num" or prev[:2] == ("op", "%") or (
                prev[0] == "unit" and len(out) > 1 and out[-2][0] == "num"  # "square feet": two words at most
            )
            if value in _WORD_OPS and prev[0] == "num" and nxt[0] == "num":
                kind, value = "op", _WORD_OPS[value]
            elif value.lower() == "percent" and prev[0] == "num":
                kind, value = "op", "%"
            elif value in ("a", "A", "I") or value.lower() in _PROSE:
                kind = "brk"  # prose, never a unit ("7 and cost - 3": a new operand starts)
            elif value.lower() in _MAGNITUDES or len(value) == 1:
                kind = "sym"  # a magnitude or a variable: the side is not plain
            elif after_number and not (nxt[0] == "num" or nxt[:2] == ("op", "(")):
                kind = "unit"
                if nxt[:2] == ("op", "^") and i + 2 < len(raw) and raw[i + 2][0] == "num":
                    skip = 2  # "12 cm^2": the power is the unit's
            else:
                kind = "brk"  # prose ("5 and 3", "half of 10")
        elif kind == "cmd":
            kind = "sym"  # \sqrt, \pi, ...: symbolic, left alone
        out.append((kind, value, end))
    return out


def first_false_step(text: str) -> str | None:
    """The first equality between plain numbers in ``text`` that does not hold, quoted; else None."""
    if len(text) > MAX_CHARS:
        text = text[-MAX_CHARS:]
        cut = BOUNDARY.search(text, 0, 2000)  # no half-cut step at the start: from a line or sentence end
        text = text[cut.end() :] if cut else text.split(None, 1)[-1]
    if "```" in text:
        text = _CODE.sub("\n", text)
    steps = [m.group(1) for m in _ANNOTATION.finditer(text)] if "<<" in text else []
    if steps:
        text = _ANNOTATION.sub(" ", text)
    # only lines with an equality can hold a step: the rest is never normalised or tokenised
    text = "\n".join(line for line in text.split("\n") if "=" in line or "\u2248" in line or "\\approx" in line or "\\sim" in line)
    if not text and not steps:
        return None
    for chunk in steps + [text]:
        found = _check_runs(_normalise(chunk), chunk)
        if found is not None:
            return found
    return None


def _check_runs(text: str, original: str) -> str | None:
    tokens = _tokens(text)
    run: list[tuple[str, str, int]] = []
    before: tuple[str, str, int] = ("brk", "", 0)
    for tok in tokens + [("brk", "", len(text))]:
        if tok[0] != "brk":
            run.append(tok)
            continue
        if any(t[0] in ("eq", "approx") for t in run):
            found = _check_run(run, before, text)
            if found is not None:
                return found
        run, before = [], tok
    return None


def _check_run(run: list[tuple[str, str, int]], before: tuple[str, str, int], text: str) -> str | None:
    segments: list[list[tuple[str, str, int]]] = [[]]
    seps: list[str] = []
    for tok in run:
        if tok[0] in ("eq", "approx"):
            segments.append([])
            seps.append(tok[0])
        else:
            segments[-1].append(tok)
    for i, sep in enumerate(seps):
        left, right = segments[i], segments[i + 1]
        try:
            a, b = _value(left, first=i == 0, before=before), _value(right, first=False, before=before)
        except _Skip:
            continue
        if i == 0 and _bare(left) and before[1] not in ("", "\n", ".", ";", "!", "?"):
            continue  # "half of 10 = 5", "Day 3 = 15", "1:2 = 0.5": the number may be an operand
        if _bare(left) and _bare(right) and _units(left) != _units(right):
            continue  # "2 hours = 120 minutes": a conversion, not arithmetic
        tail = text[right[-1][2] : right[-1][2] + 30] if right else ""
        start = left[0][2] - len(left[0][1]) if left else 0
        head = text[max(0, start - 40) : start]
        rounded = sep == "approx" or bool(_ROUNDING.search(tail.split("\n", 1)[0])) or bool(
            re.search(r"(?:about|approximately|roughly|≈|~)\s*$", head.split("=")[-1], re.I)
        )
        if _holds(a, b, right, rounded) or (_has_pct(left) != _has_pct(right) and _pct_free_holds(left, right)):
            continue
        return " ".join(text[start : right[-1][2]].split())
    return None


def _bare(seg: list[tuple[str, str, int]]) -> bool:
    return not any(t[0] == "op" and t[1] not in ("%",) for t in seg)


def _units(seg: list[tuple[str, str, int]]) -> tuple[str, ...]:
    return tuple(t[1].lower().rstrip("s") for t in seg if t[0] == "unit")


def _has_pct(seg: list[tuple[str, str, int]]) -> bool:
    return any(t == ("op", "%", t[2]) for t in seg)


def _pct_free_holds(left: list, right: list) -> bool:
    """'20% = 0.2' or '20% = 20': a percent sign on one side only holds either way."""
    try:
        a = _value([t for t in left if t[1] != "%"], first=False, before=("brk", "", 0))
        b = _value([t for t in right if t[1] != "%"], first=False, before=("brk", "", 0))
    except _Skip:
        return False
    return a == b or a == b / 100 or a / 100 == b


def _holds(a: Fraction, b: Fraction, right: list[tuple[str, str, int]], rounded: bool) -> bool:
    if a == b:
        return True
    if not rounded:
        return False
    digits = [t[1] for t in right if t[0] == "num"]
    places = len(digits[-1].split(".")[1]) if digits and "." in digits[-1] else 0
    tol = max(Fraction(1, 10**places), ROUND_REL * abs(b))
    return abs(a - b) <= tol


def _value(seg: list[tuple[str, str, int]], *, first: bool, before: tuple[str, str, int]) -> Fraction:
    items = [t for t in seg if t[0] != "unit"]
    if not items or any(t[0] == "sym" for t in items):
        raise _Skip()
    if first and (items[0][1] == "+" or (items[0][1] == "-" and before[1].isalpha())):
        raise _Skip()  # "cost - 3 = 7", "... + 3 = 7": the operator is binary, its left operand not a number
    parser = _Parser(items)
    value = parser.expr()
    if parser.i != len(items):
        raise _Skip()
    return value


class _Parser:
    """Recursive descent over number/operator tokens, with every size capped."""

    def __init__(self, items: list[tuple[str, str, int]]):
        self.items, self.i, self.depth = items, 0, 0

    def peek(self) -> str | None:
        return self.items[self.i][1] if self.i < len(self.items) else None

    def expr(self) -> Fraction:
        self.depth += 1
        if self.depth > 40:
            raise _Skip()
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.items[self.i][1]
            self.i += 1
            value = _sized(value + self.term() if op == "+" else value - self.term())
        self.depth -= 1
        return value

    def term(self) -> Fraction:
        value = self.unary()
        while self.peek() in ("*", "/", "("):
            op = self.items[self.i][1]
            if op != "(":
                self.i += 1
            right = self.unary()
            if op == "/":
                if right == 0:
                    raise _Skip()
                value = _sized(value / right)
            else:
                value = _sized(value * right)
        return value

    def unary(self) -> Fraction:
        if self.peek() == "-":
            self.i += 1
            return -self.unary()
        if self.peek() == "+":
            self.i += 1
            return self.unary()
        base = self.postfix()
        if self.peek() == "^":
            self.i += 1
            exponent = self.unary()
            if exponent.denominator != 1 or abs(exponent) > MAX_EXPONENT:
                raise _Skip()
            if base == 0 and exponent < 0:
                raise _Skip()
            size = max(base.numerator.bit_length(), base.denominator.bit_length())
            if size * abs(int(exponent)) > MAX_BITS:
                raise _Skip()
            return base ** int(exponent)
        return base

    def postfix(self) -> Fraction:
        value = self.atom()
        while self.peek() in ("!", "%"):
            op = self.items[self.i][1]
            self.i += 1
            if op == "%":
                value = value / 100
                continue
            double = self.peek() == "!"
            self.i += double
            if value.denominator != 1 or not 0 <= value <= MAX_FACTORIAL:
                raise _Skip()
            n = int(value)
            value = Fraction(math.prod(range(n, 0, -2)) if double else math.factorial(n))
        return value

    def atom(self) -> Fraction:
        if self.i >= len(self.items):
            raise _Skip()
        kind, value, _ = self.items[self.i]
        self.i += 1
        if kind == "num":
            return Fraction(value.replace(",", ""))
        if value == "(":
            inner = self.expr()
            if self.peek() != ")":
                raise _Skip()
            self.i += 1
            return inner
        raise _Skip()


def _sized(value: Fraction) -> Fraction:
    if value.numerator.bit_length() + value.denominator.bit_length() > MAX_BITS:
        raise _Skip()
    return value
