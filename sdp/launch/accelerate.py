"""Run a stage module under `accelerate launch` (DDP, FSDP, DeepSpeed ZeRO-2/3; several processes).

The stage reads its job file as with `sdp.launch.process`; `accelerate launch` starts
`num_processes` ranks of `python -m <module> JOB.json`. The accelerate config is a file path
(e.g. `configs/accelerate/zero3.yaml`) or a mapping, written next to the job as
`<job>.accelerate.yaml` so the stage can be re-run by hand with the printed command.

CPU: accelerate's MULTI_CPU launcher needs `mpirun` and a hostfile; without one it starts a
single process. For a MULTI_CPU config without `mpirun_hostfile` we therefore ask accelerate for
its torchrun launcher (`--multi_gpu`); on a machine without GPUs the ranks then come up as
MULTI_CPU with the gloo backend (the trainer sets `use_cpu`), which is what we want.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from sdp.launch.process import StageError
from sdp.rundir import atomic_write_text

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def default_config(cuda: bool | None = None) -> dict[str, Any]:
    """DDP on this machine: MULTI_GPU with GPUs, MULTI_CPU (gloo) without."""
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    return {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "MULTI_GPU" if cuda else "MULTI_CPU",
        "num_machines": 1,
        "machine_rank": 0,
        "mixed_precision": "no",
        "use_cpu": not cuda,
    }


def write_config(config: str | Path | Mapping[str, Any] | None, job_path: str | Path) -> tuple[Path, dict]:
    """The config file to pass to `accelerate launch`, and its contents (checked by accelerate's loader)."""
    from accelerate.commands.config.config_args import load_config_from_file

    if config is None or isinstance(config, Mapping):
        data = dict(config) if config is not None else default_config()
        path = Path(f"{job_path}.accelerate.yaml")
        atomic_write_text(path, yaml.safe_dump(data, sort_keys=True))
    else:
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"accelerate_config {path} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"accelerate_config {path}: expected a mapping, got {type(data).__name__}")
    try:
        load_config_from_file(str(path))  # unknown keys and bad values fail here, before any rank starts
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"accelerate_config {path}: {err}") from err
    return path, data


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch_command(module: str, job_path: str | Path, num_processes: int, config_file: Path, config: Mapping) -> list[str]:
    """The `accelerate launch` argument list for `python -m <module> <job_path>`."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file)]
    cmd += ["--num_processes", str(num_processes)]
    if config.get("distributed_type") == "MULTI_CPU" and not config.get("mpirun_hostfile") and num_processes > 1:
        cmd.append("--multi_gpu")  # torchrun launcher; see the module docstring
    if int(config.get("num_machines", 1)) == 1 and "main_process_port" not in config:
        cmd += ["--main_process_port", str(_free_port())]  # two rounds on one host must not share 29500
    return [*cmd, "-m", module, str(job_path)]


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: a killed round takes its launcher (and ranks) with it.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def accelerate_launch(
    module: str,
    job_path: str | Path,
    num_processes: int,
    config: str | Path | Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run `accelerate launch ... -m <module> <job_path>`; raise `StageError` if any rank fails."""
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    config_file, data = write_config(config, job_path)
    cmd = launch_command(module, job_path, num_processes, config_file, data)
    child_env = dict(os.environ)
    child_env.update({k: str(v) for k, v in (env or {}).items()})
    logger.info("launching %d processes: %s", num_processes, " ".join(cmd))
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    result = subprocess.run(cmd, env=child_env, check=False, preexec_fn=preexec)
    if result.returncode != 0:
        raise StageError(
            f"{module} under accelerate ({num_processes} processes) failed with exit status {result.returncode} "
            f"(job {job_path}); the ranks' errors are printed above. Re-run it alone with: {' '.join(cmd)}"
        )
