"""Our ``math`` verifier against HuggingFace ``math-verify`` on the same case tables.

Run: ``.venv/bin/python -m benchmarks.bench_math_verify [--rounds 3] [--show-wrong] [--cli] [--write-cases F]``

Three tables: the regression table ``tests/math_cases.py`` (written with the verifier),
``REAL_CASES`` below, real-style completion endings written for this benchmark and used by no
test (final-answer choice, hedging, exactness, plain GSM8K endings, MATH-style answers), and the
reasoning-output tables of the tests (commitment rules, label-sensitive values, other surfaces, the
thinner classes of issue 24 in ``tests/test_math_classes.py``, the bounded-check rows of
``tests/test_math_bounds.py``, and each step-check row as a trace with a right final answer: kept
only when its steps hold).
For each table and grader it prints accuracy, throughput and, per category, the right
count and the number of *accepted wrong answers* (a pass where the expected verdict is not a
pass: what would be trained on). Accuracy counts a case right when
the grader's pass/fail decision matches the expected one (``ok=None`` and ``False`` are both
"not a pass", since math-verify has no "cannot verify"). Throughput is checks per second
over ``--rounds`` passes of the table, in this one process, one after the other; our parse
cache is cleared before each pass so repeats are not free. math-verify gets the same 1 s
limit as ours (its ``parsing_timeout``/``timeout_seconds``), which it enforces with
``signal.alarm`` (main thread only).

``--cli`` times the whole set as commands instead, start-up included: ``python -m sdp.verify`` on a
JSONL of every table against a fresh interpreter that imports math-verify and grades the same file
(math-verify has no command of its own), alternated round by round; it prints each wall and CPU time
and their ratios. ``--write-cases FILE`` writes that JSONL (with each case's ``expected``), for
``python -m sdp.verify FILE --compare math-verify``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from tests.math_cases import CASES, Case

# Each is the tail of a completion the way instruct models end GSM8K- and MATH-style solutions.
_R = Case
REAL_CASES: list[Case] = [
    # final-answer choice: the last statement wins, whatever its form
    _R("15", "The answer is 12.\n\nHmm, wait: I forgot the 3 from Tuesday. 12 + 3 = 15.\n#### 15", True, "final"),
    _R("12", "The answer is 12.\n\nHmm, wait: I forgot the 3 from Tuesday. 12 + 3 = 15.\n#### 15", False, "final"),
    _R("48", "Each square has area $4^2 = \\boxed{16}$. With 3 squares, the total area is 3 * 16 = 48.", True, "final"),
    _R("16", "Each square has area $4^2 = \\boxed{16}$. With 3 squares, the total area is 3 * 16 = 48.", False, "final"),
    _R("27", "Please put your final answer within \\boxed{}.\n\nTom has 3 bags of 9 apples: 3 * 9 = 27.\n**Answer:** 27", True, "final"),
    _R("27", "I need to write the result as \\boxed{answer}. 3 * 9 = 27, so the answer is 27.", True, "final"),
    _R("8", "Initially I get \\boxed{6}.\n\nActually, recounting the edges gives 8.\nFinal answer: 8", True, "final"),
    _R("6", "Initially I get \\boxed{6}.\n\nActually, recounting the edges gives 8.\nFinal answer: 8", False, "final"),
    _R("\\frac{3}{5}", "So $P = \\frac{3}{5}$.\n\nThe final answer is $\\boxed{\\frac{3}{5}}$. I hope it is correct.", True, "final"),
    _R("9", "#### 7\n\nOops, that was the count before lunch. After lunch she has 7 + 2 = 9.\n\nThe answer is 9.", True, "final"),
    _R("7", "#### 7\n\nOops, that was the count before lunch. After lunch she has 7 + 2 = 9.\n\nThe answer is 9.", False, "final"),
    _R("40", "The perimeter is $2(12 + 8) = 40$.\n\n**Final Answer:** $\\boxed{40}$\n\nVerification: 12 + 8 + 12 + 8 = 40. \u2713", True, "final"),
    _R("120", "There are $5! = \\boxed{120}$ orderings.", True, "final"),
    # hedging: several candidates in the final statement are never a pass
    _R("14", "So the number of tiles is $14$ or $15$.\n\nThe answer is $14$ or $15$.", False, "hedge"),
    _R("15", "The answer is $14$ or $15$.", False, "hedge"),
    _R("9", "Therefore the answer is $\\boxed{9 \\text{ (or 10 if we count the endpoint)}}$.", False, "hedge"),
    _R("10", "Therefore the answer is $\\boxed{9 \\text{ (or 10 if we count the endpoint)}}$.", False, "hedge"),
    _R("3", "The possible values are:\n\\boxed{3}\n\\boxed{4}", False, "hedge"),
    _R("4", "The possible values are:\n\\boxed{3}\n\\boxed{4}", False, "hedge"),
    _R("3", "I'm fairly sure it is \\boxed{3}, or perhaps \\boxed{4}.", False, "hedge"),
    _R("4", "I'm fairly sure it is \\boxed{3}, or perhaps \\boxed{4}.", False, "hedge"),
    _R("A", "The best choice is (A) (or possibly (C)).", False, "hedge"),
    _R("C", "The best choice is (A) (or possibly (C)).", False, "hedge"),
    _R("D", "$\\boxed{D \\text{ or } E}$", False, "hedge"),
    _R("E", "$\\boxed{D \\text{ or } E}$", False, "hedge"),
    _R("7", "The answer is either 7 or 8, depending on rounding.", False, "hedge"),
    _R("\\frac{1}{2}", "$\\boxed{\\frac{1}{2}} \\text{ or maybe } \\boxed{\\frac{1}{3}}$", False, "hedge"),
    _R("-3, 5", "The roots are $x = -3$ and $x = 5$, so the answer is $\\boxed{-3, 5}$.", True, "hedge"),
    # exactness: integer and rational golds need the exact value
    _R("2000000", "The population is about $\\boxed{2000000.5}$.", False, "exact"),
    _R("1000000", "$\\boxed{999999.9999}$", False, "exact"),
    _R("360", "The total is \\boxed{360.0001}.", False, "exact"),
    _R("\\frac{5}{2}", "$\\boxed{2.5}$", True, "exact"),
    _R("\\frac{5}{2}", "$\\boxed{2.500001}$", False, "exact"),
    _R("\\frac{1}{3}", "$\\boxed{0.3333333333}$", False, "exact"),
    _R("\\frac{2}{7}", "$\\boxed{0.285714286}$", False, "exact"),
    _R("\\frac{1}{8}", "$\\boxed{0.125}$", True, "exact"),
    _R("\\frac{7}{2}", "He ran $3\\frac12$ miles, so the answer is $\\boxed{3\\frac12}$.", True, "exact"),
    _R("3", "$\\boxed{3\\frac12}$", False, "exact"),
    _R("\\frac{9}{4}", "$\\boxed{2\\frac{1}{4}}$", True, "exact"),
    _R("12.5", "The average is $\\boxed{12.5}$.", True, "exact"),
    _R("12.5", "The average is $\\boxed{12.49}$.", False, "exact"),
    _R("12.5", "The average is $\\boxed{12.5000001}$.", False, "exact"),
    _R("18.75", "She pays $\\boxed{\\$18.75}$.", True, "exact"),
    _R("18.75", "She pays $\\boxed{\\$18.8}$.", False, "exact"),
    _R("0.6", "$\\boxed{\\frac{3}{5}}$", True, "exact"),
    _R("0.6", "$\\boxed{\\frac{2}{3}}$", False, "exact"),
    # plain GSM8K-style endings (no box), right answers accepted, wrong ones rejected
    _R("18", "Janet sells 16 - 3 - 4 = 9 eggs at $2 each.\n**Answer:** 18", True, "gsm8k"),
    _R("18", "Janet sells 16 - 3 - 4 = 9 eggs at $2 each, so she makes 9 * 2 = 18 dollars.\nThe final answer is **18**.", True, "gsm8k"),
    _R("3", "A robe takes 2 bolts of blue fiber and half that much white fiber. So it takes 2 + 1 = 3 bolts in total.", True, "gsm8k"),
    _R("70000", "He bought the house for 80,000 and spent 50,000 on repairs. The house is now worth 200,000, so he made a profit of 200,000 - 130,000 = 70,000.", True, "gsm8k"),
    _R("540", "James runs 3 sprints 3 times a week, 60 meters each. So he runs 3 * 3 * 60 = 540 meters a week.", True, "gsm8k"),
    _R("20", "Each chicken gets 3 cups a day and she has 20 chickens. That is 60 cups, which she splits over 3 meals, so the final meal needs 60 - 15 - 25 = 20 cups.", True, "gsm8k"),
    _R("64", "The second glass costs 60% of $5, so 8 pairs cost 4 * 5 + 4 * 3 = 64 dollars. Kylie pays $64 in total.", True, "gsm8k"),
    _R("64", "Kylie pays $62 in total.", False, "gsm8k"),
    _R("260", "Toulouse has twice as many sheep as Charleston, so the three cities have 160 + 80 + 20 = 260 sheep.", True, "gsm8k"),
    _R("260", "So the three cities have 160 + 80 + 20 = 250 sheep.", False, "gsm8k"),
    _R("160", "The answer is 160, not 80.", True, "gsm8k"),
    _R("80", "The answer is 160, not 80.", False, "gsm8k"),
    _R("45", "So the answer is 60 - 15 = 45", True, "gsm8k"),
    _R("45", "Final answer: 45 minutes", True, "gsm8k"),
    _R("45", "So she needs 90 - 40 = 50 more minutes.", False, "gsm8k"),
    _R("366", "The final answer is $\\boxed{\\textcolor{blue}{366}}$", True, "gsm8k"),
    _R("366", "$\\boxed{{\\color{red} 366}}$", True, "gsm8k"),
    _R("4500", "The light travels $\\boxed{4.5e3}$ km.", True, "gsm8k"),
    _R("4500", "The light travels $\\boxed{4.6e3}$ km.", False, "gsm8k"),
    _R("12", "Let me compute. 3 + 4 = 7, and then 7 +", False, "gsm8k"),
    # MATH-style answers that must keep working
    _R("2\\sqrt{3}", "Thus $AB = \\sqrt{12} \\approx 3.464$, and the answer is $\\boxed{\\sqrt{12} \\approx 3.464}$.", True, "math"),
    _R("\\{-1, 4\\}", "The solution set is $\\boxed{\\{4, -1\\}}$.", True, "math"),
    _R("{-1, 4}", "The solution set is $\\boxed{\\{4, -1\\}}$.", True, "math"),
    _R("(2, -3)", "The center is $\\boxed{(2, -3)}$.", True, "math"),
    _R("(2, -3)", "The center is $\\boxed{(-3, 2)}$.", False, "math"),
    _R("\\frac{\\sqrt{2}}{2}", "$\\boxed{\\frac{1}{\\sqrt{2}}}$", True, "math"),
    _R("[-2, 7)", "So $x \\in \\boxed{[-2, 7)}$.", True, "math"),
    _R("x^2 - 4x + 4", "Expanding, $\\boxed{(x-2)^2}$.", True, "math"),
    _R("3\\pi", "The area is $\\boxed{3\\pi}$ square units.", True, "math"),
    _R("3\\pi", "The area is $\\boxed{9.42}$ square units.", False, "math"),
    _R("\\text{(B)}", "Only (B) satisfies both conditions.\n\nThe answer is $\\boxed{\\text{(B)}}$.", True, "math"),
    _R("0.25", "$\\boxed{25\\%}$", True, "math"),
]


def _issue_cases() -> list[Case]:
    """The reasoning-output tables of the tests (commitment, step check, labels, surfaces) as cases."""
    from tests.test_math_bounds import BOUNDS
    from tests.test_math_classes import MORE
    from tests.test_math_commit import COMMITMENT
    from tests.test_math_labels import LABELS, SURFACES
    from tests.test_math_steps import STEPS

    cases = [Case(g, c, ok, "commit") for g, c, ok, _, _ in COMMITMENT]
    cases += [Case(g, c, ok, "labels") for g, c, ok, _ in LABELS]
    cases += [Case(g, c, ok, "surface") for g, c, ok, _ in SURFACES]
    cases += [Case(g, c, ok, "classes") for g, c, ok, _ in MORE]
    cases += [Case(g, c, ok, "bounds") for g, c, ok, _, _ in BOUNDS]
    # a step table row as a trace whose final answer is right: kept only when every step holds
    cases += [Case("1", f"{text}\n\n#### 1", false is None, "steps") for text, false, _ in STEPS if "boxed" not in text]
    return cases


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
    verdicts: list[bool | None] = []
    times = []
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
                verdicts.append(ok)
    right = [(ok is True) == (c.expected is True) for ok, c in zip(verdicts, cases)]
    accepted_wrong = [ok is True and c.expected is not True for ok, c in zip(verdicts, cases)]
    normal = [t for t, c in zip(times, cases * rounds) if c.category != "pathological"]
    per_category: dict[str, list[int]] = {}
    for c, good, bad in zip(cases, right, accepted_wrong):
        row = per_category.setdefault(c.category, [0, 0, 0])
        row[0] += good
        row[1] += 1
        row[2] += bad
    return {
        "accuracy": sum(right) / len(cases),
        "correct": sum(right),
        "accepted_wrong": sum(accepted_wrong),
        "wrong": [c for c, good in zip(cases, right) if not good],
        "per_category": per_category,
        "rate": len(times) / sum(times),
        "normal_rate": len(normal) / sum(normal) if normal else float("nan"),
        "max_s": max(times),
    }


def _report(title: str, cases: list[Case], rounds: int, ours: dict, theirs: dict, show_wrong: bool) -> None:
    n = len(cases)
    print(f"== {title}: {n} cases (x{rounds} rounds)")
    for label, res in (("sdp math", ours), ("math-verify", theirs)):
        print(
            f"{label:12s} accuracy {res['correct']}/{n} = {res['accuracy']:.3f}  "
            f"accepted wrong {res['accepted_wrong']}  "
            f"throughput {res['rate']:.0f} checks/s (without pathological: {res['normal_rate']:.0f}/s)  "
            f"max single check {res['max_s'] * 1000:.1f} ms"
        )
    print(
        f"throughput ratio sdp/math-verify: {ours['rate'] / theirs['rate']:.1f}x; "
        f"accuracy difference sdp - math-verify: {ours['accuracy'] - theirs['accuracy']:+.3f}"
    )
    cats = sorted(ours["per_category"])
    print("  per category (right/total, accepted wrong):  " + "  ".join(
        f"{c} sdp {ours['per_category'][c][0]}/{ours['per_category'][c][1]},{ours['per_category'][c][2]}"
        f" mv {theirs['per_category'][c][0]}/{theirs['per_category'][c][1]},{theirs['per_category'][c][2]}"
        for c in cats
    ))
    if show_wrong:
        for label, res in (("sdp math", ours), ("math-verify", theirs)):
            for case in res["wrong"]:
                print(f"  {label} missed [{case.category}] gold={case.gold!r} "
                      f"completion={case.completion[-80:]!r} expected={case.expected}")


def _tables() -> tuple[tuple[str, list[Case]], ...]:
    return (
        ("regression table (tests/math_cases.py)", list(CASES)),
        ("real-style set (REAL_CASES)", list(REAL_CASES)),
        ("reasoning-output tables (tests/test_math_commit, _labels, _steps, _classes, _bounds)", _issue_cases()),
    )


def _grade_file_with_math_verify(path: str) -> None:
    """What a math-verify command does with a records file: import, grade each record, print the count."""
    from sdp.jsonl import iter_jsonl

    check = _math_verify()
    records = list(iter_jsonl(path))
    ok = 0
    for record in records:
        try:
            ok += check(Case(record["answer"], record["completion"], None, "")) is True
        except Exception:  # a crash is a failed record, as in _run
            pass
    print(f"math-verify: {ok} of {len(records)} records pass")


def _write_cases(path: Path) -> list[Case]:
    """Every table as math records (``id`` table:index, ``answer``, ``completion``, ``expected``); the cases."""
    cases = []
    with path.open("w", encoding="utf-8") as fh:
        for title, table in _tables():
            for i, c in enumerate(table):
                record = {"id": f"{title.split()[0]}:{c.category}:{i}", "domain": "math", "answer": c.gold,
                          "completion": c.completion, "expected": c.expected}  # fmt: skip
                fh.write(json.dumps(record) + "\n")
            cases += table
    return cases


def _cli(rounds: int) -> None:
    """Whole-set command wall, start-up included: `python -m sdp.verify` against math-verify grading the same
    file in a fresh interpreter, alternated round by round (the same machine state for both)."""
    import resource
    import statistics
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "cases.jsonl", Path(tmp) / "verdicts.jsonl"
        cases = _write_cases(src)
        commands = {
            "sdp.verify": [sys.executable, "-m", "sdp.verify", str(src), "-o", str(out), "--progress", "false"],
            "math-verify": [sys.executable, "-m", "benchmarks.bench_math_verify", "--grade-with-math-verify", str(src)],
        }
        walls: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        print(f"== whole-set command wall: {len(cases)} records (all three tables), {rounds} alternated rounds")
        for r in range(rounds):
            for name, cmd in (commands.items() if r % 2 == 0 else reversed(commands.items())):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
                walls[name].append(time.perf_counter() - start)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the command and the children it waited for
                cpus[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
                print(f"round {r + 1} {name:12s} wall {walls[name][-1]:6.2f} s  cpu {cpus[name][-1]:6.2f} s  "
                      f"{proc.stdout.strip().splitlines()[-1]}")
        for label, times in (("wall", walls), ("cpu", cpus)):
            ratios = [m / s for m, s in zip(times["math-verify"], times["sdp.verify"])]
            print(f"{label} ratio math-verify/sdp.verify per round: " + ", ".join(f"{x:.1f}x" for x in ratios)
                  + f"; median {statistics.median(ratios):.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3, help="Passes over each table per grader.")
    parser.add_argument("--show-wrong", action="store_true", help="List each grader's misses.")
    parser.add_argument("--cli", action="store_true", help="Only time the whole-set commands (start-up included).")
    parser.add_argument("--grade-with-math-verify", metavar="FILE", help=argparse.SUPPRESS)  # _cli's other side
    parser.add_argument("--write-cases", metavar="FILE", help="Only write every table as math records "
                        "(for `python -m sdp.verify FILE --compare math-verify`).")
    args = parser.parse_args()
    if args.write_cases:
        print(f"{len(_write_cases(Path(args.write_cases)))} records -> {args.write_cases}")
        return
    if args.grade_with_math_verify:
        _grade_file_with_math_verify(args.grade_with_math_verify)
        return
    if args.cli:
        _cli(args.rounds)
        return

    tables = _tables()
    ours_check = _ours()
    ours = [_run(ours_check, cases, args.rounds) for _, cases in tables]
    ours_check.close()
    theirs_check = _math_verify()
    theirs = [_run(theirs_check, cases, args.rounds) for _, cases in tables]
    for (title, cases), o, t in zip(tables, ours, theirs):
        _report(title, cases, args.rounds, o, t, args.show_wrong)


if __name__ == "__main__":
    main()
