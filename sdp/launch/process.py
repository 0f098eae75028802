"""Run a heavy stage (sampling, training) in its own Python process.

vLLM does not give its memory back on `del`, and a training process keeps allocator caches;
a child process per stage releases everything when it exits. The child reads a JSON job file
(kept in the round directory, so a stage can be re-run by hand with
`python -m sdp.<stage> runs/<name>/round-<k>/<stage>.job.json`) and dies with its parent.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sdp.logs import setup_logging
from sdp.rundir import atomic_write_json

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
# Set in a stage child's environment by `start_stage`: the child was started by a command that reports an interrupt.
CHILD_ENV = "SDP_STAGE_CHILD"
INTERRUPTED = "interrupted; run the same command to resume"


class StageError(RuntimeError):
    """A stage's child process failed."""


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (a killed round kills its stage)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)


def _interrupted(signum: int, frame: Any) -> None:
    # Ctrl-C reaches the whole process group: the command that started this stage says how to resume.
    if not os.environ.get(CHILD_ENV):
        print(f"\n{INTERRUPTED}", file=sys.stderr)
    raise SystemExit(130)


def stage_child() -> None:
    """Set-up of a stage's `main()`: die with the parent, sdp's logging, and Ctrl-C as exit 130 without a traceback.

    Every output is written atomically, so an interrupted stage leaves nothing half-written to clean up.
    """
    die_with_parent()
    setup_logging()
    signal.signal(signal.SIGINT, _interrupted)


def run_stage(
    module: str, job: Mapping[str, Any], job_path: str | Path, env: Mapping[str, str] | None = None
) -> None:
    """Write `job` to `job_path` and run `python -m <module> <job_path>`; raise `StageError` on failure."""
    check_stage(module, start_stage(module, job, job_path, env), job_path)


def start_stage(
    module: str, job: Mapping[str, Any], job_path: str | Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen:
    """Write `job` to `job_path` and start `python -m <module> <job_path>` without waiting for it."""
    atomic_write_json(job_path, dict(job))
    child_env = dict(os.environ)
    child_env.update({k: str(v) for k, v in (env or {}).items()})
    child_env[CHILD_ENV] = "1"
    return subprocess.Popen([sys.executable, "-m", module, str(job_path)], env=child_env)


def check_stage(module: str, proc: subprocess.Popen, job_path: str | Path) -> None:
    """Wait for a started stage; raise `StageError` if it failed (on Ctrl-C the stage is ended first)."""
    try:
        proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        raise StageError(
            f"{module} failed with exit status {proc.returncode} (job {job_path}); its error is printed above. "
            f"Re-run the stage alone with: {sys.executable} -m {module} {job_path}"
        )


def run_stage_while(
    module: str,
    job: Mapping[str, Any],
    job_path: str | Path,
    work: Callable[[], bool],
    env: Mapping[str, str] | None = None,
    poll_seconds: float = 0.5,
) -> None:
    """Run a stage child and, while it runs, call `work()` (which returns False when it found nothing to do).

    The round verifies finished sample shards this way while later shards are still being drawn.
    """
    proc = start_stage(module, job, job_path, env)
    try:
        while proc.poll() is None:
            if not work():
                try:
                    proc.wait(timeout=poll_seconds)
                except subprocess.TimeoutExpired:
                    pass
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    check_stage(module, proc, job_path)


def pause_point(stage: str, done: int) -> None:
    """Fault-injection hook for resume tests: with `SDP_PAUSE=<stage>:<n>:<marker>` in the environment,
    the process writes `<marker>` and stops itself (SIGSTOP) once `done` reaches n in `stage`.

    A test waits for the marker, kills the run at exactly that point and checks what a restart redoes.
    """
    spec = os.environ.get("SDP_PAUSE", "")
    if not spec:
        return
    name, count, marker = spec.split(":", 2)
    if name == stage and int(count) == done:
        Path(marker).write_text(f"{stage} {done} {os.getpid()}\n")
        os.kill(os.getpid(), signal.SIGSTOP)


def load_job(argv: list[str] | None = None) -> dict[str, Any]:
    """The job of a stage's `main()`: the JSON file named by the only argument."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit(f"usage: python -m <sdp stage> JOB.json (got {args})")
    return json.loads(Path(args[0]).read_text())
