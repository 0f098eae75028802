"""Values whose meaning changes with their label, and structured answers (issue 24 items 3-5).

Each row: (gold, the boxed answer or a whole completion, expected ok, why a strict, fair grader says so).
"""

from __future__ import annotations

import pytest

from verifiers.math_verifier import MathVerifier, MathVerifyConfig


def _b(answer: str) -> str:
    return f"So the answer is $\\boxed{{{answer}}}$."


LABELS = [
    # units: compared with their units, refused when they conflict
    ("5 \\text{ m}", _b("5 \\text{ cm}"), False, "5 cm is not 5 m (converted: 0.05 m)"),
    ("5 \\text{ m}", _b("5 meters"), True, "the same unit spelled out"),
    ("5 \\text{ m}", _b("5"), True, "a unit left off is not a different unit"),
    ("5", _b("5 cm"), True, "a unit added to a bare gold"),
    ("20 \\text{ cm}^2", _b("20 \\text{ cm}"), False, "an area is not a length"),
    ("36 \\text{ ft}^2", _b("36 square feet"), True, "square feet is ft^2"),
    ("15 \\text{ mph}", _b("15 miles per hour"), True, "mph spelled out"),
    ("15 \\text{ mph}", _b("15 km/h"), False, "another speed unit"),
    ("12 \\text{ apples}", _b("12 oranges"), False, "a different counted noun"),
    ("12 \\text{ apples}", _b("12 apple"), True, "singular and plural"),
    # unit conversion within a dimension, exact; refused across dimensions
    ("500 \\text{ cm}", _b("5 m"), True, "5 m is 500 cm"),
    ("5 \\text{ m}", _b("500 centimeters"), True, "the other way round, spelled out"),
    ("5 \\text{ m}", _b("50 cm"), False, "50 cm is 0.5 m: a converted value that differs"),
    ("5 \\text{ m}", _b("0.005 km"), True, "a decimal in a larger unit, exactly 5 m"),
    ("1 \\text{ ft}", _b("12 inches"), True, "1 ft is 12 in by definition"),
    ("1 \\text{ ft}", _b("30 cm"), False, "1 ft is 30.48 cm: exact golds need exact conversions"),
    ("2 \\text{ kg}", _b("2000 g"), True, "mass"),
    ("2 \\text{ kg}", _b("2 m"), False, "a length is not a mass"),
    ("2 \\text{ L}", _b("2000 ml"), True, "volume"),
    ("20 \\text{ cm}^2", _b("2000 \\text{ mm}^2"), True, "areas convert by the square of the factor"),
    ("20 \\text{ cm}^2", _b("200 \\text{ mm}^2"), False, "converting an area by the length factor is wrong"),
    ("3 \\text{ km/h}", _b("3000 m/h"), True, "a quotient unit with a slash"),
    ("60 \\text{ mph}", _b("1 mile per minute"), True, "speeds convert through both units"),
    ("15 \\text{ mph}", _b("15 m/s"), False, "15 m/s is about 33.6 mph"),
    ("3 \\text{ tons}", _b("3000 kg"), False, "a ton is short, long or metric: not converted"),
    ("1 \\text{ year}", _b("365 days"), False, "a year is not a fixed number of days"),
    ("1 \\text{ year}", _b("12 months"), True, "a year is 12 months"),
    # durations: compared as lengths of time, mixed units summed
    ("1.5 \\text{ hours}", _b("90 minutes"), True, "1.5 h is 90 min"),
    ("150 \\text{ minutes}", _b("2 hours 30 minutes"), True, "a mixed duration is one value"),
    ("2.5 \\text{ hours}", _b("2 hours and 30 minutes"), True, "'and' between the parts"),
    ("2.5 \\text{ hours}", _b("2 hours and 20 minutes"), False, "20 minutes is not half an hour"),
    ("150 \\text{ minutes}", _b("2.5 hours"), True, "a decimal duration"),
    ("3 \\text{ hours}", _b("3 minutes"), False, "three minutes is not three hours"),
    ("1 \\text{ week}", _b("7 days"), True, "a week is seven days"),
    ("90 \\text{ seconds}", _b("1 min 30 s"), True, "abbreviated mixed units"),
    # times of day
    ("2:30 \\text{ PM}", _b("2:30 \\text{ PM}"), True, "the same time"),
    ("2:30 \\text{ PM}", _b("2:30 AM"), False, "AM is twelve hours off"),
    ("2:30 \\text{ PM}", _b("14:30"), True, "24-hour notation"),
    ("2:30 \\text{ PM}", _b("2:30"), False, "without AM/PM the time is ambiguous"),
    # number bases
    ("1011_2", _b("1011_2"), True, "same numeral, same base"),
    ("1011_2", _b("1011"), True, "the digits asked for, subscript left off"),
    ("1011_2", _b("11"), False, "eleven in base ten is not the base-2 numeral asked for"),
    ("1011_2", _b("1011_{10}"), False, "explicitly base ten: one thousand and eleven"),
    ("1011_{10}", _b("1011_2"), False, "1011_2 is eleven"),
    ("11", _b("1011_2"), True, "1011_2 is eleven"),
    # degrees inside trig functions, double factorials, \choose, \over, \pmod
    ("\\frac{\\sqrt{3}}{2}", _b("\\cos 30^\\circ"), True, "30 degrees, not 30 radians"),
    ("\\frac{1}{2}", _b("\\sin 30°"), True, "the degree sign"),
    ("\\frac{1}{2}", _b("\\cos 30^\\circ"), False, "cos 30 degrees is not 1/2"),
    ("15", _b("5!!"), True, "5!! = 5 * 3 * 1"),
    ("120", _b("5!!"), False, "5!! is not 5!"),
    ("10", _b("{5 \\choose 2}"), True, "\\choose is \\binom"),
    ("\\frac{1}{2}", _b("{1 \\over 2}"), True, "\\over is \\frac"),
    ("3", _b("3 \\pmod{7}"), True, "the residue is the answer"),
    ("3", _b("x \\equiv 3 \\pmod 7"), True, "a congruence states its residue"),
    ("4", _b("3 \\pmod{7}"), False, "a different residue"),
    # intervals, inequalities, set-builder notation
    ("(3, \\infty)", _b("x > 3"), True, "x > 3 is (3, oo)"),
    ("(3, \\infty)", _b("x \\ge 3"), False, "a closed end"),
    ("[3, \\infty)", _b("x \\geq 3"), True, "x >= 3 is [3, oo)"),
    ("(2, 5]", _b("2 < x \\le 5"), True, "a chained inequality"),
    ("(2, 5]", _b("2 < x < 5"), False, "the right end differs"),
    ("x > 3", _b("(3, \\infty)"), True, "either way round"),
    ("(-\\infty,-1)\\cup(1,\\infty)", _b("x < -1 \\text{ or } x > 1"), True, "an 'or' of inequalities is a union"),
    ("(3, \\infty)", _b("\\{x \\mid x > 3\\}"), True, "set-builder notation"),
    ("(3, \\infty)", _b("\\{x : x \\geq 3\\}"), False, "set-builder with a closed end"),
    # unordered solution sets
    ("2, 3", "The solutions are x = 2 or x = 3.\n\\boxed{x = 3 \\text{ or } x = 2}", True, "order does not matter"),
    ("\\{2, 3\\}", _b("x=3, x=2"), True, "named solutions as a set"),
    ("2, 3", _b("x = 2 \\text{ or } x = 4"), False, "one solution wrong"),
    ("2", _b("x = 2 \\text{ or } x = 3"), False, "two solutions for one value is a hedge"),
    # complex numbers in polar and exponential form
    ("i", _b("e^{i\\pi/2}"), True, "Euler's formula"),
    ("1+\\sqrt{3}i", _b("2(\\cos 60^\\circ + i\\sin 60^\\circ)"), True, "polar form with degrees"),
    ("1+\\sqrt{3}i", _b("2e^{i\\pi/3}"), True, "exponential form"),
    ("1-i", _b("\\sqrt{2}e^{i\\pi/4}"), False, "the conjugate's angle"),
    # Unicode math
    ("\\frac{1}{2}", _b("½"), True, "a vulgar fraction"),
    ("2\\frac{1}{2}", _b("2½"), True, "a mixed number"),
    ("8", _b("2³"), True, "a superscript power"),
    ("0.001", _b("10⁻³"), True, "a negative superscript"),
    ("2\\sqrt{2}", _b("√8"), True, "the radical sign"),
    ("10", _b("2³"), False, "2³ is 8"),
]


@pytest.fixture(scope="module")
def verifier():
    v = MathVerifier()
    yield v
    v.close()


@pytest.mark.parametrize("gold, completion, ok, why", LABELS, ids=[str(i) for i in range(len(LABELS))])
def test_label(verifier, gold, completion, ok, why):
    verdict = verifier.verify({"answer": gold}, completion)
    assert verdict.ok is ok, (why, verdict)


@pytest.mark.parametrize(
    "gold, answer, reason",
    [("5 \\text{ m}", "5 \\text{ kg}", "unit mismatch: kg for m"),
     ("20 \\text{ cm}^2", "20 \\text{ cm}", "unit mismatch: cm for cm^2"),
     ("5 \\text{ m}", "5 \\text{ cm}", "not equivalent"),
     ("2:30 \\text{ PM}", "870", "expected a time of day")],
)
def test_label_reasons(verifier, gold, answer, reason):
    assert verifier.verify({"answer": gold}, _b(answer)).reason.startswith(reason)


def test_unit_conversion_can_be_turned_off():
    strict = MathVerifier(config=MathVerifyConfig(convert_units=False))
    try:
        verdict = strict.verify({"answer": "500 \\text{ cm}"}, _b("5 m"))
        assert (verdict.ok, verdict.reason) == (False, "unit mismatch: m for cm")
        assert strict.verify({"answer": "500 \\text{ cm}"}, _b("500 cm")).ok is True
    finally:
        strict.close()


# other surfaces: JSON, code blocks, other languages (gold, completion, expected ok, why)
SURFACES = [
    ("42", '```json\n{"answer": 42}\n```', True, "a JSON answer field"),
    ("\\frac{1}{2}", '{"final_answer": "\\\\frac{1}{2}"}', True, "a JSON string, unescaped"),
    ("42", '{"reasoning": "6*7", "answer": "41"}', False, "a wrong JSON answer"),
    ("42", "```python\nprint(6*7)\n```\nOutput:\n```\n42\n```", True, "tool output in a fenced block"),
    ("42", "Answer: `42`", True, "inline code around the value"),
    ("42", "\u7b54\u6848\u662f 42\u3002", True, "Chinese: the answer is 42"),
    ("42", "\u6700\u7ec8\u7b54\u6848\uff1a42", True, "Chinese: final answer: 42"),
    ("42", "La respuesta es 42.", True, "Spanish"),
    ("42", "Die Antwort ist 41.", False, "German, a wrong value"),
    ("42", "La r\u00e9ponse est 42.", True, "French"),
    ("42", "\u041e\u0442\u0432\u0435\u0442: 42", True, "Russian"),
]


@pytest.mark.parametrize("gold, completion, ok, why", SURFACES, ids=[str(i) for i in range(len(SURFACES))])
def test_surface(verifier, gold, completion, ok, why):
    verdict = verifier.verify({"answer": gold}, completion)
    assert verdict.ok is ok, (why, verdict)


_INLINE = "Which is 3*4? (A) 10 (B) 11 (C) 12 (D) 13"
_LINES = "What is 3*4?\nA) 10\nB) 11\nC) 12\nD) 13"
# choice letters and option text stand for each other when the prompt lists the options
CHOICES = [
    ("C", _INLINE, "The answer is 12.", True, "the option text of the gold letter"),
    ("C", _INLINE, "\\boxed{13}", False, "the text of another option"),
    ("C", _LINES, "So it is \\boxed{12}.", True, "options one per line"),
    ("12", _INLINE, "\\boxed{C}", True, "the letter of the gold's option"),
    ("12", _LINES, "The answer is (C).", True, "a letter in parentheses"),
    ("12", _INLINE, "\\boxed{(D)}", False, "another letter"),
    ("12", _INLINE, "\\boxed{E}", False, "a letter not among the options"),
    ("C", "Compute 3*4.", "\\boxed{12}", False, "no options listed: a letter is expected"),
]


@pytest.mark.parametrize("gold, prompt, completion, ok, why", CHOICES, ids=[str(i) for i in range(len(CHOICES))])
def test_choice_and_option_text(verifier, gold, prompt, completion, ok, why):
    verdict = verifier.verify({"answer": gold, "prompt": prompt}, completion)
    assert verdict.ok is ok, (why, verdict)
