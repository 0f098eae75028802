"""The adaptive sampling budget's planner: pure functions, state in, next wave out (no engine, no files).

`sdp.stages.budget` runs the waves; this module decides them. Per problem the state is what its
verified samples so far say (`ProblemState`); `plan_wave` turns the states and the budget spent
into the next wave's draws, `problem id -> (first sample index, count)`:

- a problem is *active* while it has fewer than `max_per_problem` distinct verified traces (the
  selection's dedupe rule, `sdp.stages.select.dedupe_key`) and fewer than `max_n` samples;
- each active problem asks for `min(wave_n, max_n - drawn)` samples; when the budget left cannot
  pay them all, problems with fewer distinct verified traces go first (the unsolved ones), then
  those with fewer samples, then problem order; the last one served may get a partial wave;
- the budget is never exceeded: a wave may draw at most `samples left` samples and
  `tokens left // max_tokens` (a sample is at most `max_tokens` tokens long);
- with rationalization on, `rationalize_reserve` of each budget is held back from the waves for
  the hint pass (`plan_rationalize`), which serves the problems with a gold answer that were
  sampled and never verified (a problem the budget never reached has not failed yet).

In `fixed` mode there is one wave of `wave_n` (= `sampling.n`) samples per problem and no
budget, i.e. exactly the fixed sampler's requests; only rationalization follows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sdp.stages.rationalize import DEFAULT_HINT_TEMPLATE

Draws = dict[str, tuple[int, int]]


@dataclass(frozen=True)
class BudgetSpec:
    """How one shard set is sampled in verified waves (a `SampleTask`'s `budget`)."""

    mode: str = "adaptive"  # "adaptive" or "fixed"
    wave_n: int = 4
    max_n: int = 32
    budget_samples: int | None = None
    budget_tokens: int | None = None
    max_tokens: int = 16
    max_per_problem: int = 1
    verifier: str | None = None
    verify_timeout: float = 5.0
    verify_workers: int | None = None
    keep_truncated: bool = False
    math_verify: dict | None = None  # the round's MathVerifyConfig options
    rationalize: bool = False
    rationalize_template: str = DEFAULT_HINT_TEMPLATE
    rationalize_n: int = 4
    rationalize_reserve: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BudgetSpec:
        return cls(**data)

    def wave_limits(self) -> tuple[int | None, int | None]:
        """(samples, tokens) the waves may spend: the budgets minus the rationalization reserve."""
        keep = 1.0 - (self.rationalize_reserve if self.rationalize else 0.0)
        samples = None if self.budget_samples is None else int(self.budget_samples * keep)
        tokens = None if self.budget_tokens is None else int(self.budget_tokens * keep)
        return samples, tokens


@dataclass
class ProblemState:
    """What one problem's samples so far say; `index` is its position in the shard set."""

    index: int
    shard: int
    has_gold: bool = False
    drawn: int = 0
    tokens: int = 0
    ok: int = 0
    digests: set = field(default_factory=set)

    @property
    def distinct(self) -> int:
        return len(self.digests)


def allowance(limit_samples: int | None, limit_tokens: int | None, used_samples: int, used_tokens: int,
              max_tokens: int) -> int | None:
    """Samples one more wave may draw without passing either limit (None: unlimited)."""
    caps = []
    if limit_samples is not None:
        caps.append(max(0, limit_samples - used_samples))
    if limit_tokens is not None:
        caps.append(max(0, (limit_tokens - used_tokens) // max(1, max_tokens)))
    return min(caps) if caps else None


def _serve(wants: list[tuple[tuple, str, int, int]], left: int | None) -> Draws:
    """Grant `(priority, id, first, count)` requests in priority order until `left` samples are spent."""
    granted: Draws = {}
    for _, pid, first, count in sorted(wants):
        if left is not None:
            count = min(count, left)
            left -= count
        if count > 0:
            granted[pid] = (first, count)
        if left == 0:
            break
    return granted


def plan_wave(states: Mapping[str, ProblemState], spec: BudgetSpec, wave: int, used_samples: int,
              used_tokens: int) -> Draws:
    """The draws of wave `wave` (empty: sampling is over), in problem order."""
    if spec.mode == "fixed":
        return {pid: (0, spec.wave_n) for pid in states} if wave == 0 else {}
    wants = [
        ((s.distinct, s.drawn, s.index), pid, s.drawn, min(spec.wave_n, spec.max_n - s.drawn))
        for pid, s in states.items()
        if s.distinct < spec.max_per_problem and s.drawn < spec.max_n
    ]
    left = allowance(*spec.wave_limits(), used_samples, used_tokens, spec.max_tokens)
    granted = _serve(wants, left)
    return {pid: granted[pid] for pid in states if pid in granted}


def plan_rationalize(states: Mapping[str, ProblemState], spec: BudgetSpec, used_samples: int,
                     used_tokens: int) -> Draws:
    """The hint pass: `rationalize_n` samples for each unsolved problem with a gold answer, within the budget."""
    if not spec.rationalize:
        return {}
    wants = [((s.index,), pid, s.drawn, spec.rationalize_n) for pid, s in states.items()
             if s.has_gold and s.ok == 0 and s.drawn > 0]
    left = None
    if spec.mode != "fixed":
        left = allowance(spec.budget_samples, spec.budget_tokens, used_samples, used_tokens, spec.max_tokens)
    granted = _serve(wants, left)
    return {pid: granted[pid] for pid in states if pid in granted}


def observe(state: ProblemState, record: Mapping[str, Any], digest: bytes | None) -> None:
    """Fold one verified sample into its problem's state (`digest`: its dedupe hash when verified ok)."""
    state.drawn = max(state.drawn, int(record["sample_index"]) + 1)
    state.tokens += int(record.get("completion_tokens") or 0)
    if digest is not None:
        state.ok += 1
        state.digests.add(digest)


def spread(values: list[int]) -> dict[str, float]:
    """min / mean / max of per-problem counts."""
    if not values:
        return {"min": 0, "mean": 0.0, "max": 0}
    return {"min": min(values), "mean": round(sum(values) / len(values), 3), "max": max(values)}
