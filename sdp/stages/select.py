"""Select the training set from verified samples.

Rules, per problem, in sample order:
- keep a sample only if its verdict is `ok: true`; `ok: false` is wrong and `ok: null`
  ("cannot verify") is dropped, never counted as a pass;
- drop duplicates: two completions of the same problem are duplicates when they are equal
  after stripping leading/trailing whitespace and collapsing every run of whitespace to one
  space (the same trace re-drawn, possibly with different spacing). Different reasoning that
  reaches the same answer is *not* a duplicate;
- keep at most `max_per_problem` distinct traces (ReST-EM's cap), the first ones drawn.

Each problem's solve rate is its share of verified samples among all its samples.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_WS = re.compile(r"\s+")


def dedupe_key(completion: str) -> str:
    """What two duplicate completions share (see module docstring)."""
    return _WS.sub(" ", completion.strip())


@dataclass
class Selection:
    """Kept records, per-problem solve rates and counts."""

    kept: list[dict] = field(default_factory=list)
    solve_rates: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def train_pass_rate(self) -> float:
        """Mean of per-problem solve rates (= share of verified samples when every problem has n samples)."""
        rates = list(self.solve_rates.values())
        return sum(rates) / len(rates) if rates else 0.0


def select(records: Iterable[Mapping[str, Any]], max_per_problem: int) -> Selection:
    """Apply the selection rules to verified records (each with a `verdict`)."""
    if max_per_problem < 1:
        raise ValueError(f"max_per_problem must be >= 1, got {max_per_problem}")
    by_problem: dict[str, list[Mapping]] = defaultdict(list)
    for record in records:
        by_problem[record["id"]].append(record)
    out = Selection()
    counts = dict.fromkeys(("samples", "ok", "wrong", "unverifiable", "duplicates", "capped", "kept"), 0)
    for pid, group in by_problem.items():
        seen: set[str] = set()
        ok = 0
        for record in group:
            counts["samples"] += 1
            verdict = record["verdict"]["ok"]
            if verdict is None:
                counts["unverifiable"] += 1
                continue
            if not verdict:
                counts["wrong"] += 1
                continue
            ok += 1
            counts["ok"] += 1
            key = dedupe_key(record["completion"])
            if key in seen:
                counts["duplicates"] += 1
                continue
            seen.add(key)
            if len(seen) > max_per_problem:
                counts["capped"] += 1
                continue
            out.kept.append(dict(record))
        out.solve_rates[pid] = ok / len(group)
    counts["kept"] = len(out.kept)
    counts["problems"] = len(by_problem)
    counts["problems_solved"] = sum(1 for r in out.solve_rates.values() if r > 0)
    out.counts = counts
    return out


def sft_pairs(kept: Iterable[Mapping[str, Any]], render: Callable[[str], str]) -> list[dict]:
    """The SFT set: rendered prompt / completion pairs (plus the problem id for traceability)."""
    return [{"id": r["id"], "prompt": render(r["prompt"]), "completion": r["completion"]} for r in kept]
