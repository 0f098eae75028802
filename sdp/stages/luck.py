"""A measure of luck per round: how often a round's completions "pass" against another problem's gold.

With small integer answers a model that guesses is often right, and outcome-only verification
keeps those traces. This pass estimates how much of a round's pass rate is chance:

- **shuffled pass rate**: every completion of a problem whose verifier compares an answer (the
  math verifier and its subclasses; code is skipped) is verified again, by the round's verifier and
  rules, against the gold of *another* problem of the same domain (a seeded derangement of the
  round's problems: no problem gets its own gold). The share that passes estimates chance
  agreement; compare it with ``own_pass_rate``, the share of the same completions that pass against
  their own gold. Problems whose shuffled gold happens to equal their own are counted in
  ``same_gold`` (a correct answer passes both there). Rationalized samples (drawn with the gold as a
  hint) are left out.
- **kept false-step share**: each kept trace (the select stage's rules, re-applied) is re-checked
  against its own gold by the math verifier with the round's options (``math_verify``) but
  ``step_check="flag"``; the share carrying the
  false-step flag. Under the default ``step_check="reject"`` it is 0 by construction; it measures
  what the step check would remove when the round ran with it off.
- **distinct answers per problem**: the mean number of distinct final answers (whitespace
  collapsed) among a problem's samples, over the problems checked against a shuffled gold
  (``problems``).

It is one extra verification pass over the round's verdicts (the same `Verification` pool
machinery), streamed shard by shard. ``python -m sdp.stages.luck runs/<name> --round k`` computes it
for a finished round with that run's saved settings and prints the JSON (``--write`` also stores it
in the round's metrics.json and redraws the summary, for rounds run before this pass existed).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import random
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sdp.jsonl import iter_jsonl
from sdp.shards import ShardPlan
from sdp.stages.select import Selector
from sdp.stages.verify import Verification
from verifiers.math_verifier import FALSE_STEP, MathVerifier, MathVerifyConfig
from verifiers.registry import UnknownVerifierError, resolve_verifier_class

STEP_FLAG_VERIFIER = "sdp.stages.luck:StepFlagMathVerifier"
_WS = re.compile(r"\s+")


class StepFlagMathVerifier(MathVerifier):
    """The round's math verifier (its configured options) with the step check as a flag: a false step
    leaves ``ok`` and adds a flag."""

    def __init__(self, *, timeout: float = 1.0, config: MathVerifyConfig | None = None) -> None:
        super().__init__(timeout=timeout, config=dataclasses.replace(config or MathVerifyConfig(), step_check="flag"))


# Samples verified against a shuffled gold per round: enough for a rate, bounded for large rounds.
MAX_CHECKED = 4096


def derangement(n: int, seed: int) -> list[int]:
    """A seeded permutation ``p`` of ``range(n)`` with ``p[i] != i`` for every i (Sattolo's algorithm).

    Sattolo's shuffle draws a single n-cycle, so no index maps to itself; it takes exactly n - 1
    draws (no rejection loop). ``n`` < 2 has no derangement: an empty list.
    """
    if n < 2:
        return []
    p = list(range(n))
    rng = random.Random(seed)
    for i in range(n - 1, 0, -1):
        j = rng.randrange(i)  # j < i: Sattolo, not Fisher-Yates
        p[i], p[j] = p[j], p[i]
    return p


@functools.lru_cache(maxsize=64)
def compares_answers(name: str | None) -> bool:
    """Whether the verifier `name` judges a final answer against a gold (math and its subclasses)."""
    if not isinstance(name, str) or not name:
        return False
    try:
        target = resolve_verifier_class(name)
    except (UnknownVerifierError, ImportError, AttributeError):
        return False
    return isinstance(target, type) and issubclass(target, MathVerifier)


def shuffled_golds(plan: ShardPlan, verifier: str | None, seed: int) -> dict[str, tuple[str, Any]]:
    """problem id -> (verifier name, another problem's gold), per domain, for answer-compared problems."""
    by_domain: dict[str, list[tuple[str, Any]]] = {}
    for shard in plan.shards:
        for pid, problem in shard.load_problems().items():
            name = verifier or problem.get("domain")
            if compares_answers(name) and problem.get("answer") is not None:
                by_domain.setdefault(name, []).append((pid, problem["answer"]))
    out: dict[str, tuple[str, Any]] = {}
    for i, (name, golds) in enumerate(sorted(by_domain.items())):
        for (pid, _), j in zip(golds, derangement(len(golds), seed * 7919 + i), strict=False):
            out[pid] = (name, golds[j][1])
    return out


def _answer_key(answer: Any) -> str | None:
    return None if answer is None else _WS.sub(" ", str(answer).strip())


def measure_luck(
    plan: ShardPlan, verification: Verification, selector: Selector, *, verifier: str | None = None, seed: int = 0,
    max_checked: int = MAX_CHECKED,
) -> dict[str, Any]:
    """The luck figures of one round's verdict shards (see the module docstring).

    ``verification`` is used with its worker pool and rules (timeout, ``keep_truncated``); its own
    verifier name must be None, as each record here names the verifier it needs. ``selector`` is a
    fresh `Selector` configured as the select stage's, so the kept traces are the ones trained on.
    ``verifier`` is the round's verifier override (``RoundConfig.verifier``). At most ``max_checked``
    samples, evenly spaced over the round, are verified against a shuffled gold: the rate needs a few
    thousand, and a full second pass would double the verify stage of a large round.
    """
    if verification.verifier is not None:
        raise ValueError("measure_luck needs a Verification without a fixed verifier (records name theirs)")
    golds = shuffled_golds(plan, verifier, seed)
    own_ok = checked = 0
    answers: dict[str, set[str]] = {}
    same_gold: set[str] = set()

    eligible = sum(r["id"] in golds and not r.get("rationalized") for s in plan.shards for r in iter_jsonl(s.verdicts))
    stride = max(1, -(-eligible // max(1, max_checked)))

    def shuffled() -> Iterator[dict[str, Any]]:
        nonlocal own_ok, checked
        position = -1
        for shard in plan.shards:
            problems = shard.load_problems()
            for record in iter_jsonl(shard.verdicts):
                pid = record["id"]
                if pid not in golds or record.get("rationalized"):
                    continue
                key = _answer_key(record["verdict"].get("answer"))
                seen = answers.setdefault(pid, set())
                if key is not None:
                    seen.add(key)
                position += 1
                if position % stride:
                    continue
                name, gold = golds[pid]
                if str(gold).strip() == str(problems[pid].get("answer")).strip():
                    same_gold.add(pid)
                checked += 1
                own_ok += record["verdict"].get("ok") is True
                yield {**problems[pid], **_without_verdict(record), "answer": gold, "domain": name}

    shuffled_ok = sum(v.get("ok") is True for v in verification.verdicts(shuffled()))
    kept_checked = 0

    def kept() -> Iterator[dict[str, Any]]:
        nonlocal kept_checked
        for shard in plan.shards:
            problems = shard.load_problems()
            for record in iter_jsonl(shard.verdicts):
                problem = problems[record["id"]]
                if selector.add(record) and compares_answers(verifier or problem.get("domain")):
                    kept_checked += 1
                    yield {**problem, **_without_verdict(record), "domain": STEP_FLAG_VERIFIER}

    false_steps = sum(_false_step(v) for v in verification.verdicts(kept()))
    return {
        "checked": checked,
        "shuffled_ok": shuffled_ok,
        "shuffled_pass_rate": _rate(shuffled_ok, checked),
        "own_ok": own_ok,
        "own_pass_rate": _rate(own_ok, checked),
        "same_gold": len(same_gold),
        "problems": len(answers),
        "kept_checked": kept_checked,
        "kept_false_step": false_steps,
        "kept_false_step_share": _rate(false_steps, kept_checked),
        "distinct_answers_per_problem": (
            round(sum(map(len, answers.values())) / len(answers), 4) if answers else None
        ),
    }


def _without_verdict(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "verdict"}


def _false_step(verdict: Mapping[str, Any]) -> bool:
    """A false step shown by a flag-mode verdict (flag), or by a reject-mode reason."""
    marks = [*verdict.get("flags", ()), str(verdict.get("reason", ""))]
    return any(str(m).startswith(FALSE_STEP) for m in marks)


def _rate(n: int, total: int) -> float | None:
    return round(n / total, 6) if total else None


def format_luck(luck: Mapping[str, Any]) -> str:
    """One line for logs and `sdp.inspect`."""

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    answers = luck.get("distinct_answers_per_problem")
    return (
        f"shuffled golds pass {pct(luck['shuffled_pass_rate'])} ({luck['shuffled_ok']} of {luck['checked']}) "
        f"vs own golds {pct(luck['own_pass_rate'])} ({luck['own_ok']}); "
        f"{luck['same_gold']} problems drew an equal gold; "
        f"kept with a false step {luck['kept_false_step']} of {luck['kept_checked']}; "
        f"{'-' if answers is None else f'{answers:.2f}'} distinct answers per problem"
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m sdp.stages.luck runs/<name> --round k`: the round's luck figures as JSON (reads only)."""
    from sdp.config import parse_config
    from sdp.round_stages import luck_inputs

    parser = argparse.ArgumentParser(prog="python -m sdp.stages.luck", description=main.__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--round", type=int, required=True)
    parser.add_argument("--workers", type=int, default=None, help="Verification workers (default: the run's).")
    parser.add_argument("--seed", type=int, default=None, help="Derangement seed (default: the round's).")
    parser.add_argument("--write", action="store_true",
                        help="Also store the figures in the round's metrics.json and redraw the run summary.")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    cfg = parse_config(["--config", str(run_dir / "config.yaml")])
    plan = ShardPlan.load(run_dir / f"round-{args.round}")
    if plan is None or not plan.complete("verdicts"):
        print(f"error: {run_dir}/round-{args.round} has no complete verdict shards", file=sys.stderr)
        return 2
    if args.workers is not None:
        cfg.verify_workers = args.workers
    verification, selector, seed = luck_inputs(cfg, args.round, plan)
    with verification:
        luck = measure_luck(plan, verification, selector, verifier=cfg.verifier,
                            seed=seed if args.seed is None else args.seed)  # fmt: skip
    print(json.dumps(luck, indent=2, sort_keys=True))
    metrics_path = run_dir / f"round-{args.round}" / "metrics.json"
    if args.write and metrics_path.is_file():
        from sdp.rundir import atomic_write_json
        from sdp.stages.summary import write_summary

        atomic_write_json(metrics_path, {**json.loads(metrics_path.read_text()), "luck": luck})
        write_summary(run_dir)
    print(format_luck(luck), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
