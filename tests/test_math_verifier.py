"""The math verifier against its regression table, plus its time bound and process safety.

No assertion here depends on how loaded the machine is: the time bound is checked through
what the verifier does at its limit (the verdict is "cannot verify" and the sympy child is
killed and replaced), with wall-clock time only as a generous safety bound.
"""

from __future__ import annotations

import pickle
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.math_cases import CASES, Case
from verifiers._math_extract import extract_answer
from verifiers.math_verifier import HEDGE, TIMEOUT, MathVerifier

# A true identity whose proof needs a degree-40 expansion in four variables: seconds of sympy
# on an idle machine, so it cannot finish within the limit, and more load only slows it.
SLOW_GOLD = "((a+b+c)^2-d^2)^{20}"
SLOW_PRED = "\\boxed{(a+b+c+d)^{20}(a+b+c-d)^{20}}"
SAFETY_S = 60.0  # only catches a hang; the limit itself is asserted through the verdict


@pytest.fixture(scope="module")
def verifier():
    v = MathVerifier(timeout=1.0)
    yield v
    v.close()


def test_table_covers_every_category():
    counts = Counter(case.category for case in CASES)
    assert len(CASES) >= 150
    for category in (
        "extraction", "no_answer", "frac", "mixed", "decimal", "thousands", "money", "units", "degrees",
        "percent", "equation", "choice", "wrappers", "text", "symbolic", "constants", "complex",
        "infinity", "interval", "set", "tuple", "matrix", "hedge", "trap", "pathological", "unverifiable",
        "final", "plain", "exact", "styling", "notation",
    ):
        assert counts[category] >= 1, category
    assert {case.expected for case in CASES} == {True, False, None}


@pytest.mark.parametrize("case", CASES, ids=[f"{i}-{c.category}" for i, c in enumerate(CASES)])
def test_case(verifier: MathVerifier, case: Case):
    verdict = verifier.verify({"answer": case.gold}, case.completion)
    assert verdict.ok is case.expected, verdict
    assert isinstance(verdict.reason, str) and verdict.reason


@pytest.mark.parametrize(
    "completion, answer",
    [
        ("so \\boxed{\\frac{1}{2}} works", "\\frac{1}{2}"),
        ("\\boxed{1} then \\boxed{\\{2, 3\\}}", "\\{2, 3\\}"),
        ("The answer is $x = 5$.", "x = 5"),
        ("The final answer is 12 apples.", "12 apples"),
        ("blah\n#### 1,000\n", "1,000"),
        ("nothing to see", None),
        ("\\boxed{2} or \\boxed{3}", "2, 3"),
        ("\\boxed{2}\n\nLater: \\boxed{3}", "3"),
        # the last statement wins, whatever its form
        ("The answer is 4.\nNo wait, 2 + 3 = 5.\n#### 5", "5"),
        ("#### 4\nOn reflection the answer is 5.", "5"),
        ("\\boxed{4}, and so the final answer is: 5", "5"),
        ("Put the result in \\boxed{}. The answer is 5.", "5"),
        ("\\boxed{\\text{your answer}} ... \\boxed{5}", "5"),
        ("**Answer:** 5", "5"),
        ("The final answer is **5**.", "5"),
        ("Answer:\n\n5\n", "5"),
        ("The answer is 5, not 6.", "5"),
        ("The answer is $5$ or $6$.", "$5$ or $6$"),
        ("\\boxed{5}\n\\boxed{6}", "5, 6"),
        ("\\boxed{5} or perhaps \\boxed{6}", "5 or perhaps 6"),
        ("\\boxed{5}\n\n\\boxed{5}", "5"),
        ("So he has 15 marbles.", None),  # plain endings only with plain=True
        ("The final answer is \\boxed{}.", None),
    ],
)
def test_extracted_answer_is_reported(completion: str, answer: str | None):
    assert extract_answer(completion) == answer


def test_verdict_carries_extracted_answer(verifier: MathVerifier):
    verdict = verifier.verify({"answer": "7"}, "Adding up, we get $\\boxed{7}$.")
    assert verdict.answer == "7"
    assert verifier.verify({"answer": "7"}, "no idea").answer is None


def test_reasons(verifier: MathVerifier):
    assert verifier.verify({"answer": "2"}, "\\boxed{2 \\text{ or } 3}").reason == HEDGE
    assert verifier.verify({"answer": "2"}, "I give up").reason == "no final answer found"
    assert verifier.verify({"answer": "2"}, "\\boxed{@@}").reason.startswith("unparsable answer")
    assert verifier.verify({}, "\\boxed{2}").reason == "problem has no gold answer"
    assert verifier.verify({"answer": "\\frac{1}{"}, "\\boxed{2}").reason.startswith("cannot parse gold")


def test_gold_and_completion_types(verifier: MathVerifier):
    assert verifier.verify({"answer": 12}, "\\boxed{12}").ok is True  # a JSON number as gold
    assert verifier.verify({"answer": 0.5}, "\\boxed{\\frac12}").ok is True
    assert verifier.verify({"answer": "12"}, None).ok is False  # type: ignore[arg-type]
    assert verifier.verify({"answer": True}, "\\boxed{1}").ok is None


def test_slow_symbolic_check_is_unverifiable_and_worker_recovers(verifier: MathVerifier):
    verifier.warmup()
    pid = verifier._worker._proc.pid
    start = time.monotonic()
    verdict = verifier.verify({"answer": SLOW_GOLD}, SLOW_PRED)
    assert time.monotonic() - start < SAFETY_S
    # cannot verify (dropped downstream), not "wrong": the identity is in fact true
    assert verdict.ok is None and verdict.reason == TIMEOUT, verdict
    assert verifier._worker._proc.pid != pid  # the overrunning child was killed and replaced
    # the replacement worker proves the next identity
    assert verifier.verify({"answer": "\\frac{\\sqrt{3}}{3}"}, "\\boxed{\\frac{1}{\\sqrt3}}").ok is True


def test_timeout_option_is_honoured():
    # The same proof that one verifier may finish is cut off by a shorter limit: the limit
    # is the verifier's, not a property of the machine.
    short = MathVerifier(timeout=0.2)
    short.warmup()
    try:
        pid = short._worker._proc.pid
        start = time.monotonic()
        verdict = short.verify({"answer": SLOW_GOLD}, SLOW_PRED)
        assert time.monotonic() - start < SAFETY_S
        assert verdict.ok is None and verdict.reason == TIMEOUT, verdict
        assert short._worker._proc.pid != pid
    finally:
        short.close()


def test_pathological_input_is_rejected_without_the_worker(verifier: MathVerifier):
    # Size guards decide these before sympy: no timeout, no child process involvement.
    for completion in ("\\boxed{9^{9^{9^9}}}", "\\boxed{1000000!}", "\\boxed{" + "9" * 1_000_000 + "}"):
        verdict = verifier.verify({"answer": "3"}, completion)
        assert verdict.ok is False and verdict.reason != "timeout", verdict


def test_works_from_threads(verifier: MathVerifier):
    # signal.alarm-based graders fail outside the main thread; this one must not.
    cases = [c for c in CASES if c.category in ("symbolic", "frac", "set", "complex")]
    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = list(pool.map(lambda c: verifier.verify({"answer": c.gold}, c.completion), cases))
    assert [v.ok for v in verdicts] == [c.expected for c in cases]


def test_picklable_and_usable_after_unpickling(verifier: MathVerifier):
    copy = pickle.loads(pickle.dumps(verifier))
    try:
        assert copy.timeout == verifier.timeout
        assert copy.verify({"answer": "2\\sqrt{2}"}, "\\boxed{\\sqrt{8}}").ok is True
    finally:
        copy.close()


def test_rel_tol_option():
    # rel_tol is for decimals against irrational golds; rational golds stay exact
    loose = MathVerifier(rel_tol=1e-2)
    try:
        assert loose.rel_tol == 1e-2 and loose.config.rel_tol == 1e-2
        assert loose.verify({"answer": "\\pi"}, "\\boxed{3.14}").ok is True
        assert loose.verify({"answer": "\\pi"}, "\\boxed{3.2}").ok is False
        assert loose.verify({"answer": "\\frac{1}{3}"}, "\\boxed{0.333}").ok is False
    finally:
        loose.close()


def test_worker_start_up_is_not_charged_to_the_first_check():
    # Starting the sympy child (~0.5 s or more on a loaded machine) exceeds this limit; the
    # first check that needs sympy must still get its full time for the proof itself.
    fresh = MathVerifier(timeout=0.3)
    try:
        assert fresh.verify({"answer": "\\frac{\\sqrt{2}}{2}"}, "\\boxed{\\frac{1}{\\sqrt2}}").ok is True
    finally:
        fresh.close()


def test_forked_child_gets_its_own_sympy_worker(verifier: MathVerifier):
    import multiprocessing

    verifier.verify({"answer": "2\\sqrt{2}"}, "\\boxed{\\sqrt{8}}")  # the parent's worker runs
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    # fork passes `verifier` itself (no pickling): the child inherits the worker's pipes
    child = ctx.Process(target=_verify_sqrt, args=(verifier, send))
    child.start()
    assert receive.poll(30) and receive.recv() is True
    child.join(10)
    assert verifier.verify({"answer": "\\frac{\\sqrt{3}}{3}"}, "\\boxed{\\frac{1}{\\sqrt3}}").ok is True


def _verify_sqrt(v: MathVerifier, send) -> None:
    send.send(v.verify({"answer": "3\\sqrt{2}"}, "\\boxed{\\sqrt{18}}").ok)
    v.close()


def test_a_killed_sympy_worker_is_replaced(verifier: MathVerifier):
    verifier.verify({"answer": "2\\sqrt{2}"}, "\\boxed{\\sqrt{8}}")
    verifier._worker._proc.kill()  # e.g. the out-of-memory killer
    verifier._worker._proc.wait()
    assert verifier.verify({"answer": "3\\sqrt{2}"}, "\\boxed{\\sqrt{18}}").ok is True
