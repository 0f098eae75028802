"""Every check is bounded (issue 24 item 6): inputs that would hang an exact or symbolic evaluation come back
with a verdict, decided by a size cap, the parse limits or the check's deadline, never by running to the end.

Each row: (gold, completion, expected ok, expected reason prefix or None, why the verdict, and what would
hang without the bound). No wall-clock assertion: pytest-timeout's generous limit below is only a safety net
for a regression that does hang.
"""

from __future__ import annotations

import pytest

from verifiers.math_verifier import FALSE_STEP, TIMEOUT, MathVerifier

TOO_LARGE = "answer too large to compare"
TOO_LONG = "unparsable answer: answer longer than 1000 characters"


def _b(answer: str) -> str:
    return f"So the answer is $\\boxed{{{answer}}}$."


def _matrix(n: int, entry: str) -> str:
    rows = ("&".join(entry.format(i=i, j=j) for j in range(n)) for i in range(n))
    return "\\begin{pmatrix}" + "\\\\".join(rows) + "\\end{pmatrix}"


BOUNDS = [
    # towers and huge powers: 10^(10^10) has ten billion digits
    ("3", _b("10^{10^{10}}"), False, TOO_LARGE, "10^10^10 is never computed; it is not 3 anyway"),
    ("10^{10^{10}}", _b("10^{10^{10}}"), True, None, "the same text is the same value: no evaluation needed"),
    ("10^{10^{10}}", _b("10^{10^{10}}+1"), False, TOO_LARGE, "cannot be compared exactly within the caps: no pass"),
    ("2^{2^{20}}", _b("2^{1048576}"), False, TOO_LARGE, "equal, but a million-bit integer is past the cap: no pass"),
    ("3", _b("10^{10^{10^{10}}}"), False, TOO_LARGE, "a four-storey tower"),
    ("1", _b("1^{10^{10^{10}}}"), False, TOO_LARGE, "the exponent alone is past the cap (strict: not evaluated)"),
    ("0", _b("10^{-10^{10}}"), False, TOO_LARGE, "a tiny value is no smaller to compute"),
    ("e^{10^{10}}", _b("e^{10^{10}}+1"), False, TOO_LARGE, "a transcendental tower"),
    # functions of huge arguments: the argument is refused before any float or sympy work
    ("3", _b("\\cos(9^{9^9})"), False, TOO_LARGE, "cos of a 370-million-digit integer"),
    ("3", _b("\\log(10^{10^{10}})"), False, TOO_LARGE, "log of a ten-billion-digit integer"),
    ("3", _b("\\sqrt{10^{10^{10}}}"), False, TOO_LARGE, "a square root of one"),
    # factorials and binomials
    ("3", _b("(10^{10})!"), False, TOO_LARGE, "ten billion factorial"),
    ("3", _b("100000!!"), False, TOO_LARGE, "a double factorial past the cap"),
    ("100000!", _b("100000!"), True, None, "the same text is the same value, never expanded"),
    ("3", _b("\\binom{10^{10}}{5000}"), False, TOO_LARGE, "a binomial with a huge top"),
    # matrices: giant ones are refused by length, big ones compared element by element within the deadline
    ("3", _b(_matrix(40, "{i}")), False, TOO_LONG, "a 40x40 matrix is past the answer length cap"),
    (_matrix(12, "{i}{j}"), _b(_matrix(12, "{i}{j}")), True, None, "144 small entries compare exactly"),
    (_matrix(12, "{i}{j}"), _b(_matrix(12, "{i}{j}").replace("&11&", "&12&", 1)),
     False, "not equivalent", "one entry differs"),
    (_matrix(3, "1"), _b(_matrix(3, "10^{{10^{{10}}}}")), False, TOO_LARGE, "tower entries are refused"),
    (_matrix(3, "(x+{i})^2"), _b(_matrix(3, "x^2+{i}x+{i}x+{i}^2")), True, None,
     "9 symbolic entries, each proved by sympy within the one check's deadline"),
    # sympy work that runs long: bounded by the deadline (a timeout is 'cannot verify', never a pass)
    ("x^2 + 2x + 1 = 0", _b("(x+1)^{200} = 0"), False, None, "not proportional: refuted or timed out, no pass"),
    # the step check over long texts: bounded windows, size caps for each side
    ("2", "9^{9^{9}} = 3. " * 3000 + "\\boxed{2}", True, None,
     "a step past the size caps is skipped, never computed (the answer itself is right)"),
    ("2", "<<10^10^10=1>> so \\boxed{2}", True, None, "an annotation past the caps is skipped"),
    ("2", "1 + 1 = 3. " * 40000 + "\\boxed{2}", False, FALSE_STEP,
     "440,000 characters of steps: the last window is read"),
    ("2", "2^{1000} - 2^{1000} = 0. " * 40000 + "\\boxed{2}", True, None,
     "a window cut inside a step resumes at a sentence end: no half step ('- 2^1000 = 0') is judged"),
    # long completions and loops
    ("5", "The answer is 5. " * 50000, True, None, "850,000 characters of one repeated statement"),
    ("5", "The answer is 5. The answer is 6. " * 20000, False, "not equivalent", "an alternating loop ends in 6"),
    ("5", "\\boxed{5} " * 100000, True, None, "a million characters of the same box"),
]


@pytest.fixture(scope="module")
def verifier():
    v = MathVerifier(timeout=1.0)
    yield v
    v.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("gold, completion, ok, reason, why", BOUNDS, ids=[str(i) for i in range(len(BOUNDS))])
def test_bounded(verifier, gold, completion, ok, reason, why):
    verdict = verifier.verify({"answer": gold}, completion)
    if reason is None and ok is False:
        assert verdict.ok is not True, (why, verdict)  # refuted, or a timeout on a loaded machine
        assert verdict.reason in ("not equivalent", TIMEOUT), (why, verdict)
        return
    assert verdict.ok is ok, (why, verdict)
    if reason is not None:
        assert verdict.reason.startswith(reason), (why, verdict)
