"""String-level normalisation of an answer before parsing (units, wrappers, separators).

``clean`` strips what does not change the value (``\\left``, ``\\dfrac``, spacing, ``$``,
``\\text{ cm}`` units, degree signs, thousands separators, ``\\color``, an ``\\approx`` tail),
rewrites notation (``1.5e3``, ``0.1\\overline{6}``, "12 (or 13)" as the list it is) and
reports the units that do change the value (percent, dollars, cents) and tentative wording
as flags for the comparison.
"""

from __future__ import annotations

import re
from typing import Any

from verifiers._math_units import clock, duration, notation, unicode_math, unit_of

MAX_ANSWER_CHARS = 1000


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
_UNICODE = {
    "π": "\\pi ", "∞": "\\infty ", "√": "\\sqrt ", "×": "\\times ", "·": "\\cdot ",
    "−": "-", "–": "-", "≤": "\\le ", "≥": "\\ge ", "≠": "\\ne ", "∪": "\\cup ", "÷": "\\div ",
    "°": "^\\circ", "∅": "\\emptyset ", "≈": "\\approx ",
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
_REPEATING = re.compile(r"(\d*)\.(\d{0,20})\\overline\s*\{(\d{1,20})\}")
_MAGNITUDES = re.compile(r"\b(?:hundred|thousand|million|billion|trillion|dozen|half|quarter)s?\b", re.I)
_CHOICE = re.compile(r"\(?([A-E])\)?(?:[\s.:)].*)?")
# Styling is not content: \color{red}{15}, {\color{red} 15}, \textcolor{red}{15}.
_COLOR = re.compile(r"\\(?:textcolor|colorbox)\s*\{[^{}]*\}|\\color\s*\{[^{}]*\}")
# 1.5e3, 2E-4: scientific notation (a digit must follow the e, so 3e and 3e^2 keep their e).
_SCIENTIFIC = re.compile(r"(?<![\w.\\])(\d+(?:\.\d+)?)[eE]([+-]?\d+)(?![\w.])")
# Words that make an answer tentative ("12 or perhaps 13"): several candidates, never a pass.
_TENTATIVE = re.compile(r"\b(?:perhaps|possibly|maybe|probably)\b", re.I)
# "12 (or 13)": an alternative in parentheses; the inner group allows one nested "(D)".
_PAREN_ALT = re.compile(r"\(\s*(?:or|and)\s+((?:[^()]|\([^()]*\))*)\)")
_HEDGE_SIGNAL = re.compile(
    r"\(\s*or\b|\b(?:perhaps|possibly|maybe|probably)\b|\beither\b.*\bor\b", re.I | re.S
)


def clean(answer: str) -> tuple[str, dict[str, Any]]:
    """String-level normalisation; returns the cleaned string and unit flags."""
    s = answer.strip()
    if len(s) > MAX_ANSWER_CHARS:
        raise ParseError(f"answer longer than {MAX_ANSWER_CHARS} characters")
    flags: dict[str, Any] = {"percent": False, "degrees": False, "dollars": False, "text": False, "tentative": False}
    s = notation(unicode_math(s))
    for old, new in _UNICODE.items():
        s = s.replace(old, new)
    s, flags["clock"] = clock(s)
    if not flags["clock"] and " " in s:
        s = duration(s)
    s, flags["unit"] = unit_of(s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("{,}", ",")
    for token in _DROP:
        s = s.replace(token, "")
    s = _COLOR.sub("", s)
    s = _exact_part(s)
    s = _SCIENTIFIC.sub(r"(\1\\times 10^{\2})", s)
    s = _SPACES.sub(" ", s)
    s = _MATH_DELIMS.sub(" ", s)
    if "\\$" in s or "$" in s or re.search(r"\bdollars?\b", s):
        flags["dollars"] = "\\$" in s or bool(re.search(r"\bdollars?\b", s))
        s = s.replace("\\$", "").replace("$", "")
    s = _REPEATING.sub(_repeating_repl, s)
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
    s, n = _TENTATIVE.subn(" ", s)
    flags["tentative"] = n > 0
    s = re.sub(r"\beither\s+", "", s)
    s = _PAREN_ALT.sub(r", \1", s)
    s = re.sub(r"\s+(?:or|and)\s+|\s*,\s*(?:or|and)\s+", ", ", s).strip().rstrip(".").strip()
    if re.search(r"\s+per\s?cent\s*$", s):
        flags["percent"] = True
        s = re.sub(r"\s+per\s?cent\s*$", "", s)
    unit = _UNIT_WORDS.search(s)
    # "10 thousand" is not 10 with a unit: magnitude words change the value, so keep them
    # (the answer then fails to parse rather than passing as 10).
    if unit and _MAGNITUDES.search(s[unit.start() :]):
        unit = None
    if unit and unit.start() > 0 and re.search(r"[\d}\\)]", s[: unit.start()]):
        if re.search(r"\bcents?\b", s[unit.start() :]):
            flags["cents"] = True
        s = s[: unit.start()].strip()
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s) or re.fullmatch(
        r"-?\d{1,3}(?: \d{3})+(?:\.\d+)?", s
    ):
        s = s.replace(",", "").replace(" ", "")
    return s, flags


def _repeating_repl(m: re.Match) -> str:
    """``0.1\\overline{6}`` -> the exact fraction it denotes, ``(\\frac{1}{6})``."""
    whole, fixed, period = m.group(1) or "0", m.group(2), m.group(3)
    den = 10 ** len(fixed) * (10 ** len(period) - 1)
    num = int(whole) * den + int(fixed + period) - int(fixed or "0")
    return f"(\\frac{{{num}}}{{{den}}})"


def _text_repl(m: re.Match) -> str:
    inner = m.group(1).strip()
    if inner in ("or", "and", ",", "or,", "and,"):
        return ", "
    if re.fullmatch(r"\(?[A-E]\)?", inner):
        return inner
    # "12 \text{ (or 13)}" is a second answer, not a unit: text with a number or a joining
    # word is kept (and then read as the hedge it is).
    if re.search(r"\d|\b(?:or|and|perhaps|possibly|maybe)\b", inner):
        return f" {inner} "
    return " "  # a unit such as \text{ cm}: meaningless for the value


def _exact_part(s: str) -> str:
    """``\\sqrt{2} \\approx 1.414`` states the exact value first: keep that part.

    When the left side is only a name (``x \\approx 1.414``) the approximation is the answer.
    """
    parts = re.split(r"\\(?:approx|simeq|thickapprox)(?![a-zA-Z])", s, maxsplit=1)
    if len(parts) == 1:
        return s
    left, right = parts[0].strip(), parts[1].strip()
    name = re.fullmatch(r"(?:[A-Za-z](?:_\{?\w+\}?)?|\\[a-zA-Z]+)\s*=?", left)
    if not left or name or left.endswith("="):
        return right
    return re.sub(r"=\s*$", "", left).strip()


def hedge_signal(answer: str) -> bool:
    """Whether the answer's wording offers alternatives: "(or 13)", "perhaps", "either ... or"."""
    return bool(_HEDGE_SIGNAL.search(answer[: MAX_ANSWER_CHARS + 1]))  # longer ones never parse


# "2\\frac12", "3 \\frac{1}{4}": a whole number written against a proper fraction of literals is
# a mixed number (5/2), not a product; not after ^, _, a letter, a digit or a brace (x^2\\frac12).
_MIXED = re.compile(
    r"(?<![\w^_.}\\])(\d+)\s*\\frac\s*(?:\{\s*(\d+)\s*\}|(\d))\s*(?:\{\s*(\d+)\s*\}|(\d))"
)


def _mixed_repl(m: re.Match) -> str:
    whole, num, den = int(m.group(1)), int(m.group(2) or m.group(3)), int(m.group(4) or m.group(5))
    if not 0 < num < den:
        return m.group()
    return f"(\\frac{{{whole * den + num}}}{{{den}}})"


def mixed_numbers(s: str) -> str:
    """Rewrite each mixed number of literals as the fraction it denotes: ``2\\frac12`` -> 5/2."""
    return _MIXED.sub(_mixed_repl, s)


def choice_letters(answer: str) -> tuple[str, ...]:
    """The multiple-choice letters an answer names, in order without repeats.

    ``C``, ``(C)``, ``\\text{(C) } 12`` name one; ``B \\text{ or } C`` and ``(B) (or possibly
    (D))`` name two (a hedge). Empty when the answer is not a choice.
    """
    s, _ = clean(answer)
    letters: list[str] = []
    for part in s.split(","):
        m = _CHOICE.fullmatch(part.strip())
        if m and m.group(1) not in letters:
            letters.append(m.group(1))
    return tuple(letters)

