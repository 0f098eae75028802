"""The luck pass (`sdp.stages.luck`): shuffled golds, kept false steps, distinct answers, its stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sdp.config import RoundConfig
from sdp.jsonl import atomic_write_jsonl
from sdp.round_stages import luck_stage, round_metrics
from sdp.rundir import RunDir
from sdp.shards import ShardPlan, plan_shards
from sdp.stages.luck import derangement, main, measure_luck
from sdp.stages.select import Selector
from sdp.stages.verify import Verification
from verifiers.math_verifier import MathVerifier, MathVerifyConfig


@pytest.mark.parametrize("n", [2, 3, 5, 10, 101])
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_derangement_is_a_seeded_permutation_without_fixed_points(n: int, seed: int) -> None:
    p = derangement(n, seed)
    assert sorted(p) == list(range(n))
    assert all(p[i] != i for i in range(n))
    assert derangement(n, seed) == p  # seeded: the same draw again


def test_derangement_depends_on_the_seed_and_has_none_below_two() -> None:
    assert len({tuple(derangement(10, seed)) for seed in range(5)}) > 1
    assert derangement(0, 0) == [] and derangement(1, 0) == []


def _plan(root: Path, problems: list[dict], completions: dict[str, list[str]], *, step_check: str = "reject",
          shard_size: int = 2) -> ShardPlan:  # fmt: skip
    """A round's shards with real math-verifier verdicts (code problems get a given ok=True verdict)."""
    math = MathVerifier(config=MathVerifyConfig(step_check=step_check))
    plan = plan_shards(problems, root, shard_size)
    for shard in plan.shards:
        rows = []
        for p in shard.load_problems().values():
            for i, completion in enumerate(completions[p["id"]]):
                if p["domain"] == "code":
                    verdict = {"ok": True, "reason": "passed", "answer": None}
                else:
                    verdict = math.verify(p, completion).to_dict()
                rows.append({"id": p["id"], "domain": p["domain"], "sample_index": i, "completion": completion,
                             "finish_reason": "stop", "verdict": verdict})  # fmt: skip
        atomic_write_jsonl(shard.verdicts, rows)
    return plan


def _measure(plan: ShardPlan, seed: int = 0, max_per_problem: int = 4) -> dict:
    with Verification(workers=1) as verification:
        return measure_luck(plan, verification, Selector(max_per_problem, grouped=True), seed=seed)


def _math(pid: str, answer: str) -> dict:
    return {"id": pid, "domain": "math", "prompt": f"Problem {pid}?", "answer": answer}


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_a_guess_of_2_passes_often_against_small_integer_golds(tmp_path: Path, seed: int) -> None:
    # Four of six golds are 2: whatever the derangement, exactly four problems receive a "2".
    golds = ["2", "2", "1", "2", "3", "2"]
    problems = [_math(f"m{i}", g) for i, g in enumerate(golds)]
    plan = _plan(tmp_path / f"r{seed}", problems, {p["id"]: ["So the answer is \\boxed{2}"] * 2 for p in problems})
    luck = _measure(plan, seed)
    assert luck["checked"] == 12 and luck["own_ok"] == 8
    assert luck["shuffled_ok"] == 8 and luck["shuffled_pass_rate"] == pytest.approx(8 / 12, abs=1e-6)
    assert luck["distinct_answers_per_problem"] == 1.0 and luck["problems"] == 6


def test_a_large_round_checks_at_most_max_checked_samples_evenly_spaced(tmp_path: Path) -> None:
    golds = ["2", "2", "1", "2", "3", "2"]
    problems = [_math(f"m{i}", g) for i, g in enumerate(golds)]
    plan = _plan(tmp_path, problems, {p["id"]: ["So the answer is \\boxed{2}"] * 2 for p in problems})
    with Verification(workers=1) as verification:
        luck = measure_luck(plan, verification, Selector(4, grouped=True), max_checked=5)
    # 12 samples, stride 3: samples 0, 3, 6, 9 are checked; distinct answers still count all 12.
    assert luck["checked"] == 4 and luck["problems"] == 6 and luck["distinct_answers_per_problem"] == 1.0


def test_unique_correct_answers_never_pass_a_shuffled_gold(tmp_path: Path) -> None:
    problems = [_math(f"m{i}", str(10 + i)) for i in range(5)]
    completions = {p["id"]: [f"5 + {int(p['answer']) - 5} = {p['answer']}. \\boxed{{{p['answer']}}}"] for p in problems}
    luck = _measure(_plan(tmp_path, problems, completions))
    assert luck["own_pass_rate"] == 1.0 and luck["shuffled_ok"] == 0 and luck["shuffled_pass_rate"] == 0.0
    assert luck["same_gold"] == 0 and luck["kept_checked"] == 5 and luck["kept_false_step"] == 0


def test_kept_false_steps_distinct_answers_and_skipped_domains(tmp_path: Path) -> None:
    problems = [
        _math("a", "4"),
        _math("b", "6"),
        {"id": "c", "domain": "code", "prompt": "write f", "tests": "assert f() == 1"},
        _math("d", "9"),
    ]
    completions = {
        "a": ["2 + 2 = 5, so \\boxed{4}", "\\boxed{3}", "\\boxed{4}", "no idea"],  # a false step, kept
        "b": ["2 * 3 = 6. \\boxed{6}"],  # a sound step, kept
        "c": ["def f():\n    return 1"],  # code: no answer to compare, skipped
        "d": ["\\boxed{1}", "\\boxed{2}"],
    }
    # The round ran with the step check off, so the false step was kept; the luck pass re-checks it.
    luck = _measure(_plan(tmp_path, problems, completions, step_check="off"))
    assert luck["checked"] == 7 and luck["problems"] == 3
    assert luck["kept_checked"] == 3 and luck["kept_false_step"] == 1
    assert luck["kept_false_step_share"] == pytest.approx(1 / 3, abs=1e-6)
    assert luck["distinct_answers_per_problem"] == pytest.approx((2 + 1 + 2) / 3, abs=1e-4)


def test_a_single_problem_of_a_domain_has_no_other_gold(tmp_path: Path) -> None:
    luck = _measure(_plan(tmp_path, [_math("a", "4")], {"a": ["\\boxed{4}"]}))
    assert luck["checked"] == 0 and luck["shuffled_pass_rate"] is None
    assert luck["kept_checked"] == 1 and luck["kept_false_step_share"] == 0.0  # kept traces are re-checked anyway


def test_a_verification_with_a_fixed_verifier_is_refused(tmp_path: Path) -> None:
    plan = _plan(tmp_path, [_math("a", "1"), _math("b", "2")], {"a": ["\\boxed{1}"], "b": ["\\boxed{1}"]})
    with Verification(verifier="math", workers=1) as verification, pytest.raises(ValueError, match="fixed verifier"):
        measure_luck(plan, verification, Selector(1, grouped=True))


def _stage_run(tmp_path: Path) -> tuple[RunDir, RoundConfig, ShardPlan]:
    run = RunDir(tmp_path / "run")
    problems = [_math(f"m{i}", g) for i, g in enumerate(["2", "2", "5"])]
    plan = _plan(run.round_dir(1), problems, {p["id"]: ["\\boxed{2}", "\\boxed{2}"] for p in problems})
    return run, RoundConfig(verify_workers=1, max_per_problem=1), plan


def test_the_luck_stage_is_recorded_and_reaches_metrics_and_timings(tmp_path: Path) -> None:
    run, cfg, plan = _stage_run(tmp_path)
    info = luck_stage(run, cfg, 1, plan)
    assert run.done(1, "luck") and info["seconds"] >= 0
    assert info["luck"]["checked"] == 6 and info["luck"]["kept_checked"] == 2
    stage = {"seconds": 1.0, "peak_rss_mb": 1.0}
    infos = {
        "sample": {**stage, "sampler_model": "m", "problems": 3, "samples": 6},
        "verify": {**stage, "ok": 4, "wrong": 2, "unverifiable": 0},
        "select": {**stage, "duplicates": 2, "kept": 2, "problems_solved": 2, "train_pass_rate": 0.67},
        "train": {**stage, "checkpoint": "ckpt"},
        "evaluate": {**stage, "eval": {}},
    }
    metrics = round_metrics(run, cfg, 1, infos)
    assert metrics["luck"] == info["luck"] and metrics["timings"]["luck"] == info["seconds"]
    assert luck_stage(run, cfg, 1, plan) == info  # done earlier: skipped, same record


def test_the_command_reads_a_finished_round_with_its_run_settings(tmp_path: Path, capsys) -> None:
    run, cfg, plan = _stage_run(tmp_path)
    (run.root / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    assert main([str(run.root), "--round", "1"]) == 0
    luck = json.loads(capsys.readouterr().out)
    assert luck == luck_stage(run, cfg, 1, plan)["luck"]
    assert main([str(run.root), "--round", "2"]) == 2
    (run.round_dir(1) / "metrics.json").write_text(json.dumps({"round": 1, "eval": {}}))
    assert main([str(run.root), "--round", "1", "--write"]) == 0
    assert json.loads((run.round_dir(1) / "metrics.json").read_text())["luck"] == luck
    assert "| 1 |" in (run.root / "summary" / "table.md").read_text()
