"""Quiet, helpful logs (issue 26, item 8): known third-party noise filtered at the source, Ctrl-C ends in the
resume message (also when it reaches a stage child), and the small items: one `--score` column per score,
the plot in percent like the table, `maj@k -` explained, the console scripts documented."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from sdp.launch.process import CHILD_ENV, INTERRUPTED
from sdp.problems import scores_table
from sdp.shards import plan_shards
from sdp.stages.evaluate import format_scores
from sdp.stages.sample import SampleJob, SampleTask
from sdp.stages.summary import MAJ_NOTE, accuracy_figure, render_table
from tests.conftest import needle_problems, round_args

REPO = Path(__file__).resolve().parents[1]
NOISE = ("Failed to load", "is an Enum subclass", "Triton is installed", "Triton not installed")
PROBE = """
import logging, sys
from sdp.logs import FORMAT, setup_logging
if sys.argv[1] == "sdp":
    setup_logging()
else:
    logging.basicConfig(level=logging.INFO, format=FORMAT)
import torchao, vllm.triton_utils
logging.getLogger("torchao").warning("a torchao warning of its own")
"""


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}
    env.pop(CHILD_ENV, None)
    return env


def _wait(proc: subprocess.Popen, condition, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout  # a safety limit only; the wait is on the condition
    while not condition():
        assert proc.poll() is None, f"ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.2)


@pytest.mark.slow
def test_known_library_noise_is_filtered_at_the_source():
    pytest.importorskip("torchao")
    pytest.importorskip("vllm")
    plain, quiet = (subprocess.run([sys.executable, "-c", PROBE, how], cwd=REPO, env=_env(), capture_output=True,
                                   text=True, timeout=600) for how in ("plain", "sdp"))
    assert plain.returncode == 0 and quiet.returncode == 0, plain.stderr[-2000:] + quiet.stderr[-2000:]
    printed = [n for n in NOISE if n in plain.stderr]
    if not printed:
        pytest.skip("these libraries print none of the known noise on this machine")
    assert not [n for n in NOISE if n in quiet.stderr], quiet.stderr
    assert "WARNING torchao: a torchao warning of its own" in quiet.stderr  # only the known lines go


def test_ctrl_c_in_a_stage_child_exits_130_with_the_resume_message(tiny_model, tmp_path):
    plan = plan_shards(needle_problems("p", 4), tmp_path / "set", 2)
    job = SampleJob(model=str(tiny_model), tasks=(SampleTask(str(plan.root), {"n": 1, "max_tokens": 4}, "t"),),
                    backend="hf", progress=False)
    job_path = tmp_path / "sample.job.json"
    job_path.write_text(json.dumps(job.to_dict()))
    marker = tmp_path / "paused"
    proc = subprocess.Popen([sys.executable, "-m", "sdp.stages.sample", str(job_path)], cwd=REPO,
                            env=_env(SDP_PAUSE=f"sample:1:{marker}"), stderr=subprocess.PIPE, text=True)
    _wait(proc, marker.exists, "the pause after the first shard")
    proc.send_signal(signal.SIGINT)  # as Ctrl-C does; it is handled once the stage continues
    proc.send_signal(signal.SIGCONT)
    err = proc.communicate(timeout=600)[1]
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.rstrip("\n").endswith(INTERRUPTED)
    assert plan.shards[0].done("samples") and not plan.shards[1].done("samples")


@pytest.mark.slow
def test_ctrl_c_during_a_round_reaches_its_stage_and_ends_in_the_resume_message(tiny_model, problem_files, tmp_path):
    args = round_args(tiny_model, problem_files, tmp_path / "runs", "c", "--backend", "hf", "--shard_size", "2")
    marker = tmp_path / "paused"
    # Its own session, so that the test can signal the whole group as the terminal's Ctrl-C does.
    proc = subprocess.Popen([sys.executable, "-m", "sdp.round", *args], cwd=REPO, start_new_session=True,
                            env=_env(SDP_PAUSE=f"sample:1:{marker}"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    _wait(proc, marker.exists, "the pause after the first held-out shard")
    child = int(marker.read_text().split()[2])
    os.killpg(proc.pid, signal.SIGINT)
    os.kill(child, signal.SIGCONT)
    err = proc.communicate(timeout=600)[1]
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert err.rstrip("\n").endswith(INTERRUPTED) and err.count(INTERRUPTED) == 1
    assert (tmp_path / "runs" / "c" / "round-0" / "eval" / "samples" / "shard-00000.jsonl").exists()


def test_score_table_has_one_column_per_score():
    one = {"all": {"problems": 3, "k": 1, "pass@1": 0.5, "pass@k": 0.5}}
    header = scores_table(one).splitlines()[0]
    assert header == "| domain | problems | pass@1 (%) |"
    assert scores_table(one).splitlines()[2] == "| all | 3 | 50.0 |"
    four = {"all": {"problems": 3, "k": 4, "pass@1": 0.5, "pass@k": 0.75}}
    assert scores_table(four).splitlines()[0] == "| domain | problems | pass@1 (%) | pass@4 (%) |"


def test_plot_is_in_percent_like_the_table():
    rows = [{"round": 0, "eval": {"math": {"k": 2, "pass@1": 0.25, "pass@k": 0.5, "maj@k": None}}},
            {"round": 1, "eval": {"math": {"k": 2, "pass@1": 0.5, "pass@k": 0.5, "maj@k": 0.5}}}]
    fig = accuracy_figure(rows)
    ax = fig.axes[0]
    assert list(ax.lines[0].get_ydata()) == [25.0, 50.0] and "(%)" in ax.get_ylabel()
    table = render_table(rows)
    assert "| 25.0 | 50.0 | - |" in table and table.rstrip("\n").endswith(MAJ_NOTE)
    assert "maj@2 - (no answers to vote on)" in format_scores(rows[0]["eval"])
    assert MAJ_NOTE not in render_table(rows[1:])


def test_console_scripts_and_plugin_import_rule_are_documented():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    readme = (REPO / "README.md").read_text()
    for name, target in scripts.items():
        module = target.split(":")[0]
        assert re.search(rf"`{name}`[^\n]*`python -m {re.escape(module)}`", readme), name
    assert "must be importable" in readme
