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
`Selector` applies the rules record by record (the round streams verdict shards through it).

Rationalized samples (`rationalized: true`, drawn with a hint, `sdp.stages.rationalize`) follow
the same rules against the same per-problem duplicates and cap, but are counted apart
(`rationalized_*` counts, present only when there are any) and never enter the solve rates,
which measure the model without hints. `rationalized_limit` caps how many are kept in all: the
first ones in stream order (shard, then problem order of the seeded subset).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_WS = re.compile(r"\s+")


def dedupe_key(completion: str) -> str:
    """What two duplicate completions share (see module docstring)."""
    return _WS.sub(" ", completion.strip())


def completion_digest(completion: str) -> bytes:
    """16-byte hash of `dedupe_key(completion)`: equal for duplicate completions."""
    return hashlib.blake2b(dedupe_key(completion).encode("utf-8", "surrogatepass"), digest_size=16).digest()


_digest = completion_digest


class Selector:
    """The selection rules applied record by record; it keeps only per-problem state.

    Per problem: sample and verified counts, and 16-byte hashes of its distinct verified
    completions (for duplicates); never the records themselves. With `grouped=True` the input
    holds each problem's samples in one run (as shards do), so the hashes of a problem are
    dropped when the next problem starts and memory does not grow with the samples.
    """

    def __init__(self, max_per_problem: int, *, grouped: bool = False, rationalized_limit: int | None = None) -> None:
        if max_per_problem < 1:
            raise ValueError(f"max_per_problem must be >= 1, got {max_per_problem}")
        self.max_per_problem, self.grouped = max_per_problem, grouped
        self.rationalized_limit = rationalized_limit
        self.rationalized: dict[str, int] = {}
        self._rationalized_problems: set[str] = set()
        self._seen: dict[str, set[bytes]] = {}
        self._current: str | None = None
        self._tally: dict[str, list[int]] = {}  # id -> [verified, samples]
        self.counts = dict.fromkeys(("samples", "ok", "wrong", "unverifiable", "duplicates", "capped", "kept"), 0)

    def add(self, record: Mapping[str, Any]) -> bool:
        """Count `record` (with its `verdict`); True when it is kept for training."""
        pid = record["id"]
        if self.grouped and pid != self._current:
            if pid in self._tally:
                raise ValueError(f"samples of problem {pid!r} are not contiguous (grouped selection)")
            self._seen.clear()
            self._current = pid
        if record.get("rationalized"):
            return self._add_rationalized(pid, record)
        tally = self._tally.setdefault(pid, [0, 0])
        tally[1] += 1
        self.counts["samples"] += 1
        verdict = record["verdict"]["ok"]
        if verdict is None:
            self.counts["unverifiable"] += 1
            return False
        if not verdict:
            self.counts["wrong"] += 1
            return False
        tally[0] += 1
        self.counts["ok"] += 1
        seen = self._seen.setdefault(pid, set())
        key = _digest(record["completion"])
        if key in seen:
            self.counts["duplicates"] += 1
            return False
        seen.add(key)
        if len(seen) > self.max_per_problem:
            self.counts["capped"] += 1
            return False
        self.counts["kept"] += 1
        return True

    def _add_rationalized(self, pid: str, record: Mapping[str, Any]) -> bool:
        counts = self.rationalized
        if not counts:
            counts.update(dict.fromkeys(("samples", "ok", "duplicates", "capped", "over_share", "kept"), 0))
        counts["samples"] += 1
        if record["verdict"]["ok"] is not True:
            return False
        counts["ok"] += 1
        seen = self._seen.setdefault(pid, set())
        key = completion_digest(record["completion"])
        if key in seen:
            counts["duplicates"] += 1
            return False
        if len(seen) >= self.max_per_problem:
            counts["capped"] += 1
            return False
        if self.rationalized_limit is not None and counts["kept"] >= self.rationalized_limit:
            counts["over_share"] += 1
            return False
        seen.add(key)
        counts["kept"] += 1
        self._rationalized_problems.add(pid)
        return True

    @property
    def solve_rates(self) -> dict[str, float]:
        """Each problem's share of verified samples among its samples."""
        return {pid: ok / n for pid, (ok, n) in self._tally.items()}

    @property
    def train_pass_rate(self) -> float:
        """Mean of per-problem solve rates (= share of verified samples when every problem has n samples)."""
        rates = list(self.solve_rates.values())
        return sum(rates) / len(rates) if rates else 0.0

    def summary(self) -> dict[str, int]:
        rates = self.solve_rates
        out = {**self.counts, "problems": len(rates), "problems_solved": sum(1 for r in rates.values() if r > 0)}
        if self.rationalized:
            out.update({f"rationalized_{k}": v for k, v in self.rationalized.items()})
            out["problems_rationalized"] = len(self._rationalized_problems)
        return out


@dataclass
class Selection:
    """Kept records, per-problem solve rates and counts (the in-memory form of `Selector`)."""

    kept: list[dict] = field(default_factory=list)
    solve_rates: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def train_pass_rate(self) -> float:
        rates = list(self.solve_rates.values())
        return sum(rates) / len(rates) if rates else 0.0


def select(records: Iterable[Mapping[str, Any]], max_per_problem: int) -> Selection:
    """Apply the selection rules to verified records (each with a `verdict`), keeping the kept ones."""
    selector = Selector(max_per_problem)
    kept = [dict(r) for r in records if selector.add(r)]
    return Selection(kept, selector.solve_rates, selector.summary())


def sft_pair(record: Mapping[str, Any], rendered_prompt: str) -> dict:
    """One SFT example: the rendered prompt and the kept completion (plus the problem id for traceability)."""
    return {"id": record["id"], "prompt": rendered_prompt, "completion": record["completion"]}


def sft_pairs(kept: Iterable[Mapping[str, Any]], render: Callable[[str], str]) -> list[dict]:
    """The SFT set of kept records that carry their `prompt`."""
    return [sft_pair(r, render(r["prompt"])) for r in kept]
