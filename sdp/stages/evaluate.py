"""Held-out evaluation: pass@1, unbiased pass@k and maj@k per domain.

For a problem with n samples of which c are verified correct:
- pass@1 = c / n;
- pass@k = 1 - C(n-c, k) / C(n, k), the unbiased estimator of Chen et al. (2021);
- maj@k: the most frequent extracted answer (`verdict.answer`) among the first k samples
  (ties go to the answer seen first) is correct if a sample giving it was verified. Domains
  whose verifier extracts no answers (answer always null) report maj@k as null.
A problem whose samples are all unverifiable (`ok: null`, a bad gold) is left out of the
scores and counted under `unverifiable_problems`; an unverifiable sample of an otherwise
verifiable problem counts as not correct.

Records are streamed from the verdict shards; per sample only its verdict's `ok` and
`answer` are kept until the scores are computed.

`python -m sdp.evaluate` (`sdp/evaluate.py`) runs this stage alone, as a run of its own.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sdp.shards import DEFAULT_SHARD_SIZE, ShardPlan
from sdp.stages.sample import SampleTask

logger = logging.getLogger(__name__)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (numerically stable product form)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def majority_correct(samples: Sequence[Mapping[str, Any]]) -> bool | None:
    """Whether the majority answer of `samples` is verified correct; None when none has an answer."""
    answers = [s["verdict"].get("answer") for s in samples]
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    winner = next(a for a in answers if a is not None and counts[a] == best)
    return any(s["verdict"]["ok"] is True for s, a in zip(samples, answers, strict=False) if a == winner)


def eval_metrics(records: Iterable[Mapping[str, Any]], k: int | None = None) -> dict[str, dict[str, Any]]:
    """Scores per domain and over all problems (key "all") from verified eval records."""
    # Only what scoring needs is kept per sample (not the completion), so records can be streamed.
    by_problem: dict[str, list[Mapping]] = defaultdict(list)
    for record in records:
        verdict = record["verdict"]
        by_problem[record["id"]].append(
            {
                "domain": record["domain"],
                "sample_index": record.get("sample_index", 0),
                "verdict": {"ok": verdict["ok"], "answer": verdict.get("answer")},
            }
        )
    per_domain: dict[str, dict[str, list]] = defaultdict(
        lambda: {"p1": [], "pk": [], "maj": [], "unverifiable": []}
    )
    for group in by_problem.values():
        group = sorted(group, key=lambda r: r.get("sample_index", 0))
        n = len(group)
        kk = n if k is None else k
        for bucket in (per_domain[group[0]["domain"]], per_domain["all"]):
            if all(r["verdict"]["ok"] is None for r in group):
                bucket["unverifiable"].append(1)
                continue
            c = sum(1 for r in group if r["verdict"]["ok"] is True)
            bucket["p1"].append(c / n)
            bucket["pk"].append(pass_at_k(n, c, kk))
            bucket["maj"].append((group[0]["domain"], majority_correct(group[:kk])))
    # Domains whose verifier extracts answers; "all" votes over those alone, so a domain
    # without answers (code) does not count as wrong majority votes in the total.
    voting = {d for d, b in per_domain.items() if d != "all" and any(m is not None for _, m in b["maj"])}
    result: dict[str, dict[str, Any]] = {}
    for domain, b in sorted(per_domain.items()):
        votes = [m for d, m in b["maj"] if d in voting]
        majs = [m for m in votes if m is not None]
        n_samples = {len(g) for g in by_problem.values()}
        kk = k if k is not None else min(n_samples)
        result[domain] = {
            "problems": len(b["p1"]),
            "unverifiable_problems": len(b["unverifiable"]),
            "k": kk,
            "pass@1": round(float(np.mean(b["p1"])), 6) if b["p1"] else None,
            "pass@k": round(float(np.mean(b["pk"])), 6) if b["pk"] else None,
            # Problems without any extracted answer score as a wrong majority vote.
            "maj@k": round(sum(majs) / len(votes), 6) if majs else None,
        }
    return result


def _load_plan(task: SampleTask) -> ShardPlan:
    plan = ShardPlan.load(task.shards)
    if plan is None:
        raise FileNotFoundError(f"{task.shards}: no shard plan (shards.json)")
    return plan


def evaluate_model(
    cfg: Any,
    model: str,
    problems: Iterable[Mapping],
    out_dir: Path,
    also: Sequence[SampleTask] = (),
    after_sampling: Callable[[], None] | None = None,
) -> tuple[dict[str, dict[str, Any]], int]:
    """Sample the held-out set with `model` (own process), verify, score; returns (scores, samples).

    The set is sharded under `out_dir/eval/` (`sdp.shards`); shards finished by an earlier,
    killed call are kept. Verification of finished shards overlaps the sampling of later ones.
    `also`: further shard sets the same engine samples afterwards (the round's next candidates);
    their finished shards are verified under sampling too, once the held-out ones are (the same
    verification as the round's verify stage, which then verifies only what is left), except a
    set with an adaptive budget, whose sampler verifies its own waves. `after_sampling` runs once
    the sampler has exited successfully.
    """
    from sdp.launch.process import pause_point, run_stage_while
    from sdp.shards import plan_shards
    from sdp.stages.sample import SampleJob
    from sdp.stages.verify import Verification

    plan = plan_shards(problems, out_dir / "eval", getattr(cfg, "shard_size", DEFAULT_SHARD_SIZE))
    template = cfg.template_fields() if hasattr(cfg, "template_fields") else {}
    task = SampleTask(str(plan.root), dict(cfg.eval_sampling or {}), "eval", template)
    tasks = [task, *also] if plan.pending("samples") else list(also)
    plans = [_load_plan(t) for t in tasks]
    # Held-out shards first: the scores wait on them, the next round's verdicts only on its verify stage.
    overlapped = [plan, *(_load_plan(t) for t in also if not t.budget)]
    with Verification.for_config(cfg) as verification:

        def verify_ready() -> bool:
            for shards in overlapped:
                ready = [s for s in shards.shards if s.done("samples") and not s.done("verdicts")]
                if ready:
                    verification.verify_shard(ready[0])
                    if shards is not plan:  # counted as the verify stage counts: the set's verified shards
                        pause_point("verify", shards.count - len(shards.pending("verdicts")))
                    return True
            return False

        if any(p.pending("samples") for p in plans):
            job = SampleJob(
                model=model,
                tasks=tuple(tasks),
                engine_args=dict(cfg.engine_args or {}),
                seed=cfg.seed,
                backend=cfg.backend,
                progress=cfg.progress,
            )
            work = verify_ready if getattr(cfg, "overlap_verify", True) else (lambda: False)
            run_stage_while("sdp.stages.sample", job.to_dict(), out_dir / "eval_sample.job.json", work,
                            env=cfg.vllm_env)
        if after_sampling is not None:
            after_sampling()
        for shard in plan.pending("verdicts"):
            verification.verify_shard(shard)
    return eval_metrics(plan.iter_records("verdicts"), cfg.eval_k), plan.count_records("verdicts")


def format_scores(scores: Mapping[str, Mapping[str, Any]]) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}"

    def maj(v: float | None) -> str:
        return "- (no answers to vote on)" if v is None else pct(v)

    return ", ".join(
        f"{d} pass@1 {pct(s['pass@1'])} pass@{s['k']} {pct(s['pass@k'])} maj@{s['k']} {maj(s['maj@k'])}"
        for d, s in scores.items()
    )
