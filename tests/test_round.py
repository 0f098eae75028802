"""End-to-end rounds of `python -m sdp.round` on the tiny model with real vLLM on CPU.

Every run is a child process, as in production. The reference run (baseline + round 1, shards of
2 problems) is shared by the tests of this module; the kill tests SIGKILL a run inside each stage
in turn, and in the middle of sampling and of verification after some shards are done (stopped
there by the `SDP_PAUSE` hook), resume it, and must end with exactly the reference's files and
weights, without redoing the finished shards.
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

import psutil
import pytest

from tests.conftest import round_args

REPO = Path(__file__).resolve().parents[1]
# Enough optimizer steps, saved every 3, that a kill lands inside training and resumes from a checkpoint.
SFT = "{max_steps: -1, lr_scheduler_type: constant, num_train_epochs: 10, per_device_train_batch_size: 4, max_length: 128, logging_steps: 5, save_strategy: steps, save_steps: 3}"
SHARD_SIZE = "2"  # 14 training problems -> 7 shards; 6 held-out problems -> 3 shards
STAGE_FILES = ["sft.jsonl", "solve_rates.json"]
SHARD_DIRS = ["problems", "samples", "verdicts", "eval/problems", "eval/samples", "eval/verdicts"]


def stage_files(rdir: Path) -> dict[str, bytes]:
    """Every output of a round's data stages (shard files and the SFT set), by relative path."""
    files = {name: (rdir / name).read_bytes() for name in STAGE_FILES}
    for sub in SHARD_DIRS:
        files.update({f"{sub}/{p.name}": p.read_bytes() for p in sorted((rdir / sub).glob("shard-*.jsonl"))})
    return files


def _stamps(directory: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of each shard file: a shard that is redone gets a new file by atomic rename."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.glob("shard-*.jsonl")}

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
        args = round_args(tiny_model, problem_files, out, name, "--sft", SFT, "--shard_size", SHARD_SIZE, *extra)
        return args, out / name

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
    files = stage_files(r1)
    assert sum(name.startswith("verdicts/") for name in files) == 7
    assert sum(name.startswith("eval/verdicts/") for name in files) == 3
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
    verdicts = [json.loads(line) for p in sorted((r1 / "verdicts").glob("*.jsonl")) for line in p.open()]
    # Samples reference their problem by id: problem fields (the needle) are stored once, in problems/.
    assert all("needle" not in v and "prompt" not in v for v in verdicts)
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
    assert set(m["timings"]) == {"sample", "verify", "select", "luck", "train", "evaluate"}
    # The luck pass re-verifies the math samples only (4 problems x 4) against shuffled golds.
    assert m["luck"]["checked"] == 16 and m["luck"]["kept_checked"] <= m["kept"]
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


def test_a_fixed_sft_setting_re_trains_and_reuses_the_samples(reference, args_for, tmp_path):
    copy = tmp_path / "reference"
    shutil.copytree(reference, copy)
    args, _ = args_for("reference")
    args[args.index("--output_dir") + 1] = str(tmp_path)
    kept = {d: _stamps(copy / d) for d in ("round-1/samples", "round-1/verdicts", "round-0/eval/samples")}
    fixed = SFT.replace("num_train_epochs: 10", "num_train_epochs: 2")
    dry = run_round([*args, "--sft", fixed, "--dry_run"])  # what the resume would do; it changes nothing
    assert f"run directory: {copy} (exists; these settings re-run from the train stage)" in dry.stdout
    assert "round 1: 14 training problems in 7 shards of 2, sampling.n 4 -> 56 samples; written earlier: 7/7 " \
           "sample, 7/7 verdict shards" in dry.stdout
    assert {d: _stamps(copy / d) for d in kept} == kept and "settings changed" not in dry.stderr
    proc = run_round([*args, "--sft", fixed])
    assert ("settings changed (sft.num_train_epochs: 10 -> 2): re-running round 1 from its train stage "
            "(its samples and verdicts are kept)") in proc.stderr
    assert {d: _stamps(copy / d) for d in kept} == kept  # not one shard drawn or verified again
    assert _metrics(copy, 1)["kept"] == _metrics(reference, 1)["kept"]
    assert json.loads((copy / "round-1" / "train_stats.json").read_text())["steps"] < json.loads(
        (reference / "round-1" / "train_stats.json").read_text())["steps"]


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
    # drawn by the baseline evaluation's sampler (same model, one engine start).
    kill_points = [
        ("round-0/evaluate", lambda: (r0 / "eval_sample.job.json").exists()),
        ("round-1/verify", lambda: "round-1/sample" in manifest()),
        ("round-1/select", lambda: "round-1/verify" in manifest()),
        # The Trainer writes trainer_state.json last: before it, checkpoint-3 is not yet one to resume from.
        ("round-1/train", lambda: (r1 / "trainer" / "checkpoint-3" / "trainer_state.json").exists()),
        ("round-1/evaluate", lambda: (r1 / "eval_sample.job.json").exists()),
    ]
    interrupted = []
    for stage, running in kill_points:
        proc = subprocess.Popen(
            _cmd(args), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait(proc, running, f"stage {stage}")
        children = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, signal.SIGKILL)  # the round only: its stage child must die with it
        proc.wait()
        # The next run must not start while a stage child of this one is still writing.
        _, alive = psutil.wait_procs(children, timeout=120)
        assert not alive, f"stage children outlived the killed round: {alive}"
        if stage not in manifest():
            interrupted.append(stage)
    # Sampling, training and evaluation run for seconds in a child, so the kill always lands inside them;
    # verify and select may already have finished when the kill arrives.
    assert {"round-0/evaluate", "round-1/train", "round-1/evaluate"} <= set(interrupted)
    run_round(args)
    info = manifest()["round-1/train"]
    assert info["resumed_from"] and "checkpoint-" in info["resumed_from"]
    assert stage_files(r1) == stage_files(reference / "round-1")
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


def _manifest(run: Path) -> dict:
    path = run / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _run_until_paused(args: list[str], pause: str, marker: Path) -> None:
    """Start a run that stops itself at `pause` (see sdp.launch.process.pause_point), then SIGKILL it there."""
    env = {**_env(), "SDP_PAUSE": f"{pause}:{marker}"}
    proc = subprocess.Popen(_cmd(args), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait(proc, marker.exists, f"the pause at {pause}")
    pid = int(marker.read_text().split()[2])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if pid != proc.pid:  # a paused sampler child: PR_SET_PDEATHSIG kills it with the round, stopped or not
        _wait_gone(pid)
    marker.unlink()


def _wait_gone(pid: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return
        except FileNotFoundError:
            return
        assert time.monotonic() < deadline, f"process {pid} outlived its round"
        time.sleep(0.02)


def test_kill_in_the_middle_of_sampling_redoes_only_unfinished_shards(reference, args_for, tmp_path):
    args, run = args_for("killed-sampling")
    r0, r1 = run / "round-0", run / "round-1"
    # The baseline's sampler draws the 3 held-out shards, then round 1's 7: stop it after 5 (2 of round 1's).
    _run_until_paused(args, "sample:5", tmp_path / "paused")
    manifest = _manifest(run)
    assert "round-0/evaluate" not in manifest and "round-1/sample" not in manifest
    before_eval, before_train = _stamps(r0 / "eval" / "samples"), _stamps(r1 / "samples")
    assert len(before_eval) == 3 and len(before_train) == 2
    run_round(args)
    after_eval, after_train = _stamps(r0 / "eval" / "samples"), _stamps(r1 / "samples")
    assert after_eval == before_eval  # finished shards were not redone
    assert len(after_train) == 7 and {k: after_train[k] for k in before_train} == before_train
    assert stage_files(r1) == stage_files(reference / "round-1")
    assert _metrics(run, 1)["eval"] == _metrics(reference, 1)["eval"]


def test_kill_in_the_middle_of_verification_redoes_only_unfinished_shards(reference, args_for, tmp_path):
    args, run = args_for("killed-verify")
    r1 = run / "round-1"
    # Round 1's shards are drawn by the baseline's sampler and verified while it samples, the rest in round 1's
    # verify stage: the kill lands where the 3rd of the 7 is verified (which stage depends on the sampler's pace).
    _run_until_paused(args, "verify:3", tmp_path / "paused")
    manifest = _manifest(run)
    assert "round-1/verify" not in manifest
    before = _stamps(r1 / "verdicts")
    assert len(before) == 3
    run_round(args)
    after = _stamps(r1 / "verdicts")
    assert len(after) == 7 and {k: after[k] for k in before} == before
    assert _manifest(run)["round-1/verify"]["shards_verified_earlier"] >= 3
    assert stage_files(r1) == stage_files(reference / "round-1")
    m, ref = _metrics(run, 1), _metrics(reference, 1)
    assert (m["verified_ok"], m["kept"], m["eval"]) == (ref["verified_ok"], ref["kept"], ref["eval"])


def test_a_typo_in_sft_fails_before_any_sampling(args_for):
    args, run = args_for("typo", "--sft", "{max_stepz: 3, max_length: 128}")
    proc = subprocess.run(_cmd(args), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "sft" in proc.stderr and "max_stepz" in proc.stderr and "max_steps?" in proc.stderr  # the closest name
    assert not (run / "round-0" / "eval").exists() and not (run / "manifest.json").exists()


def test_hf_backend_round(args_for):
    args, run = args_for("hf", "--backend", "hf", "--sft", "{max_steps: -1, num_train_epochs: 1, per_device_train_batch_size: 8, save_strategy: 'no', max_length: 128}")
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
