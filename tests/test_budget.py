"""The adaptive sampling budget: the pure wave planner's accounting, and the waves on a real engine
(seeded, the fixed sampler's candidates, resumable after a SIGKILL with byte-identical files)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sdp.shards import plan_shards
from sdp.stages.budget_plan import BudgetSpec, ProblemState, allowance, observe, plan_rationalize, plan_wave
from tests.conftest import NEEDLE, TINY_ENGINE_ARGS, needle_problems

REPO = Path(__file__).resolve().parents[1]


def _states(n: int, gold: bool = True) -> dict[str, ProblemState]:
    return {f"p{i}": ProblemState(i, i // 4, gold) for i in range(n)}


def _simulate(spec: BudgetSpec, solve_p: dict[str, float], seed: int = 0):
    """Run the planner against a fake verifier; return the states and each wave's draws."""
    rng = random.Random(seed)
    states = _states(len(solve_p))
    used_s = used_t = 0
    waves, capped = [], []
    for wave in range(1000):
        draws = plan_wave(states, spec, wave, used_s, used_t)
        if not draws:
            break
        waves.append(draws)
        capped.append({pid for pid, s in states.items() if s.distinct >= spec.max_per_problem})
        for pid, (first, count) in draws.items():
            assert first == states[pid].drawn  # sample indices continue where the problem stopped
            for j in range(first, first + count):
                tokens = rng.randint(1, spec.max_tokens)
                ok = rng.random() < solve_p[pid]
                observe(states[pid], {"sample_index": j, "completion_tokens": tokens},
                        f"{pid}-{j}".encode() if ok else None)
                used_s, used_t = used_s + 1, used_t + tokens
    return states, waves, capped, used_s, used_t


@pytest.mark.parametrize("budget_samples,budget_tokens", [(None, None), (200, None), (None, 900), (150, 700)])
def test_wave_accounting_caps_budgets_and_stops_solved_problems(budget_samples, budget_tokens):
    spec = BudgetSpec(wave_n=3, max_n=10, budget_samples=budget_samples, budget_tokens=budget_tokens,
                      max_tokens=8, max_per_problem=2)
    solve_p = {f"p{i}": [0.0, 0.1, 0.5, 0.9][i % 4] for i in range(40)}
    states, waves, capped, used_s, used_t = _simulate(spec, solve_p)
    assert all(s.drawn <= spec.max_n for s in states.values())
    if budget_samples is not None:
        assert used_s <= budget_samples
    if budget_tokens is not None:
        assert used_t <= budget_tokens
    # It stops only when a budget is spent or nothing is left to sample.
    assert ((budget_tokens is not None and budget_tokens - used_t < spec.max_tokens)
            or used_s == budget_samples
            or all(s.distinct >= 2 or s.drawn >= spec.max_n for s in states.values()))
    # A problem with its cap of distinct verified traces gets nothing in any later wave.
    assert len(waves) > 1
    for draws, done in zip(waves, capped, strict=True):
        assert not done & set(draws)
    never = [pid for pid, p in solve_p.items() if p == 0.0]
    if budget_samples is None and budget_tokens is None:
        assert all(states[pid].drawn == spec.max_n for pid in never)  # unsolved ones get the whole max_n


def test_solved_problem_is_not_drawn_again():
    spec = BudgetSpec(wave_n=2, max_n=8, max_per_problem=1)
    states = _states(3)
    observe(states["p0"], {"sample_index": 1, "completion_tokens": 3}, b"x")
    states["p1"].drawn = states["p2"].drawn = 2
    assert plan_wave(states, spec, 1, 6, 0) == {"p1": (2, 2), "p2": (2, 2)}


def test_a_tight_budget_goes_to_the_unsolved_problems_first():
    spec = BudgetSpec(wave_n=2, max_n=8, max_per_problem=2, budget_samples=13)
    states = _states(4)
    for pid in states:
        states[pid].drawn = 2
    observe(states["p0"], {"sample_index": 0}, b"a")  # 1 distinct: still active, but served after unsolved
    assert plan_wave(states, spec, 1, 8, 0) == {"p1": (2, 2), "p2": (2, 2), "p3": (2, 1)}
    assert plan_wave(states, spec, 1, 13, 0) == {}


def test_token_allowance_never_lets_a_wave_pass_the_budget():
    assert allowance(None, 100, 0, 0, 16) == 6
    assert allowance(None, 100, 0, 90, 16) == 0
    assert allowance(10, 1000, 7, 0, 16) == 3
    assert allowance(None, None, 5, 5, 16) is None


def test_fixed_mode_is_one_wave_of_n():
    spec = BudgetSpec(mode="fixed", wave_n=8, max_n=8)
    states = _states(3)
    assert plan_wave(states, spec, 0, 0, 0) == {pid: (0, 8) for pid in states}
    assert plan_wave(states, spec, 1, 24, 0) == {}


def test_rationalize_reserve_and_the_hint_pass_eligibility():
    spec = BudgetSpec(wave_n=2, max_n=4, budget_samples=20, rationalize=True, rationalize_n=3,
                      rationalize_reserve=0.25)
    assert spec.wave_limits() == (15, None)
    states = _states(5)
    states["p4"].has_gold = False
    for pid in ("p0", "p1", "p2", "p4"):
        states[pid].drawn = 4
    observe(states["p0"], {"sample_index": 0}, b"a")
    # p0 solved, p3 never sampled (not failed), p4 has no gold: p1 and p2 are hinted, within the 20.
    assert plan_rationalize(states, spec, 16, 0) == {"p1": (4, 3), "p2": (4, 1)}
    fixed = BudgetSpec(mode="fixed", wave_n=4, max_n=4, rationalize=True, rationalize_n=3)
    assert plan_rationalize(states, fixed, 10**6, 10**9) == {"p1": (4, 3), "p2": (4, 3)}  # no budget in fixed
    assert plan_rationalize(states, BudgetSpec(), 0, 0) == {}


# -- on a real engine ---------------------------------------------------------------------------------

SAMPLING = {"n": 4, "temperature": 1.0, "max_tokens": 12}


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and p.name != "job.json"}


def _spec() -> BudgetSpec:
    return BudgetSpec(wave_n=2, max_n=6, budget_samples=40, max_tokens=12, verifier=NEEDLE, verify_workers=1)


@pytest.mark.vllm
def test_adaptive_waves_are_seeded_draw_the_fixed_candidates_and_resume_after_sigkill(vllm_engine, tiny_model,
                                                                                       tmp_path):
    from sdp.jsonl import read_jsonl
    from sdp.stages.budget import run_budget
    from sdp.stages.sample import SampleJob, SampleTask, sample_vllm

    problems = needle_problems("t", 12, "aeiouq")
    spec = _spec()

    def task_for(root: Path) -> SampleTask:
        return SampleTask(str(plan_shards(problems, root, 5).root), SAMPLING, "train-1", {}, spec.to_dict())

    ref_task = task_for(tmp_path / "ref")
    from sdp.shards import ShardPlan

    summary = run_budget(vllm_engine, ShardPlan.load(ref_task.shards), ref_task, spec, 3, progress=False)
    ref = _tree(tmp_path / "ref")
    assert summary["samples"] <= 40 and summary["waves"] >= 2
    records = [r for name, _ in ref.items() if name.startswith("samples/") for r in read_jsonl(tmp_path / "ref" / name)]
    per_problem: dict[str, list[dict]] = {}
    for r in records:
        per_problem.setdefault(r["id"], []).append(r)
    verdicts = {(r["id"], r["sample_index"]): r["verdict"]["ok"]
                for name in ref if name.startswith("verdicts/") for r in read_jsonl(tmp_path / "ref" / name)}
    for pid, rs in per_problem.items():
        indices = [r["sample_index"] for r in rs]
        assert indices == list(range(len(rs))) and len(rs) <= spec.max_n  # unique, contiguous, capped
        first_ok = min((r["wave"] for r in rs if verdicts[(pid, r["sample_index"])]), default=None)
        if first_ok is not None:
            assert max(r["wave"] for r in rs) == first_ok  # solved: no later wave drew it
    # Sample j of a problem is the fixed sampler's sample j (n=6 here), whichever wave drew it.
    fixed = sample_vllm(vllm_engine, problems, {**SAMPLING, "n": 6}, seed=3, seed_tag="train-1", progress=False)
    by_index = {(r["id"], r["sample_index"]): r["completion"] for r in fixed}
    assert all(r["completion"] == by_index[(r["id"], r["sample_index"])] for r in records)

    # The sampler process, stopped (SDP_PAUSE) after 3 wave shard files and SIGKILLed, then run again.
    task = task_for(tmp_path / "killed")
    job = SampleJob(model=str(tiny_model), tasks=(task,), engine_args=TINY_ENGINE_ARGS, seed=3, progress=False)
    job_path = tmp_path / "killed" / "job.json"
    marker = tmp_path / "paused"
    from sdp.rundir import atomic_write_json

    atomic_write_json(job_path, job.to_dict())
    env = {**os.environ, "PYTHONPATH": str(REPO), "SDP_PAUSE": f"sample:3:{marker}"}
    cmd = [sys.executable, "-m", "sdp.stages.sample", str(job_path)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env)
    while not marker.exists() and proc.poll() is None:
        time.sleep(0.2)  # polling for the marker, not ordering by time
    assert marker.exists(), "the sampler exited before the pause point"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _tree(tmp_path / "killed")
    assert not (tmp_path / "killed" / "budget.json").exists() and any(k.startswith("waves/") for k in before)
    env.pop("SDP_PAUSE")
    subprocess.run(cmd, cwd=REPO, env=env, check=True, timeout=600)
    after = _tree(tmp_path / "killed")
    assert {k: after[k] for k in before if k.startswith("waves/")} == {k: v for k, v in before.items()
                                                                      if k.startswith("waves/")}
    assert after == ref
