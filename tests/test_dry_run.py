"""`--dry_run` (issue 26, item 6): the resolved config, one rendered prompt per domain, the problem counts and the
shard plan, then exit 0; no model is loaded into vLLM and nothing is written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def run(module: str, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})


def _section(text: str, title: str) -> str:
    """The lines of the report between `title:` and the next section's title."""
    body = text.split(f"\n{title}:\n", 1)[1]
    ends = [body.index(f"\n\n{t}:\n") for t in ("problems", "shard plan", "prompts (one per domain)")
            if f"\n\n{t}:\n" in body]
    return body[: min(ends)] if ends else body


def test_round_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    proc = run("sdp.round", ["--output_dir", str(tmp_path / "runs"), "--name", "d", "--max_train_problems", "5",
                             "--max_eval_problems", "3", "--shard_size", "2", "--rounds", "2",
                             "--prompt_template", "Q: {prompt}", "--dry_run"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    config = yaml.safe_load(_section(out, "resolved config"))
    assert config["max_train_problems"] == 5 and config["sampling"]["n"] == 8 and config["sft"]["max_steps"] == 300
    problems = _section(out, "problems")
    assert "training: 4850 (code: 850, math: 4000); max_train_problems 5 per round" in problems
    assert "held-out: 3 (" in problems
    plan = _section(out, "shard plan")
    assert "round 1: 5 training problems in 3 shards of 2, adaptive budget of 40 samples in waves of 2" in plan
    assert "round 2: 5 training problems in 3 shards of 2" in plan
    assert "held-out: 3 problems in 2 shards of 2, eval_sampling.n 8 -> 24 samples per evaluation" in plan
    prompts = out.split("\nprompts (one per domain):\n", 1)[1]
    assert prompts.count("\n--- ") + prompts.startswith("--- ") == 2
    assert "--- code (" in prompts and "--- math (" in prompts and "\nQ: " in prompts
    assert "Loading safetensors checkpoint" not in proc.stderr and "sdp.stages.sample" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_evaluate_dry_run_shows_only_the_evaluation(tmp_path):
    proc = run("sdp.evaluate", ["--output_dir", str(tmp_path / "runs"), "--name", "e", "--max_eval_problems", "4",
                                "--dry_run"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = yaml.safe_load(_section(proc.stdout, "resolved config"))
    assert "sft" not in config and "train_problems" not in config and config["max_eval_problems"] == 4
    assert _section(proc.stdout, "shard plan").strip().startswith("held-out: 4 problems in 1 shards of 256")
    assert not (tmp_path / "runs").exists()
