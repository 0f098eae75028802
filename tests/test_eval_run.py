"""`python -m sdp.evaluate` is a run (issue 26, item 5): samples, verdicts and metrics under --output_dir/--name,
resumable shard by shard, inspectable with `sdp.inspect`, the round's table, and only the fields it uses.

The commands run as a user runs them, in subprocesses, on the tiny test model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sdp.config import RoundConfig
from sdp.evaluate import EVAL_FIELDS, EvalConfig, parse_eval_config
from sdp.round import apply_rewind, check_run_config, save_run_config
from sdp.rundir import RunDir
from sdp.stages.summary import render_table
from tests.conftest import TINY_ENGINE_ARGS

REPO = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}


def evaluate(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sdp.evaluate", *args], cwd=REPO, env=_env(**env),
                          capture_output=True, text=True, timeout=600)


def eval_args(model: Path, problems: dict[str, Path], out: Path, *extra: str) -> list[str]:
    """A small evaluation of the tiny model: 6 held-out problems in 3 shards of 2."""
    return ["--output_dir", str(out), "--name", "ev", "--model", str(model), "--eval_problems", str(problems["eval"]),
            "--engine_args", json.dumps(TINY_ENGINE_ARGS), "--eval_sampling", "{n: 2, temperature: 1.0, max_tokens: 8}",
            "--shard_size", "2", "--verify_workers", "1", "--progress", "false", "--keep_truncated", "true", *extra]


def _stamps(directory: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of each shard file: a shard that is redone gets a new file by atomic rename."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.glob("shard-*.jsonl")}


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _outputs(run: Path) -> dict[str, bytes]:
    """The run's files but the stage job files (the preflight's job is rewritten by every start)."""
    return {k: v for k, v in _tree(run).items() if not k.endswith(".job.json")}


def _wait(proc: subprocess.Popen, condition, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout  # a safety limit only; the wait is on the condition
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.vllm
def test_evaluate_is_a_resumable_inspectable_run(tiny_model, problem_files, tmp_path):
    pytest.importorskip("vllm")
    out = tmp_path / "runs"
    run = out / "ev"
    args = eval_args(tiny_model, problem_files, out)
    # Killed after its first shard (the sampler stops itself there, then the command is SIGKILLed).
    marker = tmp_path / "paused"
    proc = subprocess.Popen([sys.executable, "-m", "sdp.evaluate", *args], cwd=REPO,
                            env=_env(SDP_PAUSE=f"sample:1:{marker}"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _wait(proc, marker.exists, "the pause after the first shard")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    samples = run / "round-0" / "eval" / "samples"
    first = _stamps(samples)
    assert list(first) == ["shard-00000.jsonl"] and not (run / "round-0" / "metrics.json").exists()

    # A dry run reads what is there and writes nothing.
    before = _tree(run)
    dry = evaluate([*args, "--dry_run"])
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "written earlier: 1/3 sample, 0/3 verdict shards" in dry.stdout
    assert _tree(run) == before

    done = evaluate(args)
    assert done.returncode == 0, done.stderr[-4000:]
    assert {k: v for k, v in _stamps(samples).items() if k in first} == first  # not drawn again
    assert len(_stamps(samples)) == len(_stamps(run / "round-0" / "eval" / "verdicts")) == 3
    metrics = json.loads((run / "round-0" / "metrics.json").read_text())
    assert metrics["model"] == str(tiny_model) and set(metrics["eval"]) >= {"all", "math"}
    # The round's table (its headers, in percent), then the summary files last.
    table = render_table([metrics])
    assert done.stdout.rstrip("\n").endswith(f"{table}\nsummary: {run / 'summary' / 'table.md'}, "
                                             f"{run / 'summary' / 'summary.json'}, {run / 'summary' / 'accuracy.png'}")
    assert table.startswith("| round | samples | verified | kept | train pass |")
    all_pass = metrics["eval"]["all"]["pass@1"]
    assert f"| {100 * all_pass:.1f} |" in table.splitlines()[2]
    assert (run / "summary" / "table.md").read_text() == table
    assert "Traceback" not in done.stderr

    shown = subprocess.run([sys.executable, "-m", "sdp.inspect", str(run), "--round", "0"], cwd=REPO, env=_env(),
                           capture_output=True, text=True, timeout=600)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"{run} round 0 (held-out): 12 samples of 6 problems")

    # A bad setting fails before any sampling, naming the field; nothing already written is lost.
    outputs = _outputs(run)
    bad = evaluate([*args, "--eval_sampling", "{temperature: hot}"])
    assert bad.returncode != 0
    assert "error: eval_sampling.temperature: expected float, got 'hot'" in bad.stderr, bad.stderr[-3000:]
    assert "Traceback" not in bad.stderr
    assert _outputs(run) == outputs
    # Another model is refused, naming the field; the run is left as it was.
    other = evaluate([*args, "--model", str(REPO / "data" / "model")])
    assert other.returncode != 0, other.stderr[-3000:]
    assert "was started with a different configuration: model: '" in other.stderr
    assert _outputs(run) == outputs


def test_a_changed_eval_sampling_re_evaluates_and_keeps_nothing_stale(tmp_path):
    root = tmp_path / "ev"
    run = RunDir(root)
    cfg = EvalConfig(model="data/model", eval_sampling={"n": 2})
    save_run_config(run, cfg)
    (run.round_dir(0) / "eval" / "samples").mkdir(parents=True)
    (run.round_dir(0) / "eval" / "samples" / "shard-00000.jsonl").write_text("{}\n")
    (run.round_dir(0) / "metrics.json").write_text("{}\n")
    run.mark_done(0, "evaluate", {})
    run.mark_done(0, "metrics", {})
    fixed = EvalConfig(model="data/model", eval_sampling={"n": 2, "temperature": 0.5})
    assert check_run_config(run, fixed) == "evaluate"
    apply_rewind(run, fixed, "evaluate")
    assert RunDir(root).manifest == {} and not (root / "round-0" / "eval").exists()
    run = RunDir(root)
    run.mark_done(0, "evaluate", {})
    with pytest.raises(SystemExit, match="seed: 0 -> 1"):  # what the samples depend on is refused
        check_run_config(run, EvalConfig(model="data/model", eval_sampling={"n": 2}, seed=1))


def test_evaluate_help_lists_only_the_fields_it_uses():
    proc = subprocess.run([sys.executable, "-m", "sdp.evaluate", "--help"], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: python -m sdp.evaluate")
    options = set(re.findall(r"^  --(\w+)", proc.stdout, flags=re.M))
    negated = {f"no_{f.name}" for f in dataclasses.fields(EvalConfig) if f.default is True}
    assert options == set(EVAL_FIELDS) | negated | {"config"}
    assert not {"sft", "lora", "train_problems", "rounds", "sampling"} & options
    # The round's own help of the shared fields, and the negated flags' help is their own.
    assert "Turn --overlap_verify off." in proc.stdout


def test_evaluate_takes_a_round_config_file_but_only_its_own_flags(tmp_path):
    cfg = parse_eval_config(["--config", str(REPO / "configs" / "default.yaml"), "--eval_k", "2"])
    assert cfg.eval_k == 2 and cfg.eval_sampling == RoundConfig().eval_sampling and not hasattr(cfg, "sft")
    assert cfg.round_config().eval_k == 2
    with pytest.raises(ValueError, match=r"unknown option --sft; `python -m sdp.evaluate --help` lists them"):
        parse_eval_config(["--sft", "{max_steps: 3}"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("eval_smapling: {n: 2}\n")
    with pytest.raises(ValueError, match=r"unknown key 'eval_smapling' \(did you mean eval_sampling\?\)"):
        parse_eval_config(["--config", str(bad)])
    with pytest.raises(ValueError, match="eval_k=9 must be between 1 and eval_sampling.n=8"):
        parse_eval_config(["--eval_k", "9"])
