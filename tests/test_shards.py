"""Shards, the one JSONL reader/writer, worker sizing and shard verification, without models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdp.jsonl import JsonlError, JsonlWriter, atomic_write_jsonl, dumps, iter_jsonl, read_jsonl
from sdp.launch import workers
from sdp.shards import Shard, ShardPlan, group_by_problem, plan_shards
from sdp.stages.verify import Verification

PROBLEMS = [{"id": f"p{i}", "domain": "math", "prompt": f"{i}+{i}?", "answer": str(2 * i)} for i in range(5)]


@pytest.mark.parametrize(
    "text",
    ["plain", "lone \udc80 surrogate", "\ud800", "C1 \x85 and DEL \x7f", "esc \x1b[31m", "nul \x00", "line\u2028sep"],
)
def test_jsonl_escapes_unsafe_text_and_reads_it_back_exactly(tmp_path: Path, text: str):
    path = tmp_path / "a.jsonl"
    assert atomic_write_jsonl(path, [{"reason": text}, {"reason": "ok"}]) == 2
    raw = path.read_bytes()
    decoded = raw.decode("utf-8")  # strict UTF-8
    assert all(ch.isprintable() or ch == "\n" for ch in decoded)
    assert read_jsonl(path) == [{"reason": text}, {"reason": "ok"}]
    assert dumps({"b": 1, "a": 2}) == '{"a": 2, "b": 1}'


def test_jsonl_writer_is_atomic_and_errors_name_file_and_line(tmp_path: Path):
    path = tmp_path / "out.jsonl"
    atomic_write_jsonl(path, [{"a": 1}])
    with pytest.raises(RuntimeError), JsonlWriter(path) as writer:
        writer.write({"a": 2})
        raise RuntimeError("killed half-way")
    assert read_jsonl(path) == [{"a": 1}] and [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    path.write_text('{"a": 1}\n\n{"a": \n')
    with pytest.raises(JsonlError, match=rf"{path}:3: invalid JSON"):
        list(iter_jsonl(path))
    path.write_text('{"a": 1}\n[1]\n')
    with pytest.raises(JsonlError, match=rf"{path}:2: expected a JSON object, got list"):
        list(iter_jsonl(path))


def test_plan_cuts_fixed_shards_in_order_and_is_reused(tmp_path: Path):
    plan = plan_shards(iter(PROBLEMS), tmp_path / "set", shard_size=2)
    assert (plan.count, plan.problems, plan.shard_size) == (3, 5, 2)
    assert [len(read_jsonl(s.problems)) for s in plan.shards] == [2, 2, 1]
    assert list(plan.iter_records("problems")) == PROBLEMS
    assert ShardPlan.load(tmp_path / "set") == plan
    assert plan.pending("samples") == plan.shards and not plan.complete("samples")
    stamp = plan.shards[0].problems.stat().st_mtime_ns
    assert plan_shards(PROBLEMS, tmp_path / "set", shard_size=2) == plan  # not rewritten
    assert plan.shards[0].problems.stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="planned with shard_size 2, not 3"):
        plan_shards(PROBLEMS, tmp_path / "set", shard_size=3)
    with pytest.raises(ValueError, match="shard_size must be >= 1"):
        plan_shards(PROBLEMS, tmp_path / "other", shard_size=0)


def test_a_plan_killed_while_being_written_is_planned_again(tmp_path: Path):
    def dying():
        yield from PROBLEMS[:3]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        plan_shards(dying(), tmp_path / "set", shard_size=2)
    assert ShardPlan.load(tmp_path / "set") is None  # no plan file: not trusted
    assert list(plan_shards(PROBLEMS, tmp_path / "set", 2).iter_records("problems")) == PROBLEMS


def test_group_by_problem_yields_runs_of_one_id():
    records = [{"id": "a"}, {"id": "a"}, {"id": "b"}, {"id": "a"}]
    assert [(pid, len(g)) for pid, g in group_by_problem(records)] == [("a", 2), ("b", 1), ("a", 1)]


def test_verify_shard_joins_samples_with_their_problems(tmp_path: Path):
    plan = plan_shards(PROBLEMS, tmp_path / "set", shard_size=3)
    for shard in plan.shards:
        samples = [
            {"id": p["id"], "domain": "math", "sample_index": i, "completion": f"\\boxed{{{2 * int(p['id'][1:]) + i}}}"}
            for p in read_jsonl(shard.problems)
            for i in range(2)
        ]
        atomic_write_jsonl(shard.samples, samples)
    with Verification(workers=1) as verification:
        done = [verification.verify_shard(s) for s in plan.pending("verdicts")]
    assert done == plan.shards and plan.complete("verdicts")
    verdicts = list(plan.iter_records("verdicts"))
    assert [v["verdict"]["ok"] for v in verdicts] == [True, False] * 5
    assert all("answer" not in v and "prompt" not in v for v in verdicts)  # problem fields stay in problems/


def test_verify_shard_names_a_sample_of_an_unknown_problem(tmp_path: Path):
    plan = plan_shards(PROBLEMS[:2], tmp_path / "set", shard_size=2)
    shard = plan.shards[0]
    atomic_write_jsonl(shard.samples, [{"id": "p0", "completion": "x"}, {"id": "zz", "completion": "x"}])
    with pytest.raises(ValueError, match=rf"{shard.samples}:2: field 'id': 'zz' is not in"), Verification(
        workers=1
    ) as verification:
        verification.verify_shard(shard)
    assert not shard.done("verdicts")


@pytest.mark.parametrize(
    ("affinity", "cpu_max", "expected"),
    [({0, 1, 2, 3}, None, 4), ({0, 1, 2, 3}, 1.5, 2), ({0, 1, 2, 3}, 0.2, 1), ({0}, 8.0, 1)],
)
def test_usable_cpus_respects_affinity_and_cgroup_quota(monkeypatch, affinity, cpu_max, expected):
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: affinity)
    monkeypatch.setattr(workers, "_cgroup_quota", lambda: cpu_max)
    assert workers.usable_cpus() == expected


def test_shard_is_a_plain_picklable_value(tmp_path: Path):
    import pickle

    shard = Shard(tmp_path, 3)
    assert pickle.loads(pickle.dumps(shard)) == shard
    assert shard.samples == tmp_path / "samples" / "shard-00003.jsonl"
    assert json.loads(json.dumps(ShardPlan(tmp_path, 2, 3, 5).to_dict())) == {"shard_size": 2, "count": 3, "problems": 5}
