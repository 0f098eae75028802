"""Round planning and run-directory bookkeeping, without models."""

from __future__ import annotations

import json

import pytest

from sdp.config import RoundConfig
from sdp.round import next_round_task, plan_rounds
from sdp.round_stages import policy
from sdp.rundir import RunDir, atomic_replace_dir, atomic_write_jsonl, fresh_tmp_dir
from sdp.shards import ShardPlan

TRAIN = [{"id": f"p{i}", "domain": "math", "prompt": "q", "answer": "1"} for i in range(5)]


def _complete(run: RunDir, k: int) -> None:
    run.mark_done(k, "train", {"checkpoint": f"@run/round-{k}/checkpoint"})
    run.mark_done(k, "metrics", {})


def test_plan_rounds_resumes_and_checks_order(tmp_path):
    run = RunDir(tmp_path / "r")
    assert plan_rounds(run, RoundConfig(rounds=3)) == [1, 2, 3]
    _complete(run, 1)
    run.mark_done(2, "sample", {})  # round 2 unfinished: it is next
    assert plan_rounds(run, RoundConfig(rounds=3)) == [2, 3]
    assert plan_rounds(run, RoundConfig(rounds=1)) == []
    assert plan_rounds(run, RoundConfig(round=2)) == [2]
    with pytest.raises(SystemExit, match=r"earlier round\(s\) \[2\]"):
        plan_rounds(run, RoundConfig(round=3))
    # The manifest survives a restart, and checkpoints resolve inside the run directory.
    again = RunDir(tmp_path / "r")
    assert again.completed_rounds() == [1]
    assert policy(again, RoundConfig(model="base"), 1) == str(tmp_path / "r" / "round-1" / "checkpoint")
    assert policy(again, RoundConfig(model="base"), 0) == "base"


def test_next_round_candidates_are_drawn_early_only_for_self_distillation(tmp_path):
    run = RunDir(tmp_path / "r")
    cfg = RoundConfig(max_train_problems=3, shard_size=2)
    task = next_round_task(run, cfg, 0, [1, 2], TRAIN)
    assert task.seed_tag == "train-1" and task.shards == str(tmp_path / "r" / "round-1")
    plan = ShardPlan.load(task.shards)
    assert (plan.problems, plan.count) == (3, 2)
    ids = [p["id"] for p in plan.iter_records("problems")]
    assert set(ids) < {p["id"] for p in TRAIN} and ids == sorted(ids)  # a subset, in the pool's order
    assert next_round_task(run, cfg, 2, [1, 2], TRAIN) is None  # round 3 is not planned
    assert next_round_task(run, RoundConfig(teacher_model="teacher"), 0, [1], TRAIN) is None
    run.mark_done(1, "sample", {})
    assert next_round_task(run, cfg, 0, [1], TRAIN) is None  # already sampled


def test_atomic_writes_leave_no_partial_files(tmp_path):
    path = tmp_path / "a.jsonl"
    assert atomic_write_jsonl(path, [{"b": 1, "a": 2}]) == 1
    assert json.loads(path.read_text()) == {"a": 2, "b": 1}
    work = fresh_tmp_dir(tmp_path, "ckpt")
    (work / "w").write_text("1")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "old").write_text("0")
    atomic_replace_dir(work, tmp_path / "ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "ckpt"]
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["w"]
