"""Fail early and clearly (issue 26): bad settings stop `python -m sdp.round` at start-up, in one line naming
the field, before anything is sampled; a refused resume names the fields that differ.

The command-line cases run the real command in a subprocess; they end in the preflight, before any model loads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from sdp.config import RoundConfig
from sdp.fieldcheck import FieldTypeError, check_section
from sdp.fingerprint import config_diff, first_stage
from sdp.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "data" / "model"


def run_round(args: list[str], out: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sdp.round", "--output_dir", str(out), "--name", "r", *args],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


def model_without(tmp_path: Path, *missing: str) -> str:
    """A copy of the default model directory lacking the files whose names start with `missing`."""
    path = tmp_path / "model"
    shutil.copytree(MODEL, path, ignore=lambda _d, names: [n for n in names if n.startswith(missing)])
    return str(path)


CASES = {
    "sft type": (["--sft", "{max_steps: five}"], "sft.max_steps: expected int, got 'five'", {}),
    "sampling type": (["--sampling", "{temperature: hot}"], "sampling.temperature: expected float, got 'hot'", {}),
    "eval_sampling key": (["--eval_sampling", "{temprature: 0.5}"],
                          "eval_sampling.temprature: not a field of vllm.SamplingParams (did you mean temperature?)",
                          {}),
    "lora type": (["--lora", "{r: big}"], "lora.r: expected int, got 'big'", {}),
    "engine context": (["--engine_args", "{max_model_len: 4096}"],
                       "engine_args.max_model_len: 4096 is beyond the context of model", {}),
    "sft context": (["--sft", "{max_length: 4096}"], "sft.max_length: 4096 is beyond the context of model", {}),
    "hub id offline": (["--model", "nonexistent-org/nonexistent-sdp-model"],
                       "model: 'nonexistent-org/nonexistent-sdp-model' is not a local directory", {"HF_HUB_OFFLINE": "1"}),
    "no weights": (["--model", "NO:model.safetensors"], "model: MODEL has no weights", {}),
    "no tokenizer": (["--model", "NO:tokenizer"], "model: MODEL has no tokenizer", {}),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_setting_fails_in_preflight_naming_the_field(case, tmp_path):
    args, message, env = CASES[case]
    args = [model_without(tmp_path, a[3:]) if a.startswith("NO:") else a for a in args]
    message = message.replace("MODEL", str(tmp_path / "model"))
    proc = run_round(args, tmp_path / "runs", env)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), proc.stderr[-3000:]  # the field first
    assert "Traceback" not in proc.stderr
    run = tmp_path / "runs" / "r"
    # Nothing was sampled or evaluated, and no settings were recorded: the fixed command is not refused.
    assert not (run / "round-0").exists() and not (run / "round-1").exists()
    assert not (run / "config.fingerprint.json").exists() and not (run / "manifest.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max_trian_problems", "3"], "error: unknown option --max_trian_problems (did you mean --max_train_problems?)"),
        (["--max_train_problem", "3"], "error: unknown option --max_train_problem (did you mean --max_train_problems?)"),
        (["--config", "BAD"], "unknown key 'max_trian_problems' (did you mean max_train_problems?)"),
        (["--launcher", "process", "--num_processes", "2"], "num_processes 2 needs launcher: accelerate"),
        (["--math_verify", "{step_chek: flag}"],
         "error: math_verify.step_chek: not a field of verifiers.MathVerifyConfig (did you mean step_check?)"),
    ],
    ids=["typo", "prefix", "yaml key", "launcher", "math_verify key"],
)
def test_command_line_names_are_exact(args, message, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rounds: 1\nmax_trian_problems: 3\n")
    proc = run_round([str(bad) if a == "BAD" else a for a in args], tmp_path / "runs")
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs" / "r").exists()


def test_help_names_the_command_and_config():
    proc = subprocess.run([sys.executable, "-m", "sdp.round", "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: python -m sdp.round")
    assert "--config FILE.yaml" in proc.stdout


@dataclass
class _Section:
    steps: int = 1
    rate: float = 0.1
    flag: bool = False
    name: str | None = None
    mode: Literal["a", "b"] = "a"
    stops: list[str] = field(default_factory=list)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"steps": 5, "rate": 1, "flag": True, "name": None, "mode": "b", "stops": ["x"]}, None),
        ({"steps": "five"}, "s.steps: expected int, got 'five'"),
        ({"steps": True}, "s.steps: expected int, got True"),
        ({"rate": "1e-5"}, "s.rate: expected float, got '1e-5' (YAML reads 1e-5 as a string: write 1.0e-5)"),
        ({"flag": "yes"}, "s.flag: expected bool, got 'yes'"),
        ({"mode": "c"}, "s.mode: expected one of 'a', 'b', got 'c'"),
        ({"stops": [1]}, "s.stops: expected list[str], got [1]"),
        ({"step": 1}, "s.step: not a field of tests._Section (did you mean steps?)"),
    ],
)
def test_check_section(values, message):
    if message is None:
        check_section("s", _Section, values)
        return
    with pytest.raises(FieldTypeError) as info:
        check_section("s", _Section, values)
    assert str(info.value) == message


def test_refused_resume_names_the_fields_and_the_stage(tmp_path):
    from sdp.round import check_run_config, save_run_config

    run = RunDir(tmp_path / "run")
    old = RoundConfig(sampling={**RoundConfig().sampling, "n": 4})
    save_run_config(run, old)
    assert check_run_config(run, RoundConfig()) is None  # no stage done yet: nothing to mix, not refused
    run.mark_done(1, "sample", {})
    with pytest.raises(SystemExit) as info:
        check_run_config(run, RoundConfig())
    text = str(info.value)
    assert "sampling.n: 4 -> 8" in text and "re-run from sample" in text


@pytest.mark.parametrize(
    ("old", "new", "stage"),
    [
        ({"sft": {"max_steps": 3}}, {"sft": {"max_steps": 4}}, "train"),
        ({"eval_sampling": {"n": 4}, "eval_k": 4}, {"eval_sampling": {"n": 8}, "eval_k": 8}, "evaluate"),
        ({"max_per_problem": 1, "lora": None}, {"max_per_problem": 2, "lora": {"r": 4}}, "select"),
        ({"sampling": {"n": 4}, "sft": {}}, {"sampling": {"n": 8}, "sft": {"bf16": True}}, "sample"),
    ],
)
def test_first_stage_a_change_reaches(old, new, stage):
    assert first_stage(name for name, _ in config_diff(old, new)) == stage


def test_ctrl_c_says_how_to_resume(monkeypatch, capsys):
    import sdp.round

    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(sdp.round, "run_all", interrupted)
    with pytest.raises(SystemExit) as info:
        sdp.round.main(["--rounds", "1"])
    assert info.value.code == 130
    assert "interrupted; run the same command to resume" in capsys.readouterr().err

