"""End-to-end rounds of `python -m sdp.round` on the tiny model with real vLLM on CPU.

Every run is a child process, as in production. The reference run (baseline + round 1) is
shared by the tests of this module; the kill test SIGKILLs a run inside each stage in turn,
resumes it, and must end with exactly the reference's files and weights.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import round_args

REPO = Path(__file__).resolve().parents[1]
# Enough optimizer steps, saved every 3, that a kill lands inside training and resumes from a checkpoint.
SFT = "{max_steps: -1, lr_scheduler_type: constant, num_train_epochs: 10, per_device_train_batch_size: 4, max_length: 128, logging_steps: 5, save_strategy: steps, save_steps: 3}"
STAGE_FILES = [
    "problems.jsonl",
    "samples.jsonl",
    "verdicts.jsonl",
    "sft.jsonl",
    "solve_rates.json",
    "eval.jsonl",
]

pytestmark = [pytest.mark.slow, pytest.mark.vllm]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _cmd(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "sdp.round", *args]


def run_round(args: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(_cmd(args), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def args_for(tiny_model, problem_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")

    def make(name: str, *extra: str) -> tuple[list[str], Path]:
        return round_args(tiny_model, problem_files, out, name, "--sft", SFT, *extra), out / name

    return make


@pytest.fixture(scope="module")
def reference(args_for) -> Path:
    args, run = args_for("reference")
    run_round(args)
    return run


def _metrics(run: Path, k: int) -> dict:
    return json.loads((run / f"round-{k}" / "metrics.json").read_text())


def _weights(checkpoint: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(checkpoint / "model.safetensors"))


def test_round_writes_the_documented_run_directory(reference, tiny_model, problem_files):
    r1 = reference / "round-1"
    for name in [*STAGE_FILES, "metrics.json", "checkpoint/config.json", "checkpoint/model.safetensors"]:
        assert (r1 / name).exists(), name
    for name in [
        "config.yaml",
        "manifest.json",
        "round-0/metrics.json",
        "summary/table.md",
        "summary/accuracy.png",
    ]:
        assert (reference / name).exists(), name
    assert not list(reference.rglob(".*tmp-*")), "temporary files left behind"
    m = _metrics(reference, 1)
    manifest = json.loads((reference / "manifest.json").read_text())
    assert manifest["round-1/sample"]["prefetched"] is True  # drawn by the baseline evaluation's engine
    verdicts = [json.loads(line) for line in (r1 / "verdicts.jsonl").open()]
    sft = [json.loads(line) for line in (r1 / "sft.jsonl").open()]
    assert m["round"] == 1 and m["problems"] == 14 and m["samples"] == 14 * 4 == len(verdicts)
    assert m["verified_ok"] == sum(v["verdict"]["ok"] is True for v in verdicts) > 0
    # The needle-less problem's 4 samples are unverifiable, and the math ones have verdicts too.
    assert m["unverifiable"] == sum(v["verdict"]["ok"] is None for v in verdicts) >= 4
    assert {v["id"] for v in verdicts if v["domain"] == "math"} == {f"m-{i}" for i in range(4)}
    assert 0 < m["kept"] == len(sft) <= m["verified_ok"]
    assert "t-nogold" not in {s["id"] for s in sft}
    assert all(s["prompt"].endswith("\n") for s in sft)  # the plain prompt template
    assert 0 < m["train_pass_rate"] < 1
    assert set(m["timings"]) == {"sample", "verify", "select", "train", "evaluate"}
    assert m["peak_rss_mb"] > 50
    assert set(m["eval"]) == {"all", "math", "tests.plugins:NeedleVerifier"}
    assert m["eval"]["all"]["problems"] == 6 and m["eval"]["all"]["k"] == 4
    base = _metrics(reference, 0)
    assert base["round"] == 0 and set(base["eval"]) == set(m["eval"])
    # Training changed the weights; the base model is untouched.
    trained, original = _weights(r1 / "checkpoint"), _weights(tiny_model)
    assert any(not (trained[k] == original[k]).all() for k in original)
    table = (reference / "summary" / "table.md").read_text()
    assert "| 0 (base) |" in table and "| 1 |" in table


def test_rerun_is_a_no_op_and_next_round_continues_from_the_checkpoint(reference, args_for, tmp_path):
    copy = tmp_path / "reference"
    shutil.copytree(reference, copy)  # a moved run directory still resumes (paths are run-relative)
    args, _ = args_for("reference")
    args[args.index("--output_dir") + 1] = str(tmp_path)
    manifest = (copy / "manifest.json").read_text()
    run_round(args)
    assert (copy / "manifest.json").read_text() == manifest
    proc = subprocess.run(_cmd([*args, "--round", "3"]), cwd=REPO, env=_env(), capture_output=True, text=True)
    assert proc.returncode != 0 and "cannot run round 3: earlier round(s) [2]" in proc.stderr
    run_round([*args, "--rounds", "2"])
    m2 = _metrics(copy, 2)
    assert json.loads((copy / "manifest.json").read_text())["round-2/sample"]["prefetched"] is False
    assert m2["sampler_model"] == str(copy / "round-1" / "checkpoint")
    assert m2["model"] == str(copy / "round-2" / "checkpoint")
    assert "| 2 |" in (copy / "summary" / "table.md").read_text()


def test_changed_settings_are_refused_for_an_existing_run(reference, args_for, tmp_path):
    copy = tmp_path / "reference"
    shutil.copytree(reference, copy)
    args, _ = args_for("reference")
    args[args.index("--output_dir") + 1] = str(tmp_path)
    proc = subprocess.run(_cmd([*args, "--seed", "5"]), cwd=REPO, env=_env(), capture_output=True, text=True)
    assert proc.returncode != 0 and "different configuration" in proc.stderr


def _wait(proc: subprocess.Popen, condition, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"run ended (status {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_sigkill_inside_each_stage_then_resume_matches_uninterrupted_run(reference, args_for):
    args, run = args_for("killed")
    r1 = run / "round-1"

    def manifest() -> dict:
        path = run / "manifest.json"
        return json.loads(path.read_text()) if path.exists() else {}

    # (stage that must be interrupted, condition that means it is running)
    r0 = run / "round-0"
    # (stage that must be interrupted, condition that means it is running). Round 1's candidates are
    # drawn by the baseline evaluation's sampler (same model, one engine start), so killing that
    # sampler is the kill inside sampling.
    kill_points = [
        ("round-0/evaluate", lambda: (r0 / "eval_sample.job.json").exists()),
        ("round-1/verify", lambda: "round-1/sample" in manifest()),
        ("round-1/select", lambda: "round-1/verify" in manifest()),
        ("round-1/train", lambda: (r1 / "trainer" / "checkpoint-3").exists()),
        ("round-1/evaluate", lambda: (r1 / "eval_sample.job.json").exists()),
    ]
    interrupted = []
    for stage, running in kill_points:
        proc = subprocess.Popen(
            _cmd(args), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait(proc, running, f"stage {stage}")
        os.kill(proc.pid, signal.SIGKILL)  # the round only: its stage child must die with it
        proc.wait()
        time.sleep(0.5)
        if stage not in manifest():
            interrupted.append(stage)
        if stage == "round-0/evaluate":
            assert not (r1 / "samples.prefetch.json").exists()
    # Sampling, training and evaluation run for seconds in a child, so the kill always lands inside them;
    # verify and select may already have finished when the kill arrives.
    assert {"round-0/evaluate", "round-1/train", "round-1/evaluate"} <= set(interrupted)
    run_round(args)
    info = manifest()["round-1/train"]
    assert info["resumed_from"] and "checkpoint-" in info["resumed_from"]
    for name in STAGE_FILES:
        assert (r1 / name).read_text() == (reference / "round-1" / name).read_text(), name
    got, want = _weights(r1 / "checkpoint"), _weights(reference / "round-1" / "checkpoint")
    assert got.keys() == want.keys()
    for key in want:
        assert (got[key] == want[key]).all(), key
    m, ref = _metrics(run, 1), _metrics(reference, 1)
    # train_loss is TRL's running average over the steps the last process ran, so it is not compared.
    for key in (
        "problems",
        "samples",
        "verified_ok",
        "wrong",
        "unverifiable",
        "kept",
        "train_pass_rate",
        "eval",
    ):
        assert m[key] == ref[key], key
    assert not list(run.rglob(".*tmp-*"))


def test_hf_backend_round(args_for):
    args, run = args_for("hf", "--backend", "hf", "--sft", "{max_steps: -1, num_train_epochs: 1, per_device_train_batch_size: 8, save_strategy: 'no'}")
    proc = run_round(args)
    m = _metrics(run, 1)
    assert m["samples"] == 56 and m["kept"] > 0
    assert (run / "round-1" / "checkpoint" / "model.safetensors").exists()
    assert "(hf)" in proc.stderr


def test_round_without_verified_traces_keeps_the_previous_model(args_for, tiny_model):
    args, run = args_for("nothing-kept", "--verifier", "tests.plugins:RejectVerifier")
    run_round(args)
    m = _metrics(run, 1)
    assert m["verified_ok"] == 0 and m["kept"] == 0 and m["train_loss"] is None
    assert m["model"] == str(tiny_model) and not (run / "round-1" / "checkpoint").exists()
    assert m["eval"]["all"]["pass@1"] == 0.0
