"""Values whose meaning changes with their label: units, times of day, number bases, Unicode math.

``clean`` (``_math_normalize``) calls these before it strips labels: ``unit_of`` names the unit an
answer ends in (canonical: "5 centimeters" and "5\\text{ cm}" are both ``cm``), so that two answers
carrying different units are converted within their dimension (``conversion``: 5 m is 500 cm,
exactly) or refused across dimensions rather than compared as bare numbers; ``duration`` reads a
mixed duration ("2 hours 30 minutes") as seconds; ``clock`` turns a time
of day with AM/PM into minutes after midnight; ``unicode_math`` rewrites ½, 2³, 10⁻³, x₂ into LaTeX;
``notation`` rewrites ``\\choose``, ``\\over``, ``\\pmod`` and degrees inside trig functions.
"""

from __future__ import annotations

import re
from fractions import Fraction

_UNITS = {
    "cm": ("cm", "centimeter", "centimetre"), "mm": ("mm", "millimeter", "millimetre"),
    "m": ("m", "meter", "metre"), "km": ("km", "kilometer", "kilometre"), "in": ("inch", "inche"),
    "ft": ("ft", "foot", "feet"), "yd": ("yd", "yard"), "mi": ("mi", "mile"),
    "g": ("g", "gram", "gramme"), "kg": ("kg", "kilogram", "kilo"), "mg": ("mg", "milligram"),
    "lb": ("lb", "lbs", "pound"), "oz": ("oz", "ounce"), "t": ("ton", "tonne"),
    "s": ("s", "sec", "second"), "min": ("min", "minute"), "h": ("h", "hr", "hrs", "hour"),
    "day": ("day",), "week": ("week", "wk"), "month": ("month",), "year": ("year", "yr"),
    "l": ("l", "liter", "litre"), "ml": ("ml", "milliliter", "millilitre"), "gal": ("gal", "gallon"),
    "mph": ("mph",), "kmh": ("kph", "kmh"), "deg": ("degree", "deg"), "rad": ("radian", "rad"),
}
_CANON = {alias: unit for unit, aliases in _UNITS.items() for alias in aliases}
# Exact factors to one base unit per dimension (exponents of length, mass, time, calendar month), by
# definition: 1 in = 2.54 cm, 1 lb = 0.45359237 kg, 1 l = 1 dm^3. Units whose size is ambiguous are left
# out (ton: short, long or metric; gallon: US or imperial; a month or year in days), so they convert to
# nothing and stay refused against another unit; a month is 1/12 of a year.
_DIMENSIONS: dict[str, tuple[tuple[int, int, int, int], Fraction]] = {
    "mm": ((1, 0, 0, 0), Fraction(1, 1000)), "cm": ((1, 0, 0, 0), Fraction(1, 100)), "m": ((1, 0, 0, 0), Fraction(1)),
    "km": ((1, 0, 0, 0), Fraction(1000)), "in": ((1, 0, 0, 0), Fraction(254, 10000)),
    "ft": ((1, 0, 0, 0), Fraction(3048, 10000)), "yd": ((1, 0, 0, 0), Fraction(9144, 10000)),
    "mi": ((1, 0, 0, 0), Fraction(1609344, 1000)),
    "mg": ((0, 1, 0, 0), Fraction(1, 1000)), "g": ((0, 1, 0, 0), Fraction(1)), "kg": ((0, 1, 0, 0), Fraction(1000)),
    "lb": ((0, 1, 0, 0), Fraction(45359237, 100000)), "oz": ((0, 1, 0, 0), Fraction(45359237, 1600000)),
    "s": ((0, 0, 1, 0), Fraction(1)), "min": ((0, 0, 1, 0), Fraction(60)), "h": ((0, 0, 1, 0), Fraction(3600)),
    "day": ((0, 0, 1, 0), Fraction(86400)), "week": ((0, 0, 1, 0), Fraction(604800)),
    "month": ((0, 0, 0, 1), Fraction(1)), "year": ((0, 0, 0, 1), Fraction(12)),
    "l": ((3, 0, 0, 0), Fraction(1, 1000)), "ml": ((3, 0, 0, 0), Fraction(1, 1000000)),
}
# Money and percent carry their own flags in ``clean``; magnitude words change the value.
_NOT_UNITS = {
    "dollar", "cent", "percent", "per", "thousand", "million", "billion", "hundred", "dozen", "half",
    "quarter", "trillion", "and", "or", "only", "total", "each", "am", "pm", "unit", "square unit", "more",
}
_SINGLE = set("mgshlL")  # one-letter units read only after a number and a space ("5 m", not "5m")
_TRAILING = re.compile(
    r"(?<=[\d})\s])\s*(?:\\(?:text|mbox|mathrm|textnormal)\s*\{\s*([A-Za-z][A-Za-z .]*?)\s*\}|([A-Za-z][A-Za-z .]*?))"
    r"\s*(?:\^\s*\{?\s*([23])\s*\}?)?\s*\.?\s*$"
)
# "3 km/h", "3 \\text{km/h}", "9.8 m/s^2": a quotient of two unit words after a number
_SLASH = re.compile(
    r"(?<=[\d})\s])\s*(?:\\(?:text|mbox|mathrm)\s*\{\s*)?([A-Za-z]{1,6})\s*/\s*([A-Za-z]{1,6})"
    r"\s*\}?\s*(?:\^\s*\{?\s*([23])\s*\}?)?\s*\}?\s*\.?\s*$"
)
_TIME_PART = r"(\d+(?:\.\d+)?)\s*(hours?|hrs?|h|minutes?|mins?|seconds?|secs?|s|days?|weeks?)"
# "2 hours 30 minutes", "1 h 15 min", "2 hours and 30 minutes": two or three parts, each a number and a time unit
_DURATION = re.compile(rf"{_TIME_PART}(?:\s*,?\s*(?:and\s+)?{_TIME_PART})(?:\s*,?\s*(?:and\s+)?{_TIME_PART})?\s*\.?")
_CLOCK = re.compile(
    r"(\d{1,2})(?::(\d{2}))?\s*(?:\\(?:text|mbox|mathrm)\s*\{\s*)?([AaPp])\.?\s*[Mm]\.?\s*\}?\s*\.?"
)
_CLOCK_24 = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
_VULGAR = {
    "½": "1/2", "⅓": "1/3", "⅔": "2/3", "¼": "1/4", "¾": "3/4", "⅕": "1/5", "⅖": "2/5", "⅗": "3/5",
    "⅘": "4/5", "⅙": "1/6", "⅚": "5/6", "⅛": "1/8", "⅜": "3/8", "⅝": "5/8", "⅞": "7/8",
}
_SUPER = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+"))
_SUB = dict(zip("₀₁₂₃₄₅₆₇₈₉", "0123456789"))
_SUPER_RUN = re.compile("[⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺]+")
_SUB_RUN = re.compile("[₀₁₂₃₄₅₆₇₈₉]+")
_TRIG_DEGREES = re.compile(
    r"(\\(?:sin|cos|tan|sec|csc|cot)\s*(?:\^\s*\{?-?\d\}?\s*)?\(?\s*)(-?\d+(?:\.\d+)?)\s*(?:\^\s*\{?\s*\\circ\s*\}?|°|\\degree)"
)
_CHOOSE = re.compile(r"\{\s*([^{}]+?)\s*\\choose\s*([^{}]+?)\s*\}")
_OVER = re.compile(r"\{\s*([^{}]+?)\s*\\over\s*([^{}]+?)\s*\}")
# "\{x \mid x > 3\}", "\{x : x > 3\}": set-builder notation states its condition
_SET_BUILDER = re.compile(r"\\\{\s*([a-zA-Z])\s*(?:\\mid|\||:)\s*([^{}]*?)\s*\\\}")
_PMOD = re.compile(r"\(?\s*\\(?:pmod|bmod|mod)\s*(?:\{[^{}]*\}|\d+)\s*\)?\s*$|\(\s*mod\s+\d+\s*\)\s*$")


def unicode_math(s: str) -> str:
    """½ -> (1/2), 2³ -> 2^{3}, 10⁻³ -> 10^{-3}, 1011₂ -> 1011_{2}; a mixed 2½ is 2 + 1/2."""
    if s.isascii():
        return s
    for ch, frac in _VULGAR.items():
        if ch in s:
            s = re.sub(rf"(\d)\s*{ch}", rf"(\1+{frac})", s).replace(ch, f"({frac})")
    s = _SUPER_RUN.sub(lambda m: "^{" + "".join(_SUPER[c] for c in m.group()) + "}", s)
    return _SUB_RUN.sub(lambda m: "_{" + "".join(_SUB[c] for c in m.group()) + "}", s)


def notation(s: str) -> str:
    """``{n \\choose k}`` -> ``\\binom``, ``{a \\over b}`` -> ``\\frac``, a trailing ``\\pmod{7}`` dropped
    (the residue is the answer), ``\\equiv`` read as ``=``, degrees inside trig functions as radians."""
    if "\\" not in s:
        return s  # every rewrite below starts at a command
    if "\\choose" in s or "\\over" in s:
        for _ in range(3):
            s = _CHOOSE.sub(r"\\binom{\1}{\2}", s)
            s = _OVER.sub(r"\\frac{\1}{\2}", s)
        if s.count("\\over") == 1 and "{" not in s:
            a, b = s.split("\\over")
            s = f"\\frac{{{a.strip()}}}{{{b.strip()}}}"
    if "mod" in s:
        s = _PMOD.sub("", s)
    s = s.replace("\\equiv", "=")
    if "\\{" in s:
        s = _SET_BUILDER.sub(lambda m: m.group(2) if m.group(1) in m.group(2) else m.group(), s)
    if "circ" in s or "\u00b0" in s or "degree" in s:
        s = _TRIG_DEGREES.sub(r"\1(\2\\pi/180)", s)
    return s


def unit_of(s: str) -> tuple[str, str | None]:
    """(the answer without a one-letter unit, the canonical unit it ends in or None)."""
    if not s[-1:].isalpha() and not s.endswith(("}", ".")) and "^" not in s[-8:]:
        return s, None  # no word at the end: no unit (the common case, decided without a regex)
    if "/" in s[-20:]:
        q = _SLASH.search(s, max(0, len(s) - 40))
        if q and re.search(r"\d", s[: q.start()]):
            top, bottom = _canon(q.group(1)), _canon(q.group(2))
            if top in _DIMENSIONS and bottom in _DIMENSIONS:  # "3 km/h"; "3 apples/day" stays as written
                return s[: q.start()].rstrip(), f"{top}/{bottom}" + (f"^{q.group(3)}" if q.group(3) else "")
    m = _TRAILING.search(s, max(0, len(s) - 60))  # a unit is short: a bounded look at the end
    if not m or not re.search(r"\d", s[: m.start()]):
        return s, None
    words = (m.group(1) or m.group(2) or "").strip(" .").lower()
    power = m.group(3)
    if words.startswith(("square ", "sq ", "sq. ")):
        words, power = words.split(" ", 1)[1].strip(), "2"
    elif words.startswith(("cubic ", "cu ")):
        words, power = words.split(" ", 1)[1].strip(), "3"
    if " per " in words:
        parts = [p.strip() for p in words.split(" per ", 1)]
        canon = [_canon(p) for p in parts]
        if None in canon:
            return s, None
        return s, "/".join(canon)  # type: ignore[arg-type]
    if len(words.split()) > 2:
        return s, None  # a phrase, not a unit
    unit = _canon(words)
    if unit is None:
        return s, None
    if len(words) == 1 and m.group(2) is not None:
        if words not in {c.lower() for c in _SINGLE} or not s[: m.start(2)].endswith(" "):
            return s, None
        s = s[: m.start()].rstrip()  # "5 m": the parser would read a product
    return s, unit + (f"^{power}" if power else "")


def _canon(words: str) -> str | None:
    words = words.strip().lower()
    if not words or words in _NOT_UNITS or words.rstrip("s") in _NOT_UNITS:
        return None
    if words in ("mph", "kph", "kmh"):
        return "mi/h" if words == "mph" else "km/h"
    if words in _CANON:
        return _CANON[words]
    if words.endswith("s") and words[:-1] in _CANON:
        return _CANON[words[:-1]]
    if words.endswith("es") and words[:-2] in _CANON:
        return _CANON[words[:-2]]
    if " " in words or len(words) < 3:
        return None
    return words[:-1] if words.endswith("s") else words  # a counted noun: "apples" is "apple"


def duration(s: str) -> str:
    """A duration in mixed units as seconds: "2 hours 30 minutes" -> "9000 s" (others unchanged)."""
    m = _DURATION.fullmatch(s.strip()) if " " in s.strip() else None
    if not m:
        return s
    parts = [(m.group(i), m.group(i + 1)) for i in (1, 3, 5) if m.group(i)]
    units = [_canon(unit) for _, unit in parts]
    if None in units or len(set(units)) < len(units):
        return s  # "2 hours 3 hours" is two answers, not one duration
    total = sum(Fraction(value) * _DIMENSIONS[unit][1] for (value, _), unit in zip(parts, units))  # type: ignore[index]
    value = str(total.numerator) if total.denominator == 1 else f"\\frac{{{total.numerator}}}{{{total.denominator}}}"
    return f"{value} \\text{{ s}}"


def conversion(unit: str, target: str) -> Fraction | None:
    """The exact factor that turns a value in ``unit`` into ``target`` ("m" -> "cm": 100); None when
    either is unknown or their dimensions differ (a length is not an area, a mass not a time)."""
    a, b = _dimension(unit), _dimension(target)
    if a is None or b is None or a[0] != b[0]:
        return None
    return a[1] / b[1]


def _dimension(unit: str) -> tuple[tuple[int, ...], Fraction] | None:
    """A canonical unit ("cm^2", "km/h", "m/s^2") as (dimension exponents, factor to the base units)."""
    dims, factor = [0, 0, 0, 0], Fraction(1)
    for sign, part in zip((1, -1), unit.split("/", 1)):
        name, _, power = part.partition("^")
        if name not in _DIMENSIONS or (power and not power.isdigit()):
            return None
        n = sign * int(power or 1)
        base, size = _DIMENSIONS[name]
        dims = [d + n * e for d, e in zip(dims, base)]
        factor *= size**n
    return tuple(dims), factor


def clock(s: str) -> tuple[str, bool]:
    """A time of day with AM/PM as minutes after midnight ("2:30 PM" -> "870"), and whether it was one."""
    m = _CLOCK.fullmatch(s.strip()) if ("m" in s or "M" in s) else None
    if not m:
        return s, False
    hour, minute, half = int(m.group(1)), int(m.group(2) or 0), m.group(3).lower()
    if not 1 <= hour <= 12 or minute > 59:
        return s, False
    hour = hour % 12 + (12 if half == "p" else 0)
    return str(hour * 60 + minute), True


def clock_24(s: str) -> str | None:
    """A 24-hour time "14:30" as minutes after midnight, for a gold that is a time of day."""
    m = _CLOCK_24.fullmatch(s.strip())
    return str(int(m.group(1)) * 60 + int(m.group(2))) if m else None


def in_base(digits: str, base: int) -> int | None:
    """The integer a digit string denotes in ``base`` (2..36), None when a digit is out of range."""
    if not 2 <= base <= 36 or not digits.isalnum():
        return None
    try:
        return int(digits, base)
    except ValueError:
        return None
