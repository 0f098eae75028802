"""Resume after a fixed setting (issue 26): changing only what a later stage uses re-runs from that stage and
keeps the samples and verdicts; `sdp.round.check_run_config` decides, `apply_rewind` forgets the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdp.config import RoundConfig
from sdp.round import apply_rewind, check_run_config, save_run_config
from sdp.rundir import RunDir

STAGES = ("sample", "verify", "select", "train", "evaluate", "metrics")
FILES = ("samples/shard-00000.jsonl", "verdicts/shard-00000.jsonl", "sft.jsonl", "solve_rates.json",
         "checkpoint/model.safetensors", "train_stats.json", "eval/samples/shard-00000.jsonl", "metrics.json")


def finished_run(root: Path, cfg: RoundConfig, rounds: int = 2) -> RunDir:
    """A run directory as two finished rounds leave it (a baseline, then every stage and file of each round)."""
    run = RunDir(root)
    save_run_config(run, cfg)
    for name in ("eval/samples/shard-00000.jsonl", "metrics.json"):
        (run.round_dir(0) / name).parent.mkdir(parents=True, exist_ok=True)
        (run.round_dir(0) / name).write_text("{}\n")
    run.mark_done(0, "evaluate", {})
    run.mark_done(0, "metrics", {})
    for k in range(1, rounds + 1):
        for name in FILES:
            path = run.round_dir(k) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}\n")
        for stage in STAGES:
            run.mark_done(k, stage, {})
    return run


def state(root: Path) -> tuple[set[str], set[str]]:
    run = RunDir(root)
    files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.parent != root}
    return set(run.manifest), files


def _round(k: int, stages=STAGES, files=FILES) -> tuple[set[str], set[str]]:
    return {f"round-{k}/{s}" for s in stages}, {f"round-{k}/{f}" for f in files}


BASELINE = ({"round-0/evaluate", "round-0/metrics"}, {"round-0/eval/samples/shard-00000.jsonl", "round-0/metrics.json"})
KEPT_TO_SELECT = _round(1, STAGES[:3], FILES[:4])  # samples, verdicts and the SFT set


@pytest.mark.parametrize(
    ("change", "teacher", "stage", "kept"),
    [
        ({"sft": {**RoundConfig().sft, "max_steps": 5}}, None, "train", [BASELINE, KEPT_TO_SELECT]),
        ({"lora": {"r": 4}}, "data/model", "train", [BASELINE, KEPT_TO_SELECT, _round(2, STAGES[:3], FILES[:4])]),
        ({"max_per_problem": 2}, None, "select", [BASELINE, _round(1, STAGES[:2], FILES[:2])]),
        ({"eval_sampling": {**RoundConfig().eval_sampling, "temperature": 0.5}}, None, "evaluate",
         [_round(1, STAGES[:4], FILES[:6]),
          _round(2, STAGES[:4], FILES[:6])]),
    ],
    ids=["sft", "lora with a teacher", "selection", "eval sampling"],
)
def test_a_later_stage_setting_rewinds_to_that_stage(change, teacher, stage, kept, tmp_path):
    root = tmp_path / "run"
    finished_run(root, RoundConfig(teacher_model=teacher))
    fixed = RoundConfig(teacher_model=teacher, **change)
    run = RunDir(root)
    assert check_run_config(run, fixed) == stage
    apply_rewind(run, fixed, stage)
    keys, files = set(), set()
    for k, f in kept:
        keys |= k
        files |= f
    assert state(root) == (keys, files)


def test_a_sampling_setting_is_refused_and_nothing_is_removed(tmp_path):
    root = tmp_path / "run"
    finished_run(root, RoundConfig())
    before = state(root)
    with pytest.raises(SystemExit, match="sampling.temperature: 1.0 -> 0.5"):
        check_run_config(RunDir(root), RoundConfig(sampling={**RoundConfig().sampling, "temperature": 0.5}))
    assert state(root) == before
