"""The math verifier's step check: every equality between plain numbers must hold, exactly.

Rows: (text, the false step quoted, or None when every checked step holds or none is checkable, why).
"""

from __future__ import annotations

import pytest

from verifiers._math_steps import first_false_step
from verifiers.math_verifier import FALSE_STEP, MathVerifier, MathVerifyConfig

STEPS = [
    # true and false steps
    ("So 3 \\times 4 = 12 apples.", None, "a true product"),
    ("She has 3 * 4 = 13 apples.", "3 * 4 = 13 apples", "a false product"),
    ("3 + 4 * 2 = 11", None, "precedence: 4 * 2 first"),
    ("3 + 4 * 2 = 14", "3 + 4 * 2 = 14", "left-to-right is not arithmetic"),
    ("(3 + 4) * 2 = 14 and 2(3+4) = 14", None, "brackets and implicit products"),
    ("0.1 + 0.2 = 0.3", None, "exact decimals, no float error"),
    ("3 + 4 = 7.5", "3 + 4 = 7.5", "a wrong decimal"),
    ("-3 + 5 = 2", None, "a leading negative number"),
    ("2 \\cdot 3^2 = 18 and 2^{10} = 1024", None, "powers, LaTeX exponents"),
    ("5! = 120 and 5!! = 15", None, "factorial and double factorial"),
    ("So the total is 3 + 4 = 7!", None, "an exclamation mark is not a factorial"),
    ("3 x 4 = 12", None, "'x' between numbers is a product"),
    ("$\\frac{48}{2} = 24$", None, "a LaTeX fraction"),
    ("$\\dfrac{48}{2} = 25$", "((48)/(2)) = 25", "a false LaTeX fraction"),
    ("\\boxed{20 - 5 = 16}", "20 - 5 = 16", "a boxed equation is a step too"),
    ("5 - 3 = 2 and 2 + 2 = 5", "2 + 2 = 5", "the first false one is quoted"),
    # chains
    ("2 + 3 = 5 = 10 / 2", None, "a true chain"),
    ("2 + 3 = 5 = 6", "5 = 6", "a chain with a false link"),
    ("2=12.2=12. 12*2=15.", "2=12.2", "the toy's trace from issue 31"),
    ("x = 5 + 3 = 8", None, "a name on the left, then a true link"),
    ("Speed = 60 / 2 = 20 mph", "60 / 2 = 20 mph", "a word on the left, then a false link"),
    # GSM8K annotations
    ("Natalia sold 48/2 = <<48/2=24>>24 clips.", None, "annotation and text agree"),
    ("She sold <<2*3=7>>7 more.", "2*3=7", "a false annotation"),
    ("He has 48+24 = <<48+24=72>>73 clips.", "48+24 = 73 clips", "the text after a true annotation is false"),
    # units, currency, separators, percent
    ("He pays $5 * 3 = $15.", None, "currency stripped"),
    ("He pays \\$5 \\times 3 = \\$16.", "5 * 3 = $16", "false with currency"),
    ("5 apples + 3 apples = 8 apples", None, "unit words stripped"),
    ("The area is 3 cm * 4 cm = 12 cm^2", None, "a unit's power is the unit's"),
    ("2 hours * 60 = 100 minutes", "2 hours * 60 = 100 minutes", "false with units"),
    ("2 hours = 120 minutes", None, "a conversion between units, not arithmetic"),
    ("1,000 + 500 = 1,500", None, "thousands separators"),
    ("1,000 + 500 = 1,600", "1,000 + 500 = 1,600", "false with separators"),
    ("50 * 20% = 10 and 20% = 0.2", None, "percent is /100; a lone percent sign either way"),
    ("10% of 50 = 5", None, "'of' makes the bare 50 an operand: left alone"),
    ("3 dozen = 36", None, "a magnitude word changes the value: left alone"),
    # stated roundings
    ("1/3 ≈ 0.33", None, "≈ within one unit in the last digit"),
    ("1/3 \\approx 0.33", None, "LaTeX \\approx"),
    ("1/3 = 0.33 (rounded)", None, "a stated rounding"),
    ("10/3 = 3.33...", None, "an ellipsis marks a rounding"),
    ("It costs about 100/3 = 33 each", None, "'about' marks a rounding"),
    ("1/3 = 0.33", "1/3 = 0.33", "an unmarked rounding is a false equality"),
    ("1/3 ≈ 0.5", "1/3 ≈ 0.5", "a rounding far outside the tolerance"),
    ("1000/7 ≈ 143", None, "the nearest integer"),
    # symbolic and non-plain lines are left alone
    ("2x + 3 = 7", None, "a symbolic equation"),
    ("x - 3 = 7 and cost - 3 = 7", None, "a variable or a word on the left"),
    ("\\sqrt{16} = 4 and \\pi r^2 = 3", None, "commands we do not evaluate"),
    ("half of 10 = 5, Day 3 = 15 miles, 1:2 = 0.5", None, "a bare number after a word or a ratio"),
    ("```python\nprint(1 + 1 = 3)\n```\nDone.", None, "code blocks are not steps"),
    ("9^{9^{9}} = 5 and 2^{100000} = 3 and 1000! = 2", None, "too large to compute: skipped, not hung"),
    ("2 - 2 = 0 so 10 / 0 = 5", None, "division by zero: not evaluable"),
]


@pytest.mark.parametrize("text, false, why", STEPS, ids=[str(i) for i in range(len(STEPS))])
def test_step(text, false, why):
    assert first_false_step(text) == false, why


def test_step_check_is_bounded():
    # a long completion of many steps and a wall of towers: one linear pass each
    assert first_false_step("So 3 + 4 = 7 apples and 2*3=6. " * 600) is None
    assert first_false_step("9^9^9^9^9^9 = 3 " * 1000) is None
    assert first_false_step("1+1=2, " * 5000) is None  # the scan window does not cut a step in half


@pytest.mark.parametrize(
    "mode, ok, reason, flags",
    [
        ("reject", False, f"{FALSE_STEP}: 12*2=15", ()),
        ("flag", True, "equivalent", (f"{FALSE_STEP}: 12*2=15",)),
        ("off", True, "equivalent", ()),
    ],
)
def test_step_check_modes(mode, ok, reason, flags):
    v = MathVerifier(config=MathVerifyConfig(step_check=mode))
    try:
        verdict = v.verify({"answer": "2"}, "12*2=15. So the answer is \\boxed{2}.")
    finally:
        v.close()
    assert (verdict.ok, verdict.reason, verdict.flags) == (ok, reason, flags)
    assert ("flags" in verdict.to_dict()) is bool(flags)


def test_the_toy_trace_of_issue_31_is_not_kept():
    v = MathVerifier()
    try:
        verdict = v.verify({"answer": "2"}, "2=12.2=12. 12*2=15. \\boxed25225=2. \\boxed{2}")
    finally:
        v.close()
    assert (verdict.ok, verdict.reason) == (False, f"{FALSE_STEP}: 2=12.2")


def test_steps_inside_a_closed_think_block_are_scratch():
    v = MathVerifier()
    try:
        assert v.verify({"answer": "4"}, "<think>2+2=5? no</think> 2 + 2 = 4, so \\boxed{4}").ok is True
    finally:
        v.close()


def test_bad_step_mode_is_named():
    with pytest.raises(ValueError, match="step_check must be one of"):
        MathVerifyConfig(step_check="warn")
