"""Shards: the unit of work of the sampling and verification stages.

A problem set is cut into fixed shards of `shard_size` problems, in order. A shard set lives in
one directory (a round's directory, or its `eval/`):

    shards.json                 the plan: shard size, shard count, problem count (written last)
    problems/shard-00000.jsonl  the shard's problems (full records)
    samples/shard-00000.jsonl   its candidates: {id, domain, sample_index, completion, ...}
    verdicts/shard-00000.jsonl  the candidates plus `verdict`

Every shard file is written atomically (`sdp.jsonl.JsonlWriter`), so a shard file that exists is a
finished shard: a stage killed after m of M shards redoes only the other M - m. Samples carry only
their problem's `id` and `domain`; verification joins them with the shard's problem file, so large
problem fields (`tests`, `io`) are stored once, not once per sample. A problem's samples are
contiguous and in `sample_index` order within its shard, and shards are read in index order, so a
stage that streams a kind across the shards sees every problem exactly once, in problem order.

The objects here are plain, picklable values, so a shard can be handed to another process or a
Ray task as it is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sdp.jsonl import JsonlWriter, count_lines, iter_jsonl
from sdp.rundir import atomic_write_json

PLAN = "shards.json"
DEFAULT_SHARD_SIZE = 256
Kind = Literal["problems", "samples", "verdicts"]
KINDS: tuple[Kind, ...] = ("problems", "samples", "verdicts")


@dataclass(frozen=True)
class Shard:
    """Shard `index` of the shard set in `root`."""

    root: Path
    index: int

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}"

    def path(self, kind: Kind) -> Path:
        return Path(self.root) / kind / f"{self.name}.jsonl"

    @property
    def problems(self) -> Path:
        return self.path("problems")

    @property
    def samples(self) -> Path:
        return self.path("samples")

    @property
    def verdicts(self) -> Path:
        return self.path("verdicts")

    def done(self, kind: Kind) -> bool:
        """Whether this shard's `kind` file is in place (it is renamed there only when complete)."""
        return self.path(kind).exists()

    def load_problems(self) -> dict[str, dict]:
        """The shard's problems by id (one shard's worth of memory)."""
        return {p["id"]: p for p in iter_jsonl(self.problems)}


@dataclass(frozen=True)
class ShardPlan:
    """The shards of one problem set, as recorded in `<root>/shards.json`."""

    root: Path
    shard_size: int
    count: int
    problems: int

    @property
    def shards(self) -> list[Shard]:
        return [Shard(Path(self.root), i) for i in range(self.count)]

    def pending(self, kind: Kind) -> list[Shard]:
        """Shards whose `kind` file is not yet written."""
        return [s for s in self.shards if not s.done(kind)]

    def complete(self, kind: Kind) -> bool:
        return not self.pending(kind)

    def iter_records(self, kind: Kind) -> Iterator[dict]:
        """Every record of `kind`, shard by shard, in order (streamed)."""
        for shard in self.shards:
            yield from iter_jsonl(shard.path(kind))

    def count_records(self, kind: Kind) -> int:
        return sum(count_lines(s.path(kind)) for s in self.shards if s.done(kind))

    def to_dict(self) -> dict[str, Any]:
        return {"shard_size": self.shard_size, "count": self.count, "problems": self.problems}

    @classmethod
    def load(cls, root: str | Path) -> ShardPlan | None:
        """The plan saved in `root`, or None when the shard set was never (completely) planned."""
        path = Path(root) / PLAN
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(Path(root), int(data["shard_size"]), int(data["count"]), int(data["problems"]))


def plan_shards(problems: Iterable[Mapping[str, Any]], root: str | Path, shard_size: int) -> ShardPlan:
    """Cut `problems` into problem shard files under `root` and save the plan; reuse an existing one.

    The plan file is written after every problem shard, so a set killed while being planned is
    planned again from the start. An existing plan with another shard size is refused.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    root = Path(root)
    existing = ShardPlan.load(root)
    if existing is not None:
        if existing.shard_size != shard_size:
            raise ValueError(
                f"{root / PLAN}: planned with shard_size {existing.shard_size}, not {shard_size}"
            )
        return existing
    count = total = 0
    writer: JsonlWriter | None = None
    try:
        for problem in problems:
            if total % shard_size == 0:
                if writer is not None:
                    writer.__exit__(None, None, None)
                writer = JsonlWriter(Shard(root, count).problems).__enter__()
                count += 1
            writer.write(problem)  # type: ignore[union-attr]
            total += 1
    except BaseException as exc:
        if writer is not None:
            writer.__exit__(type(exc), exc, exc.__traceback__)
        raise
    if writer is not None:
        writer.__exit__(None, None, None)
    plan = ShardPlan(root, shard_size, count, total)
    atomic_write_json(root / PLAN, plan.to_dict())
    return plan


def group_by_problem(records: Iterable[Mapping[str, Any]]) -> Iterator[tuple[str, list[Mapping[str, Any]]]]:
    """(id, records) for each run of consecutive records with the same `id` (one problem's samples)."""
    current: str | None = None
    group: list[Mapping[str, Any]] = []
    for record in records:
        if record["id"] != current and group:
            yield current, group  # type: ignore[misc]
            group = []
        current = record["id"]
        group.append(record)
    if group:
        yield current, group  # type: ignore[misc]
