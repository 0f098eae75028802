"""Our ``math`` verifier against HuggingFace ``math-verify`` on the same case table.

Run: ``.venv/bin/python -m benchmarks.bench_math_verify [--rounds 3]``

Both graders see every case of ``tests/math_cases.py``. Accuracy counts a case right when
the grader's pass/fail decision matches the expected one (``ok=None`` and ``False`` are both
"not a pass", since math-verify has no "cannot verify"). Throughput is checks per second
over ``--rounds`` passes of the table, in this one process, one after the other; our parse
cache is cleared before each pass so repeats are not free. math-verify gets the same 1 s
limit as ours (its ``parsing_timeout``/``timeout_seconds``), which it enforces with
``signal.alarm`` (main thread only).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable

from tests.math_cases import CASES, Case


def _ours() -> Callable[[Case], bool | None]:
    from verifiers import math_verifier

    verifier = math_verifier.MathVerifier(timeout=1.0)
    verifier.warmup()  # the sympy child's start-up is a one-off, not a per-check cost

    def check(case: Case) -> bool | None:
        return verifier.verify({"answer": case.gold}, case.completion).ok

    check.reset = math_verifier._parse.cache_clear  # type: ignore[attr-defined]
    check.close = verifier.close  # type: ignore[attr-defined]
    return check


def _math_verify() -> Callable[[Case], bool | None]:
    from math_verify import parse, verify

    # it logs every timeout with the whole input (megabytes here); the verdicts are enough
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)

    def check(case: Case) -> bool | None:
        gold = parse(f"${case.gold}$", parsing_timeout=1)
        pred = parse(case.completion, parsing_timeout=1)
        return verify(gold, pred, timeout_seconds=1)

    return check


def _run(check: Callable[[Case], bool | None], cases: list[Case], rounds: int) -> dict:
    correct, times, wrong = 0, [], []
    for r in range(rounds):
        if hasattr(check, "reset"):
            check.reset()
        for case in cases:
            start = time.perf_counter()
            try:
                ok = check(case)
            except Exception:  # a crash is a wrong verdict, not the end of the benchmark
                ok = None
            times.append(time.perf_counter() - start)
            if r == 0:
                if (ok is True) == (case.expected is True):
                    correct += 1
                else:
                    wrong.append(case)
    normal = [t for t, c in zip(times, cases * rounds) if c.category != "pathological"]
    return {
        "accuracy": correct / len(cases),
        "correct": correct,
        "wrong": wrong,
        "total_s": sum(times),
        "normal_s": sum(normal),
        "rate": len(times) / sum(times),
        "normal_rate": len(normal) / sum(normal),
        "max_s": max(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3, help="Passes over the table per grader.")
    parser.add_argument("--show-wrong", action="store_true", help="List each grader's misses.")
    args = parser.parse_args()

    cases = list(CASES)
    ours_check = _ours()
    ours = _run(ours_check, cases, args.rounds)
    ours_check.close()
    theirs = _run(_math_verify(), cases, args.rounds)

    n = len(cases)
    print(f"cases: {n} (x{args.rounds} rounds)")
    for label, res in (("sdp math", ours), ("math-verify", theirs)):
        print(
            f"{label:12s} accuracy {res['correct']}/{n} = {res['accuracy']:.3f}  "
            f"throughput {res['rate']:.0f} checks/s (without pathological: {res['normal_rate']:.0f}/s)  "
            f"max single check {res['max_s'] * 1000:.1f} ms"
        )
    print(
        f"throughput ratio sdp/math-verify: {ours['rate'] / theirs['rate']:.1f}x "
        f"(without pathological cases: {ours['normal_rate'] / theirs['normal_rate']:.1f}x)"
    )
    print(f"accuracy difference sdp - math-verify: {ours['accuracy'] - theirs['accuracy']:+.3f}")
    if args.show_wrong:
        for label, res in (("sdp math", ours), ("math-verify", theirs)):
            for case in res["wrong"]:
                print(f"  {label} missed [{case.category}] gold={case.gold!r} "
                      f"completion={case.completion[-80:]!r} expected={case.expected}")


if __name__ == "__main__":
    main()
