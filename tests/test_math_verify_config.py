"""The round config's `math_verify` section reaches every math verdict; `luck_check` turns the luck pass off.

One trace with a false step and a right answer (`2 + 2 = 5, so \\boxed{4}`): the default step check rejects
it, `math_verify: {step_check: off}` in a round's YAML keeps it, in the verify stage (in-process and in
worker processes), in Ray's per-shard task, in the sampler's waves' spec and in the luck pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sdp.config import RoundConfig, parse_config
from sdp.jsonl import atomic_write_jsonl, read_jsonl
from sdp.launch.ray_executor import _verify_shard
from sdp.round_budget import budget_spec
from sdp.round_stages import luck_stage, round_metrics
from sdp.rundir import RunDir
from sdp.shards import plan_shards
from sdp.stages.budget_plan import BudgetSpec
from sdp.stages import verify as verify_stage
from sdp.stages.verify import Verification
from verifiers.math_verifier import FALSE_STEP

LUCKY = "2 + 2 = 5, so the answer is \\boxed{4}."


def _yaml_config(tmp_path: Path, text: str) -> RoundConfig:
    path = tmp_path / "round.yaml"
    path.write_text(text)
    return parse_config(["--config", str(path), "--verify_workers", "1"])


def _records(n: int) -> list[dict]:
    return [{"id": f"p{i}", "domain": "math", "answer": "4", "completion": LUCKY} for i in range(n)]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_yaml_value_reaches_the_verify_stage_verdicts(tmp_path: Path, workers: int, monkeypatch) -> None:
    off = _yaml_config(tmp_path, "math_verify: {step_check: off}\n")
    off.verify_workers = workers
    default = RoundConfig(verify_workers=workers)
    monkeypatch.setattr(verify_stage, "_LIGHT_IN_PROCESS", 8)  # with workers 2, most records go to the pool
    records = _records(70)
    with Verification.for_config(off) as v:
        kept = list(v.verdicts(records))
    with Verification.for_config(default) as v:
        rejected = list(v.verdicts(records))
    assert all(r["ok"] is True for r in kept)
    assert all(r["ok"] is False and r["reason"].startswith(FALSE_STEP) for r in rejected)


def test_flag_mode_from_the_command_line_keeps_ok_and_flags() -> None:
    cfg = parse_config(["--math_verify", "{step_check: flag}", "--verify_workers", "1"])
    with Verification.for_config(cfg) as v:
        (verdict,) = v.verdicts(_records(1))
    assert verdict["ok"] is True and verdict["flags"] == [f"{FALSE_STEP}: 2 + 2 = 5"]


def test_the_sampler_waves_carry_the_options(tmp_path: Path) -> None:
    cfg = _yaml_config(tmp_path, "math_verify: {step_check: off}\nsampling_budget: adaptive\n")
    spec = BudgetSpec.from_dict(budget_spec(cfg, problems=3))  # what the sample job carries to the sampler
    with Verification.for_config(spec) as v:
        (verdict,) = v.verdicts(_records(1))
    assert verdict["ok"] is True


def _shards(root: Path, golds: list[str], completions: list[str]):
    problems = [{"id": f"p{i}", "domain": "math", "prompt": f"Problem {i}?", "answer": g} for i, g in enumerate(golds)]
    plan = plan_shards(problems, root, shard_size=len(problems))
    (shard,) = plan.shards
    rows = [{"id": f"p{i}", "domain": "math", "sample_index": 0, "completion": c, "finish_reason": "stop"}
            for i, c in enumerate(completions)]  # fmt: skip
    atomic_write_jsonl(shard.samples, rows)
    return plan, shard


def test_the_ray_task_uses_the_options(tmp_path: Path) -> None:
    # The function each Ray verification task runs (sdp.launch.ray_executor.verify_on_ray passes them on).
    _, shard = _shards(tmp_path / "off", ["4"], [LUCKY])
    _verify_shard(str(shard.root), shard.index, None, 5.0, False, {"step_check": "off"})
    assert [r["verdict"]["ok"] for r in read_jsonl(shard.verdicts)] == [True]
    _, shard = _shards(tmp_path / "default", ["4"], [LUCKY])
    _verify_shard(str(shard.root), shard.index, None, 5.0, False)
    assert [r["verdict"]["ok"] for r in read_jsonl(shard.verdicts)] == [False]


def _luck_run(tmp_path: Path, cfg: RoundConfig):
    run = RunDir(tmp_path / "run")
    # p0's completion withdraws the 7 it states; against p0's shuffled gold (p1's 7) it passes only when
    # withdrawals are not honoured. p1's "\boxed{1}" passes against neither gold.
    plan, shard = _shards(run.round_dir(1), ["5", "7"], ["The answer is 7. Wait, that's wrong.", "\\boxed{1}"])
    with Verification.for_config(cfg) as v:
        v.verify_shard(shard)
    return run, plan


@pytest.mark.parametrize(("section", "shuffled_ok"), [("", 0), ("math_verify: {withdrawals: false}\n", 1)])
def test_the_luck_pass_uses_the_options(tmp_path: Path, section: str, shuffled_ok: int) -> None:
    cfg = _yaml_config(tmp_path, section + "max_per_problem: 1\n")
    run, plan = _luck_run(tmp_path, cfg)
    luck = luck_stage(run, cfg, 1, plan)["luck"]
    assert luck["checked"] == 2 and luck["shuffled_ok"] == shuffled_ok


def test_luck_check_false_skips_the_pass(tmp_path: Path) -> None:
    cfg = _yaml_config(tmp_path, "luck_check: false\n")
    run, plan = _luck_run(tmp_path, cfg)
    assert luck_stage(run, cfg, 1, plan) == {}
    assert not run.done(1, "luck")
    stage = {"seconds": 1.0, "peak_rss_mb": 1.0}
    infos = {
        "sample": {**stage, "sampler_model": "m", "problems": 2, "samples": 2},
        "verify": {**stage, "ok": 0, "wrong": 2, "unverifiable": 0},
        "select": {**stage, "duplicates": 0, "kept": 0, "problems_solved": 0, "train_pass_rate": 0.0},
        "train": {**stage, "checkpoint": "ckpt"},
        "evaluate": {**stage, "eval": {}},
    }
    metrics = round_metrics(run, cfg, 1, infos)
    assert "luck" not in metrics and "luck" not in metrics["timings"]
